"""Dev-split part of the composer benchmark (issue 4): from real prompts to compositions.

The shared catalog is imported, refined offline and indexed once into ``--work`` (default: a
folder in the system temp dir) and reused by later runs (import / refine / index are
incremental: an unchanged catalog costs seconds). Retrieval results (top 150, all characters, so
that the composer's own "named characters only" rule is what is measured) are cached next to it,
keyed by the catalog state and the queries; ``--fresh`` ignores that cache.

Metrics per method over the dev queries:
- hit: the true adapter's Civitai model is in the final composition,
- adapters: mean number of adapters chosen,
- unnamed char: share of compositions holding a character adapter the prompt does not name
  (the composer's own test ``names_in_prompt``),
- hit split by the true adapter's kind (character / not character).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from catalog.card import AdapterCard
from catalog.settings import Settings
from catalog.store import CatalogStore
from components.composer import ComposeOptions, compose
from components.composer.offline import names_in_prompt, profile
from components.composer.naming import prompt_words
from components.types import Candidate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CATALOG_FILE = DATA / "civitai-loras-2023-07.jsonl.gz"
DEV_FILE = DATA / "lora-queries-dev.jsonl.gz"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "stylus-composer-bench"
TOP_K = 150
CACHE_VERSION = 7  # 5: candidates carry their concept rows (selection by concept); 6: tag-style prompts too; 7: related adapters ranked up in sentences. Bump when the retriever's ranking changes in a way the catalog state misses


def log(message: str) -> None:
    print(message, flush=True)


def open_dev_catalog(work: Path):
    """(store, retriever) over the shared catalog in ``work``, built on the first run only."""
    from catalog.importers.civitai import import_civitai_file
    from components.refiner.offline import refine_store
    from components.retriever import Retriever

    settings = Settings(home=work / "home", catalog_dir=work / "catalog")
    store = CatalogStore(settings.catalog_dir)
    t0 = time.perf_counter()
    if len(store) == 0:
        log(f"importing {CATALOG_FILE.name} into {settings.catalog_dir} (first run only)")
        import_civitai_file(store, CATALOG_FILE)
    report = refine_store(store)
    retriever = Retriever(settings, store)
    log(f"catalog {work}: {len(store):,} cards; {report.summary()}; index "
        f"{retriever.last_report.summary() if retriever.last_report else 'loaded'} "
        f"({time.perf_counter() - t0:.1f} s)")
    return store, retriever


def load_queries(limit: int | None) -> list[dict]:
    with gzip.open(DEV_FILE, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh][:limit]


@dataclass
class Retrieved:
    """One query's candidates without the cards (they come back from the store)."""
    query: dict
    rows: list[tuple]  # card id, score, evidence, concept rows (None: not weighed)


def retrieve_all(store: CatalogStore, retriever, queries: list[dict], work: Path,
                 fresh: bool = False, content_filter: bool = True) -> list[Retrieved]:
    state = hashlib.sha256(json.dumps(sorted(store.hashes().items())).encode()).hexdigest()[:16]
    content = "" if content_filter else "|no content filter"
    key = hashlib.sha256(f"{CACHE_VERSION}|{state}|{json.dumps(queries)}{content}".encode()).hexdigest()[:16]
    path = work / f"retrieved-{key}.pkl"
    if path.exists() and not fresh:
        with path.open("rb") as fh:
            return pickle.load(fh)
    filters = replace(retriever.filters, characters="all", allow_nsfw=not content_filter)
    out, t0 = [], time.perf_counter()
    for n, q in enumerate(queries, 1):
        result = retriever.retrieve(q["query"], top_k=TOP_K, filters=filters)
        out.append(Retrieved(q, [(c.id, c.score, c.evidence, c.concepts) for c in result.candidates]))
        if n % 500 == 0:
            log(f"  retrieved {n}/{len(queries)} ({time.perf_counter() - t0:.0f} s)")
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(out, fh)
    tmp.replace(path)
    return out


def candidates_of(r: Retrieved, cards: dict[str, AdapterCard]) -> list[Candidate]:
    return [Candidate(card=cards[row[0]], score=row[1], rank=k + 1, evidence=row[2],
                      concepts=row[3] if len(row) > 3 else None)
            for k, row in enumerate(r.rows) if row[0] in cards]


@dataclass
class Tally:
    n: int = 0
    hits: int = 0
    adapters: int = 0
    unnamed: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=lambda: {"character": [0, 0], "other": [0, 0]})
    ms: list[float] = field(default_factory=list)

    def row(self, name: str) -> str:
        ch, ot = self.by_kind["character"], self.by_kind["other"]
        frac = lambda a, b: a / b if b else 0.0  # noqa: E731
        lat = f"{statistics.median(self.ms):>7.2f}" if self.ms else f"{'-':>7}"
        return (f"{name:34} {frac(self.hits, self.n):>6.3f} {frac(self.adapters, self.n):>9.2f} "
                f"{frac(self.unnamed, self.n):>13.3f} {frac(ch[0], ch[1]):>10.3f} {frac(ot[0], ot[1]):>10.3f} {lat}")


def unnamed_character(card: AdapterCard, prompt: str) -> bool:
    return card.is_character() and not names_in_prompt(card, profile(card), prompt.lower(), prompt_words(prompt))


Picker = Callable[[str, list[Candidate]], list[Candidate]]


def pickers(llm_model: str, options: ComposeOptions | None = None) -> dict[str, Picker]:
    rng = random.Random(0)
    opts = options or ComposeOptions()

    def composed(o: ComposeOptions) -> Picker:
        def pick(prompt: str, cands: list[Candidate]) -> list[Candidate]:
            ids = set(compose(prompt, cands, o).adapter_ids())
            return [c for c in cands if c.id in ids]
        return pick

    out: dict[str, Picker] = {
        "random 3 of top-150": lambda p, c: rng.sample(c, min(3, len(c))),
        "retriever top-1": lambda p, c: c[:1],  # the first candidate alone: one pick per prompt
        "retriever top-3": lambda p, c: c[:3],
        "retriever top-3 named": lambda p, c: [x for x in c if not unnamed_character(x.card, p)][:3],
        "offline composer": composed(opts),
        # the dev split's character queries had the character's name removed: what the composer
        # reaches when characters count like any other adapter (STYLUS_CHARACTERS=all)
        "offline composer, all characters": composed(replace(opts, characters="all")),
    }
    if llm_model:
        out["llm composer"] = composed(replace(opts, composer="llm", llm_model=llm_model))
    return out


def evaluate(retrieved: list[Retrieved], cards: dict[str, AdapterCard], methods: dict[str, Picker],
             character_models: set[int]) -> dict[str, Tally]:
    tallies = {m: Tally() for m in methods}
    for r in retrieved:
        cands = candidates_of(r, cards)
        kind = "character" if r.query["model_id"] in character_models else "other"
        for m, pick in methods.items():
            t0 = time.perf_counter()
            picked = pick(r.query["query"], cands)
            t = tallies[m]
            if "composer" in m:
                t.ms.append((time.perf_counter() - t0) * 1000)
            hit = any(c.card.civitai_model_id == r.query["model_id"] for c in picked)
            t.n += 1
            t.hits += hit
            t.adapters += len(picked)
            t.unnamed += any(unnamed_character(c.card, r.query["query"]) for c in picked)
            t.by_kind[kind][0] += hit
            t.by_kind[kind][1] += 1
    return tallies


def bench_dev(limit: int | None, llm_model: str, work: Path | None, fresh: bool = False,
              options: ComposeOptions | None = None, opened: tuple | None = None,
              content_filter: bool = True) -> dict[str, Tally]:
    """``opened``: (store, retriever) from ``open_dev_catalog`` to reuse (the caller closes it).
    ``content_filter=False``: candidates retrieved as with ``allow_nsfw`` (suggestive and explicit
    adapters too; the composer still picks them only for a prompt that asks for such content)."""
    if not (CATALOG_FILE.exists() and DEV_FILE.exists()):
        log(f"\n== Dev split: skipped, real data not found under {DATA}")
        return {}
    work = Path(work or DEFAULT_WORK)
    work.mkdir(parents=True, exist_ok=True)
    log("\n== Dev split: hit rate / mean adapters / unnamed-character share")
    store, retriever = opened or open_dev_catalog(work)
    queries = load_queries(limit)
    retrieved = retrieve_all(store, retriever, queries, work, fresh, content_filter)
    cards = {c.id: c for c in store.iter_cards()}
    character_models = {c.civitai_model_id for c in cards.values() if c.is_character()}
    tallies = evaluate(retrieved, cards, pickers(llm_model, options), character_models)
    n_char = next(iter(tallies.values())).by_kind["character"][1] if tallies else 0
    log(f"{len(queries)} queries ({n_char} for character adapters), candidates: top {TOP_K} with all "
        f"characters, {'SFW content screen' if content_filter else 'no content filter'}; "
        f"goal hit >= 0.75 with <= 3 adapters")
    log(f"{'method':34} {'hit':>6} {'adapters':>9} {'unnamed char':>13} {'hit char':>10} "
        f"{'hit other':>10} {'p50 ms':>7}")
    for m, t in tallies.items():
        log(t.row(m))
    if opened is None:
        store.close()
    return tallies
