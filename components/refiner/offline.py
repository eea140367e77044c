"""The offline refiner: deterministic, no network, seconds for the whole catalog.

From a card's facts and author text it writes, in the project's own words:
- a category (from tags, else from words in the name and description),
- salient keywords: phrases of the example prompts weighted against the whole catalog, so
  boilerplate such as "masterpiece, best quality" (in thousands of cards) carries no weight,
- trigger words that authors put in the description instead of ``trainedWords``,
- a recommended weight: author text ("weight 0.6-0.8"), else the median ``<lora:NAME:W>``
  weight of the example prompts, else 0.8,
- a short description assembled from those facts (never the author's sentences).
"""
from __future__ import annotations

import functools
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from catalog.card import CATEGORIES, MAX_WEIGHT, MIN_WEIGHT, AdapterCard, Refined
from catalog.search import CardQuery, search_cards
from components.prompt_text import phrases
from components.refiner.categories import category
from components.refiner.purpose import TagStats, extract_purpose

REFINER_NAME = "offline-7"  # 2: records the purpose (components/refiner/purpose.py); 7: an artist's movements
DEFAULT_WEIGHT = 0.8
MAX_KEYWORDS = 12
BOILERPLATE_SHARE = 0.04  # a phrase in more than 4% of cards says nothing about any one card

_NUMBER = r"(-?\d(?:\.\d{1,3})?)"
_RANGE = re.compile(
    rf"(?:weight|strength|multiplier)s?\b[^0-9\n<]{{0,40}}?{_NUMBER}\s*(?:-|~|to|–|—|～)\s*{_NUMBER}", re.I)
_SINGLE = re.compile(rf"(?:weight|strength|multiplier)s?\b(?:\s+(?:of|at|is|around|about))?\s*[:=]?\s*{_NUMBER}\b", re.I)
_TAG_WEIGHT = re.compile(r"<\s*(?:lora|lyco)\s*:[^:>]+:\s*(-?\d+(?:\.\d+)?)\s*>", re.I)
_TRIGGER = re.compile(
    r"(?:trigger(?:ing)?|activation|activate)\s*(?:words?|tokens?|tags?|prompts?|phrases?)?"
    r"\s*(?:is|are|:|：|=)\s*([^\n.。]{1,160})", re.I)
_QUOTED = re.compile(r"[\"'“‘`「]([^\"'”’`」\n]{1,40})[\"'”’`」]")
_NOT_TRIGGER = {"word", "words", "the", "a", "an", "is", "are", "and", "or", "none", "no", "not", "needed",
                "required", "use", "it", "this", "as", "well", "unchanged", "with", "optional", "to"}


@dataclass
class PhraseStats:
    """How many cards' example prompts contain each phrase: the weight of a keyword."""
    cards: int = 0
    df: Counter = field(default_factory=Counter)

    @classmethod
    def from_cards(cls, cards: Iterable[AdapterCard]) -> "PhraseStats":
        stats = cls()
        for card in cards:
            stats.cards += 1
            stats.df.update(set(card_phrases(card)))
            stats.tags.add(card)
        return stats

    tags: TagStats = field(default_factory=TagStats)

    def idf(self, phrase: str) -> float:
        n = max(self.cards, 1)
        df = self.df.get(phrase, 0)
        if df > BOILERPLATE_SHARE * n and n >= 50:
            return 0.0
        return math.log((n + 1) / (df + 1))


def card_phrases(card: AdapterCard) -> list[str]:
    """Example-prompt phrases of a card (one entry per prompt that contains it)."""
    names = {n.lower() for ex in card.examples for n in ex.lora_names} | {card.lora_name.lower()}
    out = []
    for ex in card.examples:
        seen = {" ".join(words) for words in phrases(ex.prompt) if len(words) <= 6}
        out.extend(p for p in seen if p not in names and not p.replace(" ", "").isdigit())
    return out


def keywords(card: AdapterCard, stats: PhraseStats, limit: int = MAX_KEYWORDS) -> list[str]:
    counts = Counter(card_phrases(card))
    scored = [(n * stats.idf(p), p) for p, n in counts.items() if stats.idf(p) > 0]
    scored.sort(key=lambda sp: (-sp[0], sp[1]))
    return [p for _, p in scored[:limit]]


def _valid(w: float) -> bool:
    return MIN_WEIGHT <= w <= MAX_WEIGHT and w != 0


def recommended_weight(card: AdapterCard) -> tuple[float, str]:
    """(weight, source): author text, else the median example weight, else the default."""
    text = card.description_clean
    for m in _RANGE.finditer(text):
        lo, hi = float(m.group(1)), float(m.group(2))
        if _valid(lo) and _valid(hi) and lo <= hi:
            return round((lo + hi) / 2, 2), "author-text"
    for m in _SINGLE.finditer(text):
        w = float(m.group(1))
        if _valid(w) and w <= 1.5:
            return round(w, 2), "author-text"
    tag_weights = [float(w) for w in _TAG_WEIGHT.findall(text) if _valid(float(w))]
    if tag_weights:
        return round(statistics.median(tag_weights), 2), "author-text"
    example = [ex.lora_weight for ex in card.examples if ex.lora_weight is not None and _valid(ex.lora_weight)]
    if example:
        return round(statistics.median(example), 2), "example-median"
    return DEFAULT_WEIGHT, "default"


def description_triggers(card: AdapterCard) -> list[str]:
    """Trigger words the author wrote into the description, not already in ``trigger_words``."""
    known = {t.strip().lower() for t in card.trigger_words}
    found: list[str] = []
    for m in _TRIGGER.finditer(card.description_clean):
        tail = m.group(1)
        quoted = _QUOTED.findall(tail)
        parts = quoted or re.split(r",|;|、|，|\band\b|\bor\b", tail)
        for part in parts:
            word = part.strip(" :\"'`*[]").strip().rstrip("\\")
            word = word + ")" * (word.count("(") - word.count(")")) if word.count("(") > word.count(")") else word.lstrip(")")
            low = word.lower()
            if not word or ":" in word or len(word) > 40 or len(word.split()) > 4 or low in _NOT_TRIGGER \
                    or low.startswith(("the ", "a ", "this ", "it ", "no ")):
                continue
            if not quoted and len(parts) == 1 and len(word.split()) > 2:
                continue  # an unquoted sentence, not a word list
            if low not in known and word not in found:
                found.append(word)
        if len(found) >= 8:
            break
    return found[:8]


def describe(card: AdapterCard, cat: str, kws: list[str], triggers: list[str], weight: float) -> str:
    kind = {"other": "LoRA"}.get(cat, f"{cat} LoRA")
    parts = [f"{kind[0].upper()}{kind[1:]} for {card.base_model}: {card.name.strip()}."]
    all_triggers = list(dict.fromkeys([*card.trigger_words, *triggers]))
    if all_triggers:
        parts.append(f"Trigger words: {', '.join(all_triggers[:5])}.")
    if kws:
        parts.append(f"Example prompts feature {', '.join(kws[:6])}.")
    tags = [t for t in card.tags if t.lower() not in ("lora", cat)][:5]
    if tags:
        parts.append(f"Tagged {', '.join(tags)}.")
    parts.append(f"Suggested weight {weight:g}.")
    return " ".join(parts)


def refine_card(card: AdapterCard, stats: PhraseStats) -> Refined:
    cat = category(card)
    if cat not in CATEGORIES:
        raise ValueError(f"category {cat!r} is not one of {', '.join(CATEGORIES)}")
    kws = keywords(card, stats)
    triggers = description_triggers(card)
    weight, source = recommended_weight(card)
    return Refined(description=describe(card, cat, kws, triggers, weight), category=cat, keywords=kws,
                   trigger_words=triggers, recommended_weight=weight, weight_source=source,
                   purpose=extract_purpose(card, stats.tags, category=cat), refiner=REFINER_NAME,
                   source_hash=card.content_hash())


def needs_refine(card: AdapterCard) -> bool:
    """Offline refinement is redone when the source changed; a VLM result for the same source is kept."""
    if not card.refined.refiner:
        return True
    if card.refined.refiner.startswith("offline") and card.refined.refiner != REFINER_NAME:
        return True  # an older offline refiner: recompute (a VLM result is kept)
    return card.refined.source_hash != card.content_hash()


@dataclass
class RefineReport:
    refined: int = 0
    unchanged: int = 0
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"offline refiner: {self.refined} refined, {self.unchanged} unchanged"


def refine_store(store, limit: int | None = None, progress: bool = False) -> RefineReport:
    """Refine every card of ``store`` that needs it and write ``card.refined`` back."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit {limit} must be at least 1")
    cards = search_cards(store, CardQuery(limit=None))  # every card, most downloaded first
    stats = PhraseStats.from_cards(cards)
    todo = [c for c in cards if needs_refine(c)]
    if limit is not None:
        todo = todo[:limit]
    report = RefineReport(unchanged=len(cards) - len(todo))
    if progress:
        from tqdm import tqdm
        todo = tqdm(todo, desc="refine", unit="card")
    with store.transaction() as conn:
        for card in todo:
            store.set_refined(card.id, refine_card(card, stats), conn=conn)
            report.refined += 1
    return report


def starter_refiner(store) -> Callable[[AdapterCard], Refined]:
    """The refiner the starter-catalog build uses: statistics over the whole imported dump."""
    return functools.partial(refine_card, stats=PhraseStats.from_cards(store.iter_cards()))
