"""Agreement with the Stylus paper's own adapter choices (issue 4, benchmark), where they overlap.

The paper's composer output (``ranked_adapters`` of ../shared/data/stylus/coco_rank.csv and
parti_prompts.csv: ``{keyword: [Civitai model ids]}``) picks from a newer, larger catalog; only
a few hundred of its ids exist in ours. Gold per caption: the paper's ids that have a card in
our catalog passing the app's default filters (SD 1.5, loadable, not NSFW, not blocked - blocked
cards are not indexed -, and a character only when the caption names it, the composer's own
``names_in_prompt`` test). Captions with at least one gold id are evaluated, at most ``limit``
of them (a seeded sample, the same every run).

Each caption goes through our retriever (top 150, the app's default filters: characters named)
and the offline composer. Micro-averaged over all gold ids / picked adapters:
- recall@150: gold ids among the retrieved top 150,
- recall: gold ids in the final composition; precision: picked adapters that are gold,
- caption hit: share of captions where we pick at least one gold id,
- keyword agreement: per paper keyword with a gold id, one of its gold ids is assigned to a topic
  of ours that shares a content word with that keyword.
"Retriever top-3" is the same retrieval without the composer, for scale.
"""
from __future__ import annotations

import ast
import csv
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from catalog.card import AdapterCard
from components.composer import compose
from components.composer.naming import prompt_words
from components.composer.offline import names_in_prompt, profile
from components.types import Composition

import segmentation as seg  # bench/segmentation.py: the same word normalisation as the F1 rows

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAPER_FILES = {"coco": "coco_rank.csv", "parti": "parti_prompts.csv"}
TOP_K = 150
SEED = 0


@dataclass
class PaperCaption:
    source: str  # coco | parti
    caption: str
    gold: dict[str, set[int]]  # paper keyword -> its ids that are in our catalog (filtered)

    def gold_ids(self) -> set[int]:
        return set().union(*self.gold.values())


def read_paper(path: Path) -> list[tuple[str, dict[str, list[int]]]]:
    """(caption, {keyword: ids}) per row; a row with empty or unparsable output has no keywords."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                topics = ast.literal_eval(row["ranked_adapters"])
            except (ValueError, SyntaxError):
                topics = {}
            if not isinstance(topics, dict):
                topics = {}
            rows.append((row["caption"], {str(k): [int(i) for i in v if isinstance(i, int)]
                                          for k, v in topics.items() if isinstance(v, list)}))
    return rows


def eligible_cards(retriever, cards: dict[str, AdapterCard]) -> dict[int, list[AdapterCard]]:
    """Civitai model id -> its indexed cards that pass the static default filters."""
    f = retriever.filters
    out: dict[int, list[AdapterCard]] = {}
    for card_id, facts in retriever.index.facts.items():
        if facts.civitai_model_id is None or card_id not in cards:
            continue
        if f.base_model and facts.base_model not in (f.base_model, "unknown"):
            continue
        if (facts.nsfw and not f.allow_nsfw) or (f.loadable_only and not facts.loadable):
            continue
        out.setdefault(facts.civitai_model_id, []).append(cards[card_id])
    return out


def allowed_for(caption: str, model_cards: list[AdapterCard]) -> bool:
    """The app shows a character adapter only when the caption names it."""
    low, words = caption.lower(), prompt_words(caption)
    return any(not c.is_character() or names_in_prompt(c, profile(c), low, words) for c in model_cards)


def paper_captions(eligible: dict[int, list[AdapterCard]], limit: int | None) -> tuple[list[PaperCaption], int]:
    """Captions with at least one gold id (seeded sample of ``limit``) and how many there were."""
    found = []
    for source, name in PAPER_FILES.items():
        for caption, topics in read_paper(DATA / "stylus" / name):
            gold = {k: {i for i in ids if i in eligible and allowed_for(caption, eligible[i])}
                    for k, ids in topics.items()}
            gold = {k: v for k, v in gold.items() if v}
            if gold:
                found.append(PaperCaption(source, caption, gold))
    if limit is not None and len(found) > limit:
        keep = sorted(random.Random(SEED).sample(range(len(found)), limit))
        return [found[i] for i in keep], len(found)
    return found, len(found)


def content_words(text: str) -> set[str]:
    return set(seg.words(text)) - seg.FUNCTION_WORDS


def keyword_agreement(p: PaperCaption, comp: Composition) -> tuple[int, int]:
    """(paper keywords whose gold adapter sits under a topic sharing a word with them, keywords)."""
    placed: dict[int, set[str]] = {}
    for topic in comp.topics:
        words = content_words(" ".join(topic.keywords))
        for a in topic.adapters:
            if a.civitai_model_id is not None:
                placed.setdefault(a.civitai_model_id, set()).update(words)
    agree = sum(any(content_words(k) & placed.get(i, set()) for i in ids) for k, ids in p.gold.items())
    return agree, len(p.gold)


@dataclass
class Agreement:
    captions: int = 0
    gold: int = 0  # gold ids, summed over captions
    retrieved: int = 0  # gold ids in our top 150
    picked: int = 0  # adapters in our compositions
    picked_gold: int = 0  # of those, gold
    caption_hits: int = 0
    keywords: list[int] = field(default_factory=lambda: [0, 0])  # agreeing, all

    def add(self, gold: set[int], retrieved: set[int], picked: list[int], kw: tuple[int, int] | None) -> None:
        self.captions += 1
        self.gold += len(gold)
        self.retrieved += len(gold & retrieved)
        self.picked += len(picked)
        self.picked_gold += len(gold & set(picked))
        self.caption_hits += bool(gold & set(picked))
        if kw:
            self.keywords[0] += kw[0]
            self.keywords[1] += kw[1]

    def row(self, name: str) -> str:
        frac = lambda a, b: f"{a / b:.3f}" if b else "-"  # noqa: E731
        return (f"{name:28} {self.captions:>8} {frac(self.retrieved, self.gold):>10} "
                f"{frac(self.picked_gold, self.gold):>7} {frac(self.picked_gold, self.picked):>9} "
                f"{frac(self.caption_hits, self.captions):>8} {frac(*self.keywords):>9} "
                f"{frac(self.picked, self.captions):>9}")


def evaluate(retriever, captions: list[PaperCaption]) -> dict[str, Agreement]:
    rows = {f"{m}, {s}": Agreement() for m in ("offline composer", "retriever top-3")
            for s in (*PAPER_FILES, "all")}
    for p in captions:
        cands = retriever.retrieve(p.caption, top_k=TOP_K).candidates
        got = {c.card.civitai_model_id for c in cands}
        comp = compose(p.caption, cands)
        ours = [a.civitai_model_id for t in comp.topics for a in t.adapters]
        top3 = [c.card.civitai_model_id for c in cands[:3]]
        for s in (p.source, "all"):
            rows[f"offline composer, {s}"].add(p.gold_ids(), got, ours, keyword_agreement(p, comp))
            rows[f"retriever top-3, {s}"].add(p.gold_ids(), got, top3, None)
    return rows


def bench_paper(store, retriever, limit: int | None) -> dict[str, Agreement]:
    """Print the agreement table; ``store``/``retriever`` over the real catalog (composer_dev)."""
    if not all((DATA / "stylus" / n).exists() for n in PAPER_FILES.values()):
        print(f"\n== Agreement with the paper: skipped, {DATA / 'stylus'} not found")
        return {}
    t0 = time.perf_counter()
    cards = {c.id: c for c in store.iter_cards()}
    eligible = eligible_cards(retriever, cards)
    captions, total = paper_captions(eligible, limit)
    print(f"\n== Agreement with the paper's adapter choices (ids in our catalog, filtered: "
          f"{retriever.filters}); {len(captions)} of {total} captions with such an id "
          f"(seed {SEED}), top {TOP_K} retrieved, offline composer")
    rows = evaluate(retriever, captions)
    print(f"{'method, captions':28} {'captions':>8} {'recall@150':>10} {'recall':>7} {'precision':>9} "
          f"{'cap. hit':>8} {'keyword':>9} {'adapters':>9}")
    for name, a in rows.items():
        if a.captions:
            print(a.row(name))
    print(f"({time.perf_counter() - t0:.0f} s; recall/precision micro over gold ids / picked adapters; "
          f"keyword: paper keyword's gold adapter under one of our topics sharing a word with it)")
    return rows
