"""Generation benchmark: base model vs the whole Stylus request for the same N images and steps.

    python bench/generation.py                 # tiny preview model on CPU (64x64)
    python bench/generation.py --full          # full-size random SD-1.5, fp16, 512x512, 25 steps (GPU)

Prints one table: retrieve / compose / masks / adapter load (cold, warm) / switch / denoise, the
base time and the ratio (goal <= 1.10). Retrieval and composition use the real engine when the
catalog and retriever can be imported; otherwise a fixed synthetic composition of 3 topics x 2
adapters is used and the table says so. With --full, the adapters are random-weight LoRA files of
real SD-1.5 shapes (rank 32, kohya format) written into the adapter cache.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "a girl in a school uniform, watercolor style, cherry blossoms"


def _synthetic(n_topics: int = 3, per_topic: int = 2):
    from catalog.card import AdapterCard, AdapterFile
    from components.types import Composition, Topic, TopicAdapter
    cards, topics = {}, []
    for t in range(n_topics):
        adapters = []
        for a in range(per_topic):
            cid = f"bench-{t}-{a}"
            cards[cid] = AdapterCard(id=cid, source="manual", name=cid,
                                     files=[AdapterFile(name=f"{cid}.safetensors", primary=True)])
            adapters.append(TopicAdapter(card_id=cid, name=cid, weight=0.8, lora_name=cid))
        topics.append(Topic(keywords=[f"keyword {t}"], adapters=adapters))
    return Composition(prompt=PROMPT, topics=topics), cards


def _select(settings, use_engine: bool):
    """(composition, cards, retrieve_s, compose_s, note)."""
    if use_engine:
        try:
            from components.engine import StylusEngine
            engine = StylusEngine(settings)
            engine.select(PROMPT)  # builds/loads the index once; timed below when warm
            t_ret, t_comp = [], []
            for _ in range(5):  # median of warm runs: one call is at the mercy of the scheduler
                t0 = time.perf_counter()
                retrieval = engine.retrieve(PROMPT)
                t1 = time.perf_counter()
                comp = engine.compose(PROMPT, retrieval)
                t_ret.append(t1 - t0)
                t_comp.append(time.perf_counter() - t1)
            cards = engine.store.get_many(comp.adapter_ids())
            return (comp, cards, statistics.median(t_ret), statistics.median(t_comp),
                    "retriever + offline composer (warm index, median of 5)")
        except ImportError as exc:  # on a machine without chromadb & co. (the GPU image)
            note = f"retriever/composer not importable ({exc.name}): synthetic composition"
    else:
        note = "synthetic composition (--synthetic)"
    comp, cards = _synthetic()
    return comp, cards, 0.0, 0.0, note


def _write_full_size_loras(gen, cards, rank: int) -> None:
    from safetensors.torch import save_file
    from components.generator.adapters import cache_path
    from components.generator.standin import standin_state_dict
    pipe = gen.pipelines().txt2img
    for card in cards.values():
        path = cache_path(gen.settings, card)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            sd = {k: v.half() for k, v in standin_state_dict(pipe, card.id, rank=rank).items()}
            save_file(sd, str(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full-size random SD-1.5 (fp16, GPU)")
    ap.add_argument("--n", type=int, default=4, help="images per request")
    ap.add_argument("--steps", type=int, default=None, help="default 20 (tiny) / 25 (full)")
    ap.add_argument("--size", type=int, default=None, help="default 64 (tiny) / 512 (full)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rank", type=int, default=32, help="LoRA rank of the --full adapter files")
    ap.add_argument("--synthetic", action="store_true", help="skip retrieval/composition")
    ap.add_argument("--home", default=None, help="Stylus home (default: a temporary folder)")
    args = ap.parse_args()

    import torch
    from catalog.settings import Settings
    from components.generator import Generator
    from components.types import GenerationRequest

    home = args.home or os.environ.get("STYLUS_HOME") or tempfile.mkdtemp(prefix="stylus-bench-")
    overrides = dict(model="random:sd15-full", device="cuda", dtype="float16") if args.full \
        else dict(model="", device="cpu")
    settings = Settings.from_env(home=home, **overrides)
    steps, size = args.steps or (25 if args.full else 20), args.size or (512 if args.full else 64)
    if not args.full and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)

    gen = Generator(settings)
    t0 = time.perf_counter()
    pipes = gen.pipelines()
    load_cold = time.perf_counter() - t0
    comp, cards, t_retrieve, t_compose, note = _select(settings, not args.synthetic)
    if args.full:
        _write_full_size_loras(gen, cards, args.rank)

    def request(**kw):
        return GenerationRequest(prompt=PROMPT, steps=steps, width=size, height=size, seed=1,
                                 num_images=args.n, include_baseline=False, **kw)

    sync = torch.cuda.synchronize if pipes.device.startswith("cuda") else (lambda: None)
    gen.generate(request())  # warm-up: first-call kernels and allocations
    from components.masks import sample_variants
    base_times, runs = [], []
    for r in range(args.repeats + 1):  # run 0: adapters load cold
        sync(); t0 = time.perf_counter()
        gen.generate(request()); sync()
        base_times.append(time.perf_counter() - t0)
        sync(); t0 = time.perf_counter()
        variants = sample_variants(comp, n=args.n, strategy="one_hot_loras", seed=r,
                                   base_weight=settings.base_weight)
        t_masks = time.perf_counter() - t0
        result = gen.generate(request(), variants, cards); sync()
        runs.append(dict(result.timings, masks=t_masks, wall=time.perf_counter() - t0))
    _report(args, pipes, note, load_cold, t_retrieve, t_compose, base_times[1:], runs, steps, size)
    return 0


def _report(args, pipes, note, load_cold, t_retrieve, t_compose, base_times, runs, steps, size) -> None:
    warm = runs[1:]
    med = lambda key: statistics.median(r.get(key, 0.0) for r in warm)  # noqa: E731
    base = statistics.median(base_times)
    gen_warm = statistics.median(r["wall"] for r in warm)
    stylus = t_retrieve + t_compose + gen_warm
    cold = t_retrieve + t_compose + runs[0]["wall"]
    rows = [("model load (cold, once per process)", load_cold),
            ("retrieve", t_retrieve), ("compose", t_compose), ("masks", med("masks")),
            ("adapter load, cold (first request)", runs[0]["adapter_load_cold"]),
            ("adapter load, warm (LRU hit)", med("adapter_load_warm")),
            ("adapter switch (set_adapters/disable)", med("switch")),
            ("denoise + decode", med("denoise")),
            ("Stylus request, warm adapters", stylus), ("Stylus request, cold adapters", cold),
            ("base model, same N and steps", base)]
    print(f"\nStylus generation benchmark: {pipes.label} on {pipes.device} ({str(pipes.dtype)[6:]}), "
          f"{args.n} images, {steps} steps, {size}x{size}, median of {len(warm)}")
    print(f"selection: {note}")
    print(f"{'part':42} {'seconds':>9}")
    print("-" * 52)
    for name, value in rows:
        print(f"{name:42} {value:9.3f}")
    print("-" * 52)
    print(f"{'ratio Stylus/base, warm (goal <= 1.10)':42} {stylus / base:9.3f}")
    print(f"{'ratio Stylus/base, cold adapters':42} {cold / base:9.3f}")


if __name__ == "__main__":
    sys.exit(main())
