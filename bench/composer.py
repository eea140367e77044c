"""Composer benchmark (issue 4): selection quality and speed, side by side in one run.

    python bench/composer.py [--limit N] [--llm-model M] [--no-dev]

1. Segmentation on the paper's COCO / Parti captions against the paper's own topics (the keys of
   ``ranked_adapters``), with the metric calibrated in ``bench/segmentation.py`` so the naive
   baseline reproduces issue 4's figures: per-caption topic-level F1 (a topic counts when its
   set of words equals one of the paper's) and token-level F1 (words inside topics), averaged
   over all captions; words are lower-case whitespace tokens with edge punctuation stripped and
   a light singular, stopwords kept; a row with empty/unparsable paper output has no gold
   topics. Naive baseline: split at function words only. Rows: naive, our shipped tagger
   (in-sample: trained on both corpora) and held-out (trained on the other corpus only).
2. Dev split (../shared/data/lora-queries-dev.jsonl.gz) through the retriever: hit rate (true
   adapter in the composition), mean adapters, share with an unnamed character adapter, for
   random picks / retriever top-3 / offline composer / LLM composer (when --llm-model is set).
3. Compose latency p50/p95 with 150 candidates from the starter catalog.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
DATA = REPO.parent / "shared" / "data"

from components.composer import ComposeOptions, compose, segment  # noqa: E402
from components.composer.offline import names_in_prompt, profile  # noqa: E402
from components.composer.segment import normalize_phrase  # noqa: E402
from components.types import Candidate  # noqa: E402
import segmentation as seg  # noqa: E402  (bench/segmentation.py: metric, naive baseline, tagger training)

def bench_segmentation() -> None:
    """Calibrated metric of ``bench/segmentation.py``; the tagger's held-out rows retrain it."""
    print("\n== Segmentation vs the paper's topics: macro topic F1 / token F1 (metric: bench/segmentation.py)")
    coco, parti = seg.load_paper("coco_rank.csv"), seg.load_paper("parti_prompts.csv")
    ours = lambda c: [s.text for s in segment(c)]  # noqa: E731
    print(f"{'segmenter':44} {'coco':>13} {'parti':>13}   goal topic>=0.70 token>=0.90")
    rows = [("naive stopword splitter", seg.naive, seg.naive),
            ("ours, shipped model (in-sample: trained on both)", ours, ours),
            ("ours, held out: trained on the other corpus", seg.tagger_segmenter(seg.train(parti)),
             seg.tagger_segmenter(seg.train(coco)))]
    for name, on_coco, on_parti in rows:
        c, p = seg.f1_scores(coco, on_coco), seg.f1_scores(parti, on_parti)
        print(f"{name:44} {c[0]:>6.3f}/{c[1]:.3f} {p[0]:>6.3f}/{p[1]:.3f}")
    print("(5-fold within COCO: python bench/segmentation.py)")


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
    prompts = [c for c, _ in seg.load_paper("coco_rank.csv")[:300]]
    with gzip.open(DATA / "lora-queries-dev.jsonl.gz", "rt", encoding="utf-8") as fh:
        prompts += [json.loads(line)["query"] for line in fh][:300]
    bench_latency(prompts)
    if not args.no_dev:
        bench_dev(args.limit, args.llm_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
