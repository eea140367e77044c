"""Finding cards: one typed query for the Catalog tab, the API and the CLI.

A :class:`CardQuery` is checked once, when it is made; :func:`search_cards` turns it into the
store's SQL (base model, blocked) and tests the rest on the cards (text, category, flags). No
front end writes SQL of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from catalog.card import AdapterCard
from catalog.store import CatalogError, CatalogStore

CARD_FLAGS = ("nsfw", "character", "real person", "refined", "not loadable")
CARD_STATUSES = ("all", "active", "blocked")
_FLAG_TESTS: dict[str, Callable[[AdapterCard], bool]] = {
    "nsfw": lambda c: c.effective_nsfw(),
    "character": lambda c: c.is_character(),
    "real person": lambda c: c.effective_real_person(),
    "refined": lambda c: bool(c.refined.refiner),
    "not loadable": lambda c: not c.is_loadable(),
}


@dataclass(frozen=True)
class CardQuery:
    """Which cards: ``text`` a substring of the id, name, creator, tags or trigger words (any case);
    ``flags`` from :data:`CARD_FLAGS`, all of which must hold; ``status`` one of
    :data:`CARD_STATUSES`; ``limit`` None for every match. Most downloaded first."""
    text: str = ""
    base_model: str = ""
    category: str = ""
    flags: tuple[str, ...] = ()
    status: str = "all"
    limit: int | None = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", tuple(self.flags))
        bad = [f for f in self.flags if f not in CARD_FLAGS]
        if bad or self.status not in CARD_STATUSES:
            raise CatalogError(f"filter {bad or self.status!r} is not known; flags: {', '.join(CARD_FLAGS)}; "
                               f"status: {', '.join(CARD_STATUSES)}")
        if self.limit is not None and self.limit < 1:
            raise CatalogError(f"limit {self.limit} is not allowed; use a positive number of cards")


def search_cards(store: CatalogStore, query: CardQuery) -> list[AdapterCard]:
    """The cards ``query`` asks for, most downloaded first, at most ``query.limit``."""
    where, params = [], []
    if query.base_model:
        where.append("base_model=?")
        params.append(query.base_model)
    if query.status != "all":
        where.append("blocked=?")
        params.append(int(query.status == "blocked"))
    needle = query.text.strip().lower()
    out = []
    for card in store.iter_cards(" AND ".join(where), tuple(params), order="download_count DESC, id"):
        if needle and needle not in _haystack(card):
            continue
        if query.category and card.effective_category() != query.category:
            continue
        if not all(_FLAG_TESTS[f](card) for f in query.flags):
            continue
        out.append(card)
        if query.limit is not None and len(out) >= query.limit:
            break
    return out


def _haystack(card: AdapterCard) -> str:
    return " ".join([card.id, card.name, card.creator, *card.effective_tags(),
                     *card.effective_trigger_words()]).lower()
