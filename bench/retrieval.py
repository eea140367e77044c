"""Retrieval benchmark (issue 3): quality on the dev split and speed, in one run.

    python bench/retrieval.py [--limit N] [--scale 100000] [--latency-queries 200] [--work DIR]

1. Imports ../shared/data/civitai-loras-2023-07.jsonl.gz into a temporary catalog, refines it
   offline and indexes it (times both).
2. Dev split (../shared/data/lora-queries-dev.jsonl.gz): R@1/3/10/150 and MRR over Civitai
   model ids (a model counts at the rank of its best version) for our hybrid retriever (with the
   default character filter and with all characters), BM25-only (the same sparse indexes, no
   dense), dense-only (MiniLM on card text through chromadb) and random, in the same run.
3. Re-index time after one curator edit; retrieval latency p50/p95 (top-150, whole
   ``retrieve`` with evidence) at the real catalog size and on a catalog scaled up to
   ``--scale`` cards (copies of real cards with new ids; their vectors get small noise).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

import numpy as np  # noqa: E402

from catalog.settings import Settings  # noqa: E402
from catalog.store import CatalogStore  # noqa: E402
from components.retriever import Filters, Fusion, Retriever  # noqa: E402

KS = (1, 3, 10, 150)


def metrics(ranks: list[int]) -> dict[str, float]:
    r = np.asarray(ranks, dtype=float)
    out = {f"R@{k}": float((r <= k).mean()) for k in KS}
    out["MRR"] = float((1.0 / r).mean())
    return out


def model_ranks(retriever: Retriever, queries: list[dict], filters: Filters, fusion: Fusion) -> list[int]:
    models = [retriever.index.facts[i].civitai_model_id for i in retriever.ids]
    ranks = []
    for q in queries:
        ranked = [models[i] for i, _, _ in retriever.rank(q["query"], 150, filters, fusion)]
        seen: list = []
        for m in ranked:
            if m not in seen:
                seen.append(m)
        ranks.append(seen.index(q["model_id"]) + 1 if q["model_id"] in seen else 10**9)
    return ranks


def random_ranks(retriever: Retriever, queries: list[dict], seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    models = sorted({retriever.index.facts[i].civitai_model_id for i in retriever.ids
                     if retriever.index.facts[i].base_model == "SD 1.5"})
    ranks = []
    for q in queries:
        order = rng.sample(models, len(models))
        ranks.append(order.index(q["model_id"]) + 1 if q["model_id"] in order else 10**9)
    return ranks


def latency(retriever: Retriever, prompts: list[str], full: bool = False) -> str:
    """p50/p95 ms of ranking the top 150 (``full``: whole ``retrieve`` with cards and evidence)."""
    times = []
    retriever.index.forget_queries()  # every timed query embeds its prompt (no cache hits)
    for p in prompts:
        start = time.perf_counter()
        if full:
            retriever.retrieve(p, top_k=150)
        else:
            retriever.rank(p, 150)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return f"p50 {statistics.median(times):.1f} ms, p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms"


def scale_up(retriever: Retriever, settings: Settings, target: int) -> Retriever:
    """A retriever over ``target`` cards: the real ones plus renamed copies (vectors with noise)."""
    import scipy.sparse as sp

    src = retriever.index
    big = Retriever(settings, retriever.store, embedder=retriever.embedder, update=False)
    idx = big.index
    real = list(src.facts.values())
    got = src.vectors.collection.get(ids=[f.id for f in real], include=["embeddings"])
    vec = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
    rng = np.random.default_rng(0)
    parts = {"prompts": ([], []), "cards": ([], [])}
    copy = 0
    while len(idx.facts) < target:
        batch = real[: min(len(real), target - len(idx.facts))]
        suffix = "" if copy == 0 else f"~{copy}"
        keep = {f.id for f in batch}
        for name in parts:
            lex = getattr(src, name)
            rows = np.flatnonzero([o in keep for o in lex.owners])
            parts[name][0].append(lex.counts[rows])
            parts[name][1].append(np.array([o + suffix for o in lex.owners[rows]], dtype=object))
        ids, vectors = [], []
        for f in batch:
            new_id = f.id + suffix
            model = None if f.civitai_model_id is None else f.civitai_model_id + copy * 10_000_000
            idx.facts[new_id] = replace(f, id=new_id, civitai_model_id=model)
            idx.indexed_hash[new_id] = "scaled"
            ids.append(new_id)
            v = vec[f.id] + (rng.normal(0, 0.02, vec[f.id].shape).astype(np.float32) if copy else 0)
            vectors.append(v / np.linalg.norm(v))
        idx.vectors.upsert(ids, np.asarray(vectors), [{"base_model": f.base_model} for f in batch])
        copy += 1
    for name, (mats, owners) in parts.items():
        lex, source = getattr(idx, name), getattr(src, name)
        lex.vocab = dict(source.vocab)
        lex.counts = sp.vstack(mats, format="csr")
        lex.owners = np.concatenate(owners)
        lex._weights = None
    big._arrange()
    big.rank("warm up", 10)
    return big


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="first N dev queries only")
    ap.add_argument("--scale", type=int, default=100_000, help="cards in the scaled-up catalog (0: skip)")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args()
    if not (DATA / "civitai-loras-2023-07.jsonl.gz").exists():
        sys.exit(f"real data not found at {DATA}")
    from catalog.importers.civitai import import_civitai_file
    from components.refiner.offline import refine_store

    work = Path(args.work or tempfile.mkdtemp(prefix="stylus-bench-"))
    settings = Settings(home=work / "home", catalog_dir=work / "catalog")
    store = CatalogStore(settings.catalog_dir)
    t0 = time.perf_counter()
    import_civitai_file(store, DATA / "civitai-loras-2023-07.jsonl.gz")
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    refine_store(store)
    t_refine = time.perf_counter() - t0
    t0 = time.perf_counter()
    retriever = Retriever(settings, store)
    t_index = time.perf_counter() - t0
    print(f"catalog: {len(store):,} cards (import {t_import:.1f} s, offline refine {t_refine:.1f} s); "
          f"index {len(retriever.ids):,} cards in {t_index:.1f} s", flush=True)

    with gzip.open(DATA / "lora-queries-dev.jsonl.gz", "rt", encoding="utf-8") as fh:
        queries = [json.loads(line) for line in fh][: args.limit]
    default, everyone = retriever.filters, replace(retriever.filters, characters="all")
    rows = [
        ("stylus hybrid (default filters)", model_ranks(retriever, queries, default, Fusion())),
        ("stylus hybrid (all characters)", model_ranks(retriever, queries, everyone, Fusion())),
        ("stylus hybrid (all characters, no content filter)",
         model_ranks(retriever, queries, replace(everyone, allow_nsfw=True), Fusion())),
        ("whole-prompt signals only, no concepts (all characters)",
         model_ranks(retriever, queries, everyone, Fusion.whole_prompt())),
        ("BM25 only (all characters)", model_ranks(retriever, queries, everyone, Fusion.lexical_only())),
        ("dense MiniLM only (all characters)", model_ranks(retriever, queries, everyone, Fusion.dense_only())),
        ("random", random_ranks(retriever, queries)),
    ]
    print(f"\ndev split: {len(queries):,} queries, {len({f.civitai_model_id for f in retriever.index.facts.values()}):,} models")
    print("| method | " + " | ".join(f"R@{k}" for k in KS) + " | MRR |")
    print("|---|" + "---|" * (len(KS) + 1))
    for name, ranks in rows:
        m = metrics(ranks)
        print(f"| {name} | " + " | ".join(f"{m[f'R@{k}']:.3f}" for k in KS) + f" | {m['MRR']:.3f} |")

    card = next(iter(store.iter_cards("blocked=0", order="download_count DESC, id")))
    store.edit(card.id, editor="bench", description=f"{card.name}: a curated description for the benchmark")
    t0 = time.perf_counter()
    summary = retriever.refresh()
    t_edit = time.perf_counter() - t0
    prompts = [q["query"] for q in queries[: args.latency_queries]]
    print(f"\nindex build {t_index:.1f} s | re-index after one edit {t_edit:.2f} s ({summary})")
    import torch  # loaded by the embedder already; its threads decide the query-embedding time
    print(f"query embedding on {torch.get_num_threads()} torch thread(s) (STYLUS_TORCH_THREADS / OMP_NUM_THREADS)")
    print(f"latency top-150 at {len(retriever.ids):,} cards: ranking {latency(retriever, prompts)}; "
          f"with cards + evidence {latency(retriever, prompts, full=True)}")
    if args.scale:
        t0 = time.perf_counter()
        big = scale_up(retriever, settings.replace(catalog_dir=work / "scaled"), args.scale)
        built = time.perf_counter() - t0
        print(f"latency top-150 at {len(big.ids):,} cards: ranking {latency(big, prompts)} "
              f"(scaled index built in {built:.0f} s)")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
