"""Scale benchmark (issue 7): a 100K-adapter catalog imports, indexes and serves.

    python bench/scale.py [--cards 100000] [--queries 200] [--work DIR] [--keep]

1. Synthesises a Civitai dump of ``--cards`` adapter versions from the real one
   (../shared/data/civitai-loras-2023-07.jsonl.gz): the real items first, then copies with new
   model/version ids, varied names (an extra word pair) and varied tags (shuffled, one dropped,
   one taken from another card). It is written to the work directory at run time only.
2. Runs each phase in its own fresh process, so each peak RSS (``ru_maxrss``) is that phase's:
   import (the real Civitai importer into SQLite), offline refine, index build (BM25 + MiniLM +
   chromadb, embedded), serve (a StylusEngine opening the catalog and index from disk, then
   ``engine.retrieve(top_k=150)`` on dev-split prompts: p50/p95 latency).
Retrieval speed goal (issue 3): p50 <= 80 ms at 100K on this 2-core machine.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
DUMP = DATA / "civitai-loras-2023-07.jsonl.gz"
QUERIES = DATA / "lora-queries-dev.jsonl.gz"
ID_STRIDE = 10_000_000  # copy c gets model/version ids + c * ID_STRIDE (real ids are below 2M)
WORDS = ["azure", "crimson", "golden", "misty", "silent", "vivid", "ancient", "lunar", "velvet", "iron",
         "spring", "autumn", "neon", "pastel", "shadow", "crystal"]


# ---- 1. a scaled-up dump --------------------------------------------------------------
def _vary(item: dict, c: int, rng: random.Random, tag_pool: list[str]) -> dict:
    item = copy.deepcopy(item)
    item["id"] = item["id"] + c * ID_STRIDE
    item["name"] = f"{item['name']} {rng.choice(WORDS)} {rng.choice(WORDS)} {c}"
    tags = [t for t in item.get("tags") or [] if isinstance(t, str)]
    rng.shuffle(tags)
    item["tags"] = tags[1:] + [rng.choice(tag_pool)] if tag_pool else tags
    for v in item.get("modelVersions") or []:
        if isinstance(v, dict) and isinstance(v.get("id"), int):
            v["id"] += c * ID_STRIDE
    return item


def synthesise(target: int, out: Path) -> tuple[int, int]:
    """Write items until they hold ``target`` versions; returns (items, versions)."""
    with gzip.open(DUMP, "rt", encoding="utf-8") as fh:
        real = [json.loads(line) for line in fh]
    tag_pool = sorted({t for it in real for t in it.get("tags") or [] if isinstance(t, str)})
    rng = random.Random(7)
    items = versions = c = 0
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as fh:
        while versions < target:
            for item in real:
                new = item if c == 0 else _vary(item, c, rng, tag_pool)
                new["modelVersions"] = (new.get("modelVersions") or [])[: target - versions]
                fh.write(json.dumps(new, ensure_ascii=False) + "\n")
                items += 1
                versions += len(new["modelVersions"])
                if versions >= target:
                    break
            c += 1
    return items, versions


# ---- 2. phases, each in a fresh process ------------------------------------------------------
def _settings(work: Path):
    from catalog.settings import Settings
    return Settings(home=work / "home", catalog_dir=work / "catalog", torch_threads=1)


def phase_import(work: str) -> dict:
    from catalog.importers.civitai import import_civitai_file
    from catalog.store import CatalogStore
    work_dir = Path(work)
    with CatalogStore(_settings(work_dir).catalog_dir) as store:
        report = import_civitai_file(store, work_dir / "dump.jsonl.gz", progress=False)
        return {"summary": report.summary(), "cards": len(store)}


def phase_refine(work: str) -> dict:
    from catalog.store import CatalogStore
    from components.refiner.offline import refine_store
    with CatalogStore(_settings(Path(work)).catalog_dir) as store:
        report = refine_store(store)
        return {"summary": f"refined {report.refined:,}"}


def phase_index(work: str) -> dict:
    from catalog.store import CatalogStore
    from components.retriever import Retriever
    settings = _settings(Path(work))
    with CatalogStore(settings.catalog_dir) as store:
        retriever = Retriever(settings, store)
        return {"summary": retriever.last_report.summary(), "indexed": len(retriever.ids)}


def phase_serve(work: str, n_queries: int) -> dict:
    import torch
    torch.set_num_threads(1)
    from components.engine import StylusEngine
    engine = StylusEngine(_settings(Path(work)))
    t0 = time.perf_counter()
    engine.retrieve("warm up")  # opens the catalog, loads the index from disk, loads MiniLM
    t_open = time.perf_counter() - t0
    with gzip.open(QUERIES, "rt", encoding="utf-8") as fh:
        prompts = [json.loads(line)["query"] for line in fh][:n_queries]
    times, empty = [], 0
    for p in prompts:
        t = time.perf_counter()
        result = engine.retrieve(p, top_k=150)
        times.append((time.perf_counter() - t) * 1000)
        empty += not result.candidates
    times.sort()
    return {"summary": f"opened in {t_open:.1f} s; {len(prompts)} queries, {empty} without candidates",
            "p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))],
            "indexed": len(engine.retriever.ids)}


def _measured(fn, *args) -> dict:
    t0 = time.perf_counter()
    out = fn(*args)
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out


def run_phase(fn, *args) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measured, (fn, *args))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cards", type=int, default=100_000, help="adapter versions in the catalog (default: %(default)s)")
    ap.add_argument("--queries", type=int, default=200, help="dev-split prompts timed (default: %(default)s)")
    ap.add_argument("--work", default=None, help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if not DUMP.exists() or not QUERIES.exists():
        sys.exit(f"real data not found in {DATA} (needs {DUMP.name} and {QUERIES.name})")
    if args.cards < 1:
        sys.exit(f"--cards {args.cards} must be at least 1")
    work = Path(args.work or tempfile.mkdtemp(prefix="stylus-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        items, versions = synthesise(args.cards, work / "dump.jsonl.gz")
        print(f"synthesised {items:,} items / {versions:,} versions in {time.perf_counter() - t0:.0f} s", flush=True)
        rows = []
        for name, fn, extra in [("import", phase_import, ()), ("refine", phase_refine, ()),
                                ("index", phase_index, ()), ("serve", phase_serve, (args.queries,))]:
            r = run_phase(fn, str(work), *extra)
            rows.append((name, r))
            print(f"{name}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB; {r['summary']}", flush=True)
        serve = rows[-1][1]
        print("\n| phase | seconds | peak RSS MB |\n|---|---|---|")
        for name, r in rows:
            print(f"| {name} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
        print(f"retrieval top-150 at {serve['indexed']:,} indexed cards: p50 {serve['p50_ms']:.1f} ms, "
              f"p95 {serve['p95_ms']:.1f} ms (goal p50 <= 80 ms)")
        return 0
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
