"""The starter catalog shipped with Stylus, and opening a user's catalog (seeded on first run).

``catalog/starter_catalog.jsonl.gz`` holds facts-only cards of the most-downloaded SFW SD 1.5
adapters with template/refiner descriptions (no author text); ``catalog/starter_vectors.bin.gz``
their MiniLM vectors (read by components/index/shipped.py), so that a new catalog's index
embeds nothing. Rebuild both with the build tool (tools/build_starter.py)::

    python -m tools.build_starter ../shared/data/civitai-loras-2023-07.jsonl.gz
"""
from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Callable

from catalog.card import AdapterCard
from catalog.lora_file import sha256_file
from catalog.settings import Settings
from catalog.store import CatalogError, CatalogStore

STARTER_PATH = Path(__file__).resolve().parent / "starter_catalog.jsonl.gz"
STARTER_VECTORS_PATH = STARTER_PATH.with_name("starter_vectors.bin.gz")  # written by tools/starter_vectors.py
SEEDED_KEY = "starter_seeded"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def open_catalog(settings: Settings, seed: bool = True,
                 notify: Callable[[str], None] = _stderr) -> CatalogStore:
    """Open ``settings.catalog_dir``; a brand-new (empty) catalog is seeded from the starter file.

    Imports pass ``seed=False``: a user building a catalog from their own source gets only that.
    """
    store = CatalogStore(settings.catalog_dir)
    if seed and len(store) == 0 and store.get_state(SEEDED_KEY) is None:
        try:
            count = seed_if_empty(store)
        except CatalogError:
            store.close()
            raise
        if count:
            notify(f"stylus: new catalog {settings.catalog_dir} seeded with {count:,} starter adapters "
                   f"from {STARTER_PATH.name}")
    return store


def load_starter_cards(path: Path = STARTER_PATH) -> list[AdapterCard]:
    """The cards of a starter file; a damaged file is an error naming the line."""
    cards = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    cards.append(AdapterCard.model_validate_json(line))
                except ValueError as exc:
                    raise CatalogError(f"starter catalog {path} line {number} is not a valid card: "
                                       f"{str(exc).splitlines()[0]}") from None
    except (OSError, EOFError) as exc:
        raise CatalogError(f"starter catalog {path} cannot be read: {exc}") from None
    return cards


def seed_if_empty(store: CatalogStore, path: Path = STARTER_PATH) -> int:
    """Copy the starter cards into an empty catalog, in one transaction; returns how many."""
    if len(store) > 0:
        return 0
    if not path.is_file():
        _stderr(f"stylus: no starter catalog at {path}; the catalog starts empty "
                f"(build it with: python -m tools.build_starter DUMP)")
        return 0
    cards = load_starter_cards(path)
    digest = sha256_file(path)[:16].lower()
    with store.transaction() as tx:
        if len(store):  # counted inside the transaction: another process may have seeded it meanwhile
            return 0
        for card in cards:
            store.upsert(card, tx)
            store.set_refined(card.id, card.refined, tx)
        store.set_state(SEEDED_KEY, {"file": path.name, "sha256": digest, "cards": len(cards)}, tx)
    return len(cards)
