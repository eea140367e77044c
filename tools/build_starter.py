"""Build the starter catalog: facts of the most-downloaded SFW SD 1.5 adapters, no author text.

    python -m tools.build_starter DUMP [--out FILE] [-n N]

e.g. ``python -m tools.build_starter ../shared/data/civitai-loras-2023-07.jsonl.gz``. The dump is
imported with the project's own Civitai importer into a temporary catalog; one card per model (its
newest SD 1.5 version) is kept, stripped of author-written text (descriptions, example prompts),
and described by the project's offline refiner (components/refiner/offline.py; ``build_starter``
without a ``refiner`` writes a template from the facts instead).
The output is deterministic: cards sorted by id, keys sorted, gzip without a timestamp. Writes
``catalog/starter_catalog.jsonl.gz`` unless ``--out`` names another file, and beside it the
starter cards' embeddings (tools/starter_vectors.py, under the name catalog/starter.py reads), so
that a new catalog's index embeds nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

from catalog.card import CATEGORIES, MAX_WEIGHT, MIN_WEIGHT, AdapterCard, Curation, Refined
from catalog.importers.civitai import import_civitai_file
from catalog.settings import quiet_environment
from catalog.starter import STARTER_PATH, STARTER_VECTORS_PATH
from catalog.store import CatalogStore
from ground.errors import StylusError
from tools.shipped_files import reproducible_gzip

FACT_EXTRA_KEYS = ("civitai_type", "created_at", "model_download_count", "version_index")
TEMPLATE_REFINER = "template-1"
SPARE = 50  # models chosen beyond n, for those the screen rejects once refined
_CATEGORY_TAGS = {c: c for c in CATEGORIES} | {"poses": "pose", "objects": "object", "buildings": "building",
                                               "animals": "animal", "vehicles": "vehicle", "clothes": "clothing",
                                               "tools": "tool", "plants": "plant", "actions": "action"}


RefinerFactory = Callable[[CatalogStore], Callable[[AdapterCard], Refined]]
VectorWriter = Callable[[list[AdapterCard], Path], str]  # writes the cards' shipped vectors; returns a summary


def build_starter(dump_path: str | Path, out_path: str | Path, n: int = 1200,
                  refiner: RefinerFactory | None = None, vectors: VectorWriter | None = None) -> str:
    """Write the starter file (and, with ``vectors``, its shipped vectors); returns a summary.

    ``refiner(store)`` sees the whole imported dump (for catalog-wide statistics) and returns
    the function that refines one card."""
    with tempfile.TemporaryDirectory(prefix="stylus-starter-") as tmp:
        store = CatalogStore(tmp)
        try:
            import_civitai_file(store, dump_path, progress=False)
            chosen = select_cards(store, n + SPARE)
            refine = refiner(store) if refiner is not None else None
        finally:
            store.close()
    # the refiner may find more trigger words in a description: screen the refined card again
    kept = [c for c in (facts_only(card, refine) for card in chosen) if c.effective_rating() != "explicit"]
    cards = sorted(kept[:n], key=lambda c: c.id)
    write_cards(cards, Path(out_path))
    size = Path(out_path).stat().st_size
    summary = (f"wrote {len(cards)} starter cards to {out_path} ({size / 1e6:.2f} MB, "
               f"descriptions by {cards[0].refined.refiner if cards else '-'})")
    if vectors is None:
        return summary
    # beside the starter file, under the name catalog/starter.py reads
    return summary + "\n" + vectors(cards, Path(out_path).with_name(STARTER_VECTORS_PATH.name))


def select_cards(store: CatalogStore, n: int) -> list[AdapterCard]:
    """Newest SD 1.5 version of each SFW model, the ``n`` models with the most downloads. SFW by
    all the evidence (catalog/safety.py), read before the example prompts are stripped: a model
    with any explicit version is left out."""
    newest: dict[int, AdapterCard] = {}
    explicit: set[int] = set()
    for card in store.iter_cards("base_model='SD 1.5' AND nsfw=0 AND real_person=0 AND source='civitai'"):
        if card.civitai_model_id is None or not card.files:
            continue
        if card.effective_rating() == "explicit":
            explicit.add(card.civitai_model_id)
            continue
        have = newest.get(card.civitai_model_id)
        if have is None or _age_key(card) > _age_key(have):
            newest[card.civitai_model_id] = card
    ranked = sorted((c for m, c in newest.items() if m not in explicit), key=lambda c: (-int(c.extra.get("model_download_count") or 0),
                                                    c.civitai_model_id))
    return ranked[:n]


def _age_key(card: AdapterCard) -> tuple[str, int]:
    return str(card.extra.get("created_at") or ""), card.civitai_version_id or 0


def facts_only(card: AdapterCard, refine: Callable[[AdapterCard], Refined] | None = None) -> AdapterCard:
    """The card without author-written text, with a refined description of our own."""
    data = card.model_dump(mode="json")
    data.update(description_raw="", description_clean="",
                notices=[n for n in card.notices if not n.startswith("civitai item")],
                extra={k: card.extra[k] for k in FACT_EXTRA_KEYS if k in card.extra},
                curation=Curation().model_dump(), refined=Refined().model_dump())
    for ex in data["examples"]:
        ex.update(prompt="", negative_prompt="")
    stripped = AdapterCard.model_validate(data)
    refined = refine(card) if refine else template_refined(stripped)
    if isinstance(refined, AdapterCard):
        refined = refined.refined
    stripped.refined = refined.model_copy(update={"source_hash": stripped.content_hash()})
    return stripped


def template_refined(card: AdapterCard) -> Refined:
    """A plain description from the facts: name, type, base model, tags, trigger words."""
    category = next((_CATEGORY_TAGS[t] for t in card.tags if t in _CATEGORY_TAGS), "other")
    text = f"{card.name}: a {card.adapter_type} adapter for {card.base_model}"
    if category != "other":
        text += f" ({category})"
    tags = [t for t in card.tags if t not in _CATEGORY_TAGS][:8]
    if tags:
        text += f", tagged {', '.join(tags)}"
    if card.trigger_words:
        text += f"; trigger words: {', '.join(card.trigger_words[:6])}"
    weights = [ex.lora_weight for ex in card.examples
               if ex.lora_weight is not None and MIN_WEIGHT <= ex.lora_weight <= MAX_WEIGHT and ex.lora_weight != 0]
    weight = round(statistics.median(weights), 2) if weights else None
    return Refined(description=text + ".", category=category, keywords=tags,
                   recommended_weight=weight, weight_source="example-median" if weights else "",
                   refiner=TEMPLATE_REFINER)


def write_cards(cards: list[AdapterCard], out_path: Path) -> None:
    """Gzip JSONL, byte-for-byte reproducible, replaced atomically."""
    with reproducible_gzip(out_path) as gz:
        for card in cards:
            line = json.dumps(card.model_dump(mode="json", exclude_defaults=True),
                              sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            gz.write(line.encode("utf-8") + b"\n")


def main(argv: list[str] | None = None) -> int:
    """Build the starter catalog and its vectors from a Civitai dump, with the offline refiner."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.build_starter",
        description="Rebuild catalog/starter_catalog.jsonl.gz (and its shipped vectors) reproducibly: the "
                    "most-downloaded SFW SD 1.5 adapters, facts only, described by the offline refiner.")
    parser.add_argument("dump", help="Civitai API dump, e.g. ../shared/data/civitai-loras-2023-07.jsonl.gz")
    parser.add_argument("--out", default=None, help="output file (default: the shipped starter file)")
    parser.add_argument("-n", type=int, default=1200, help="number of adapters (default: %(default)s)")
    args = parser.parse_args(argv)
    quiet_environment()  # before the embedding model's libraries are imported
    from components.refiner.offline import starter_refiner
    from tools.starter_vectors import write_starter_vectors
    try:
        print(build_starter(args.dump, args.out or STARTER_PATH, n=args.n, refiner=starter_refiner,
                            vectors=write_starter_vectors))
    except (StylusError, FileNotFoundError, ValueError) as exc:  # as the stylus_ui CLI reports them
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
