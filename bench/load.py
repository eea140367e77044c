"""Load benchmark (issue 7): K concurrent API users against the real app on loopback.

    python bench/load.py                        # 8 users for 300 s, starter catalog, preview model
    python bench/load.py --users 2 --duration 30
    python bench/load.py --catalog DIR          # an existing catalog directory (its index is updated)

Starts ``app.py`` in a subprocess (temporary STYLUS_HOME, preview model, one torch thread) and
runs K threads, each with its own ``gradio_client.Client``, doing select -> compose -> generate
(small images, few steps: it measures the server, not only denoising) until the duration is up.
A warm-up round (each user once through the whole prompt pool's first prompts) comes first and
is not timed. Every returned image is checked against its own request: the PNG ``parameters``
chunk and the returned JSON must carry that request's prompt, unique negative-prompt token,
seed and adapters (those of its own /compose call); a mismatch counts as an error (cross-talk).
Prints throughput, p50/p95 latency per stage, errors and the app's RSS (psutil) at start,
after warm-up and at the end, with the growth after warm-up (goal < 10%).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from PIL import Image  # noqa: E402

from components.generator.metadata import parse_parameters  # noqa: E402

# written for this benchmark: varied subjects and styles, so users pick different adapters
PROMPTS = [
    "a corgi astronaut on the moon, watercolor",
    "a knight in silver armor in a neon city at night",
    "portrait of a girl with red hair, anime style, cherry blossoms",
    "a cozy cabin in a snowy forest, oil painting",
    "a cyberpunk samurai with a glowing sword, rain",
    "a cat wearing a wizard hat, pixel art",
    "a steampunk airship above the clouds, detailed illustration",
    "a medieval castle on a cliff at sunset, fantasy landscape",
    "a robot gardener among sunflowers, studio ghibli style",
    "a girl in a school uniform at the beach, summer",
    "a dragon made of crystal in a dark cave",
    "a mermaid under the sea with glowing jellyfish",
    "a vintage car on a desert highway, photorealistic",
    "a witch brewing potions in a candle lit room",
    "a futuristic city skyline with flying cars, concept art",
    "a samurai cat drinking tea, ukiyo-e",
]
STAGES = ("select", "compose", "generate")


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    cycles: int = 0
    images: int = 0
    errors: list[str] = field(default_factory=list)
    mismatches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, message: str, mismatch: bool = False) -> None:
        with self.lock:
            self.errors.append(message)
            self.mismatches += mismatch


# ---- the app under test -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """``python app.py`` on 127.0.0.1:<port> with a temporary STYLUS_HOME."""

    def __init__(self, home: Path, catalog: str | None, log: Path):
        self.port = free_port()
        env = dict(os.environ, STYLUS_HOME=str(home), STYLUS_TORCH_THREADS="1", OMP_NUM_THREADS="1",
                   GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(self.port), STYLUS_MODEL="")
        if catalog:
            env["STYLUS_CATALOG_DIR"] = str(Path(catalog).resolve())
        self.log = log
        self.proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                                     stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        self.url = f"http://127.0.0.1:{self.port}/"

    def wait_ready(self, timeout: float = 180) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"the app exited with code {self.proc.returncode}; log: {self.log}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - start
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"the app did not answer on {self.url} within {timeout:.0f} s; log: {self.log}")

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- one user ----------------------------------------------------------------------------
def _ids(composition: dict) -> set[str]:
    return {a["id"] for t in composition["topics"] for a in t["adapters"]}


def check_generate(req: dict, mapping: list[dict], variants: list[dict], gallery: list, info: dict) -> list[str]:
    """Every image must carry its own request's prompt, token, seed and adapters."""
    problems = []
    n = req["n"]
    if len(gallery) != n + 1 or len(info["images"]) != n + 1:
        return [f"{len(gallery)} images / {len(info['images'])} infos for {n} variants + baseline"]
    if _ids(info["composition"]) != {r["id"] for r in mapping}:
        problems.append(f"composition ids {sorted(_ids(info['composition']))} != request {sorted(r['id'] for r in mapping)}")
    for i, (item, meta) in enumerate(zip(gallery, info["images"])):
        with Image.open(item["image"]) as im:
            text = im.info.get("parameters", "")
        if text != meta["parameters"]:
            problems.append(f"image {i}: PNG parameters differ from the returned JSON")
        p = parse_parameters(text)
        baseline = i == n
        want_seed = req["seed"] if baseline else req["seed"] + i
        if str(p.get("Seed")) != str(want_seed):
            problems.append(f"image {i}: seed {p.get('Seed')} != {want_seed}")
        if p["negative_prompt"] != req["negative"]:
            problems.append(f"image {i}: negative prompt {p['negative_prompt']!r} != {req['negative']!r}")
        if not str(p["prompt"]).startswith(req["prompt"]):
            problems.append(f"image {i}: prompt {str(p['prompt'])[:60]!r} is not the request's")
        want = {} if baseline else variants[i]["weights"]
        want_tags = {} if baseline else parse_parameters(variants[i]["export"] + "\nSteps: 1, Seed: 1, Size: 1x1")["loras"]
        got = meta["weights"]
        if set(got) != set(want) or any(abs(got[k] - want[k]) > 1e-6 for k in want):
            problems.append(f"image {i}: adapters {got} != own variant {want}")
        if p["loras"] != want_tags:
            problems.append(f"image {i}: PNG lora tags {p['loras']} != own variant {want_tags}")
    return problems


def user(k: int, url: str, deadline: float, stats: Stats | None, args, files: Path, rounds: int = 0) -> None:
    """Cycles until ``deadline`` (or ``rounds`` cycles when > 0); records into ``stats``."""
    from gradio_client import Client
    client = Client(url, verbose=False, download_files=str(files / f"user{k}"))
    cycle = 0
    while (rounds and cycle < rounds) or (not rounds and time.monotonic() < deadline):
        prompt = PROMPTS[(k * 5 + cycle) % len(PROMPTS)]
        req = {"prompt": prompt, "negative": f"lowres, token-u{k}-c{cycle}", "seed": 1000 * k + cycle,
               "n": args.images}
        cycle += 1
        times: dict[str, float] = {}
        try:
            t0 = time.perf_counter()
            sel = client.predict(prompt, args.top_k, "offline", "", 2, api_name="/select")
            times["select"] = time.perf_counter() - t0
            mapping = [{"keyword": r["keyword"], "id": r["id"], "weight": r["weight"]} for r in sel["mapping"]]
            t0 = time.perf_counter()
            plan = client.predict(prompt, mapping, args.images, "one_hot_loras", req["seed"], "",
                                  api_name="/compose")
            times["compose"] = time.perf_counter() - t0
            if _ids(plan["composition"]) != {r["id"] for r in mapping}:
                raise AssertionError("compose returned another request's adapters")
            t0 = time.perf_counter()
            gallery, info = client.predict(prompt, req["negative"], mapping, args.steps, 7.0, req["seed"],
                                           args.images, "one_hot_loras", "", args.size, args.size,
                                           api_name="/generate")
            times["generate"] = time.perf_counter() - t0
        except Exception as exc:  # any failure of a call is a counted, reported error
            if stats is not None:
                stats.error(f"user {k} cycle {cycle}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        problems = check_generate(req, mapping, plan["variants"], gallery, info)
        for item in gallery:
            Path(item["image"]).unlink(missing_ok=True)
        if stats is None:
            continue
        for p in problems:
            stats.error(f"user {k} cycle {cycle}: mismatch: {p}", mismatch=True)
        with stats.lock:
            for s in STAGES:
                stats.latencies[s].append(times[s])
            stats.cycles += 1
            stats.images += len(gallery)


def run_users(url: str, args, files: Path, duration: float, stats: Stats | None, rounds: int = 0) -> float:
    deadline = time.monotonic() + duration
    threads = [threading.Thread(target=user, args=(k, url, deadline, stats, args, files, rounds), daemon=True)
               for k in range(args.users)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()) + args.grace)
    hung = sum(t.is_alive() for t in threads)
    if hung and stats is not None:
        stats.error(f"{hung} user(s) still waiting {args.grace:.0f} s after the end")
    return time.monotonic() - start


def report(stats: Stats, elapsed: float, rss: dict[str, float], args) -> None:
    print(f"\nload: {args.users} users x {elapsed:.0f} s, select -> compose -> generate "
          f"({args.images} variants + base, {args.size}x{args.size}, {args.steps} steps, top_k {args.top_k})")
    print(f"throughput: {stats.cycles} cycles ({stats.cycles / elapsed * 60:.1f}/min), "
          f"{stats.images} images ({stats.images / elapsed:.2f}/s)")
    print("| stage | n | p50 s | p95 s | max s |\n|---|---|---|---|---|")
    for s in STAGES:
        v = np.asarray(stats.latencies[s])
        if v.size:
            print(f"| {s} | {v.size} | {np.percentile(v, 50):.3f} | {np.percentile(v, 95):.3f} | {v.max():.3f} |")
    print(f"errors: {len(stats.errors)} (cross-talk mismatches: {stats.mismatches})")
    for e in stats.errors[:10]:
        print(f"  - {e}")
    growth = (rss["end"] - rss["warm"]) / rss["warm"] * 100
    print(f"app RSS: start {rss['start']:.0f} MB, after warm-up {rss['warm']:.0f} MB, end {rss['end']:.0f} MB "
          f"(growth after warm-up {growth:+.1f}%, goal < 10%)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=8, help="concurrent users (default: %(default)s)")
    ap.add_argument("--duration", type=float, default=300, help="seconds of measured load (default: %(default)s)")
    ap.add_argument("--catalog", default=None, help="catalog directory (default: the starter catalog)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=2, help="variants per request (plus the base image)")
    ap.add_argument("--top-k", type=int, default=30)
    ap.add_argument("--warmup-rounds", type=int, default=2, help="untimed cycles per user first")
    ap.add_argument("--grace", type=float, default=120, help="seconds in-flight calls may take after the end")
    args = ap.parse_args()
    if not 1 <= args.users <= 64 or not 1 <= args.duration <= 3600:
        sys.exit(f"--users {args.users} must be in 1..64 and --duration {args.duration} in 1..3600")
    work = Path(tempfile.mkdtemp(prefix="stylus-load-"))
    app = AppProcess(work / "home", args.catalog, work / "app.log")
    try:
        print(f"app up in {app.wait_ready():.1f} s at {app.url} (log {app.log})", flush=True)
        rss = {"start": app.rss_mb()}
        warm = Stats()
        t = run_users(app.url, args, work / "files", 3600, warm, rounds=args.warmup_rounds)
        rss["warm"] = app.rss_mb()
        print(f"warm-up: {warm.cycles} cycles in {t:.0f} s, {len(warm.errors)} errors", flush=True)
        stats = Stats()
        stats.errors += [f"warm-up: {e}" for e in warm.errors]
        stats.mismatches += warm.mismatches
        elapsed = run_users(app.url, args, work / "files", args.duration, stats)
        rss["end"] = app.rss_mb()
        report(stats, elapsed, rss, args)
        if stats.errors:  # the work directory is removed below: show the app's side now
            print("app log (last lines):\n" + "\n".join(app.log.read_text(errors="replace").splitlines()[-20:]))
        return 1 if stats.errors else 0
    finally:
        app.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
