"""Composer benchmark (issue 4): selection quality and speed, side by side in one run.

    python bench/composer.py [--limit N] [--llm-model M] [--no-dev]

1. Segmentation on the paper's COCO / Parti captions against the paper's own topics (the keys of
   ``ranked_adapters``): topic-level F1 (a topic counts when its set of words equals one of the
   paper's) and token-level F1 (words inside topics). Words: lower case, alphanumeric runs,
   without the function words in ``FUNCTION_WORDS``; rows whose paper output is empty or
   unparsable are skipped. Baseline: a naive splitter on those function words and punctuation.
2. Dev split (../shared/data/lora-queries-dev.jsonl.gz) through the retriever: hit rate (true
   adapter in the composition), mean adapters, share with an unnamed character adapter, for
   random picks / retriever top-3 / offline composer / LLM composer (when --llm-model is set).
3. Compose latency p50/p95 with 150 candidates from the starter catalog.
"""
from __future__ import annotations

import argparse
import ast
import csv
import gzip
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

from components.composer import ComposeOptions, compose, segment  # noqa: E402
from components.composer.offline import names_in_prompt, profile  # noqa: E402
from components.composer.segment import normalize_phrase  # noqa: E402
from components.types import Candidate  # noqa: E402

FUNCTION_WORDS = frozenset(
    "a an the of in on at to with and or is are was were be been being it its it's this that these "
    "those there their his her some has have had for from by as into onto over under next near "
    "while through up down out off about above below around behind between".split())


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in FUNCTION_WORDS)


def naive(caption: str) -> list[str]:
    out, cur = [], []
    for tok in re.findall(r"[A-Za-z0-9'-]+|[^\sA-Za-z0-9]", caption):
        if tok.lower() in FUNCTION_WORDS or not tok[0].isalnum():
            if cur:
                out.append(" ".join(cur))
            cur = []
        else:
            cur.append(tok)
    if cur:
        out.append(" ".join(cur))
    return out


def load_paper(name: str) -> list[tuple[str, list[str]]]:
    rows = []
    with open(DATA / "stylus" / name, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                keys = list(ast.literal_eval(row["ranked_adapters"]).keys())
            except (ValueError, SyntaxError):
                continue
            if keys:
                rows.append((row["caption"], keys))
    return rows


def f1_scores(rows, segmenter) -> tuple[float, float]:
    tp = fp = fn = ttp = tfp = tfn = 0
    for caption, keys in rows:
        gold = {_words(k) for k in keys} - {frozenset()}
        pred = {_words(k) for k in segmenter(caption)} - {frozenset()}
        m = len(gold & pred)
        tp, fp, fn = tp + m, fp + len(pred) - m, fn + len(gold) - m
        gw, pw = set().union(*gold), set().union(*pred)
        ttp, tfp, tfn = ttp + len(gw & pw), tfp + len(pw - gw), tfn + len(gw - pw)
    f = lambda a, b, c: 2 * a / (2 * a + b + c) if a else 0.0  # noqa: E731
    return f(tp, fp, fn), f(ttp, tfp, tfn)


def bench_segmentation() -> None:
    ours = lambda c: [s.text for s in segment(c)]  # noqa: E731
    print("\n== Segmentation vs the paper's topics (topic F1 / token F1)")
    print(f"{'set':8} {'rows':>6} {'naive':>15} {'ours':>15}   goal topic>=0.70 token>=0.90")
    for name in ("coco_rank.csv", "parti_prompts.csv"):
        rows = load_paper(name)
        n, o = f1_scores(rows, naive), f1_scores(rows, ours)
        print(f"{name.split('_')[0]:8} {len(rows):>6} {n[0]:>7.3f}/{n[1]:.3f} {o[0]:>7.3f}/{o[1]:.3f}")


def starter_candidates(k: int = 150) -> list[Candidate]:
    from catalog.starter import load_starter_cards
    cards = load_starter_cards()[:k]
    return [Candidate(card=c, score=1.0 - i / (2 * k), rank=i) for i, c in enumerate(cards)]


def bench_latency(prompts: list[str]) -> None:
    cands = starter_candidates()
    times = []
    for p in prompts:
        t0 = time.perf_counter()
        compose(p, cands)
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=20)
    print(f"\n== Offline compose latency, {len(cands)} candidates, {len(times)} prompts: "
          f"p50 {statistics.median(times):.2f} ms, p95 {q[18]:.2f} ms (goal p50 <= 10 ms)")


def bench_dev(limit: int, llm_model: str) -> None:
    print("\n== Dev split: hit rate / mean adapters / unnamed-character share")
    try:
        from components.engine import StylusEngine
        from catalog.settings import Settings
        engine = StylusEngine(Settings.from_env())
        engine.retrieve("a dog", top_k=5)
    except (ImportError, ModuleNotFoundError) as exc:
        print(f"skipped: retriever not available ({exc})")
        return
    with gzip.open(DATA / "lora-queries-dev.jsonl.gz", "rt", encoding="utf-8") as fh:
        queries = [json.loads(line) for line in fh][:limit]
    rng = random.Random(0)
    methods = {"random 3": None, "retriever top-3": None, "offline composer": ComposeOptions()}
    if llm_model:
        methods["llm composer"] = ComposeOptions(composer="llm", llm_model=llm_model)
    stats = {m: [0, 0, 0] for m in methods}
    for q in queries:
        retrieval = engine.retrieve(q["query"], top_k=150)
        cands = retrieval.candidates
        for m, opts in methods.items():
            if m == "random 3":
                picked = rng.sample(cands, min(3, len(cands)))
            elif m == "retriever top-3":
                picked = cands[:3]
            else:
                ids = set(compose(q["query"], cands, opts).adapter_ids())
                picked = [c for c in cands if c.id in ids]
            low = q["query"].lower()
            words = set(normalize_phrase(q["query"]))
            stats[m][0] += any(c.card.civitai_model_id == q["model_id"] for c in picked)
            stats[m][1] += len(picked)
            stats[m][2] += any(c.card.is_character() and not names_in_prompt(c.card, profile(c.card), low, words)
                               for c in picked)
    n = max(1, len(queries))
    print(f"{'method':18} {'hit':>6} {'adapters':>9} {'unnamed char':>13}   ({n} queries; goal hit>=0.75, <=3)")
    for m, (hit, count, char) in stats.items():
        print(f"{m:18} {hit / n:>6.3f} {count / n:>9.2f} {char / n:>13.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=2072, help="dev queries to run")
    ap.add_argument("--llm-model", default="", help="litellm model for the LLM composer row")
    ap.add_argument("--no-dev", action="store_true", help="skip the dev split (no retriever needed)")
    args = ap.parse_args()
    bench_segmentation()
    prompts = [c for c, _ in load_paper("coco_rank.csv")[:300]]
    with gzip.open(DATA / "lora-queries-dev.jsonl.gz", "rt", encoding="utf-8") as fh:
        prompts += [json.loads(line)["query"] for line in fh][:300]
    bench_latency(prompts)
    if not args.no_dev:
        bench_dev(args.limit, args.llm_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
