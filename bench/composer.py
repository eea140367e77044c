"""Composer benchmark (issue 4): selection quality and speed, side by side in one run.

    python bench/composer.py [--limit N] [--llm-model M] [--no-dev] [--no-paper] [--paper-limit N]
                             [--work DIR] [--fresh] [--no-segmentation] [--no-content-filter]

1. Segmentation on the paper's COCO / Parti captions against the paper's own topics (the keys of
   ``ranked_adapters``), with the metric calibrated in ``bench/segmentation.py`` so the naive
   baseline reproduces issue 4's figures: per-caption topic-level F1 (a topic counts when its
   set of words equals one of the paper's) and token-level F1 (words inside topics), averaged
   over all captions; words are lower-case whitespace tokens with edge punctuation stripped and
   a light singular, stopwords kept; a row with empty/unparsable paper output has no gold
   topics. Naive baseline: split at function words only. Rows: naive, our shipped tagger
   (in-sample: trained on both corpora) and held-out (trained on the other corpus only).
2. Dev split (../shared/data/lora-queries-dev.jsonl.gz) through the retriever on the real
   catalog (cached in --work; see bench/composer_dev.py): hit rate (true adapter in the
   composition), mean adapters, share with an unnamed character adapter, hit rate for character
   and other true adapters, for random picks / retriever top-3 / offline composer / LLM composer
   (when --llm-model is set).
3. Compose latency p50/p95 with 150 candidates from the starter catalog.
4. Agreement with the paper's adapter choices where those ids are in our catalog (retriever with
   the app's default filters + offline composer on the same cached catalog; see
   bench/composer_paper.py).
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
DATA = REPO.parent / "shared" / "data"

from components.composer import compose, segment  # noqa: E402
from components.types import Candidate  # noqa: E402
import segmentation as seg  # noqa: E402  (bench/segmentation.py: metric, naive baseline, tagger training)
from composer_dev import CATALOG_FILE, DEFAULT_WORK, bench_dev, open_dev_catalog  # noqa: E402
from composer_paper import bench_paper  # noqa: E402


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="first N dev queries only")
    ap.add_argument("--llm-model", default="", help="litellm model for the LLM composer row")
    ap.add_argument("--no-dev", action="store_true", help="skip the dev split (with --no-paper too: no retriever needed)")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the cached dev catalog, index and retrieval results (reused)")
    ap.add_argument("--fresh", action="store_true", help="retrieve the dev queries again (ignore the cache)")
    ap.add_argument("--no-segmentation", action="store_true", help="skip the segmentation rows")
    ap.add_argument("--no-paper", action="store_true", help="skip agreement with the paper's adapters")
    ap.add_argument("--no-content-filter", action="store_true",
                    help="dev split: retrieve as with allow_nsfw (the SFW content screen removes ~10%% of its answers)")
    ap.add_argument("--paper-limit", type=int, default=2000,
                    help="at most N paper captions (seeded sample) for the agreement rows (default 2000)")
    args = ap.parse_args()
    if not args.no_segmentation:
        bench_segmentation()
    prompts = [c for c, _ in seg.load_paper("coco_rank.csv")[:300]]
    with gzip.open(DATA / "lora-queries-dev.jsonl.gz", "rt", encoding="utf-8") as fh:
        prompts += [json.loads(line)["query"] for line in fh][:300]
    bench_latency(prompts)
    if args.paper_limit < 1:
        ap.error(f"--paper-limit must be at least 1, got {args.paper_limit}")
    if (args.no_dev and args.no_paper) or not CATALOG_FILE.exists():
        if not args.no_dev:
            bench_dev(args.limit, args.llm_model, args.work, args.fresh,  # prints why it skips
                      content_filter=not args.no_content_filter)
        return 0
    work = Path(args.work or DEFAULT_WORK)
    work.mkdir(parents=True, exist_ok=True)
    store, retriever = open_dev_catalog(work)
    try:
        if not args.no_dev:
            bench_dev(args.limit, args.llm_model, work, args.fresh, opened=(store, retriever),
                      content_filter=not args.no_content_filter)
        if not args.no_paper:
            bench_paper(store, retriever, args.paper_limit)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
