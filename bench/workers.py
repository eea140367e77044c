"""Worker pool benchmark (issue 17): a local Ray cluster, 1 then 2 CPU replicas of the preview model.

    python bench/workers.py                       # defaults: 4 users, 24 requests a phase, 2 CPUs
    python bench/workers.py --users 8 --requests 48 --cpus 4

Phases, each on fresh replicas (each adapter set sent once first, not measured) and bounded by
--requests and --phase-seconds, loopback only (no dashboard, no HTTP proxy):
1. throughput and p50/p95 latency of --users concurrent users with 1 and then 2 replicas;
2. adapter-cache hit rate on a workload that repeats adapter sets (--sets sets of 2 stand-in adapters,
   lora_cache_size 4 per replica) with affinity (Serve's model multiplexing) against routing without
   it, --cache-users users;
3. one replica killed (ray.kill) a third of the way through: errors seen by users, requests retried
   on another replica, images lost (goal 0).
Prints one table. The preview model draws 64x64 in --steps steps; adapters are its stand-ins.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # telemetry off
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Phase:
    label: str
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0  # requests sent
    images: int = 0  # requests that returned their images
    errors: list[str] = field(default_factory=list)
    retried: int = 0  # requests that needed another replica
    hits: int = 0
    misses: int = 0
    replicas: set[str] = field(default_factory=set)

    def row(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")
        rate = self.hits / (self.hits + self.misses) if self.hits + self.misses else float("nan")
        return (f"| {self.label:<41} | {self.requests:>4} | {self.images / self.seconds:>6.2f} | {p50:>6.2f} | "
                f"{p95:>6.2f} | {rate:>6.0%} | {len(self.errors):>3} | {self.retried:>3} | "
                f"{self.requests - self.images:>4} | {len(self.replicas):>2} |")


HEADER = ("| phase                                     | reqs | img/s  | p50 s  | p95 s  | hits   | err | rtr | lost | rp |\n"
          "|-------------------------------------------|------|--------|--------|--------|--------|-----|-----|------|----|")


def _cards(n_sets: int):
    """``n_sets`` adapter sets of two stand-in adapters each (cards without files: the preview
    model makes a deterministic stand-in per card)."""
    from catalog.card import AdapterCard
    from components.types import Variant
    cards, sets = {}, []
    for s in range(n_sets):
        ids = [f"bench-set{s}-{a}" for a in range(2)]
        for cid in ids:
            cards[cid] = AdapterCard(id=cid, source="manual", name=cid)
        sets.append([Variant(0, {cid: 0.7 for cid in ids}, "a lighthouse, ink style")])
    return cards, sets


def drive(pool, label: str, workload: list, cards: dict, users: int, steps: int, limit_s: float,
          on_progress=None) -> Phase:
    """``users`` threads send the ``workload`` (a list of variant lists) in order until it is done
    or ``limit_s`` has passed; every request is one 64x64 image without a baseline."""
    from components.types import GenerationRequest
    phase, lock, queue = Phase(label), threading.Lock(), list(enumerate(workload))
    deadline = time.monotonic() + limit_s

    def user() -> None:
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    return
                i, variants = queue.pop(0)
                phase.requests += 1
            request = GenerationRequest(prompt="a lighthouse", steps=steps, width=64, height=64, seed=i,
                                        num_images=1, include_baseline=False)
            t0 = time.perf_counter()
            try:
                result = pool.generate(request, variants, cards)
            except Exception as exc:  # counted: what a user would have seen
                with lock:
                    phase.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                phase.latencies.append(time.perf_counter() - t0)
                phase.images += bool(result.images)
                phase.retried += result.worker["retries"] > 0
                phase.hits += result.worker["adapter_hits"]
                phase.misses += result.worker["adapter_misses"]
                phase.replicas.add(result.worker["replica"])
                if on_progress is not None:
                    on_progress(phase, result)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, name=f"bench-user-{u}") for u in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds = time.perf_counter() - t0
    return phase


def main() -> None:
    from components.workers.deployment import APP_NAME, MAX_ONGOING_REQUESTS, deployer_settings
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=4, help="concurrent users (default 4)")
    ap.add_argument("--requests", type=int, default=24, help="requests per phase (default 24)")
    ap.add_argument("--phase-seconds", type=float, default=45.0, help="time limit of a phase (default 45)")
    ap.add_argument("--steps", type=int, default=8, help="denoising steps per image (default 8)")
    ap.add_argument("--sets", type=int, default=4, help="adapter sets in the workload (default 4)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (default 2)")
    ap.add_argument("--cache-users", type=int, default=2,
                    help="concurrent users of the hit-rate phases (default 2: one per replica)")
    ap.add_argument("--max-ongoing", type=int, default=MAX_ONGOING_REQUESTS,
                    help=f"max_ongoing_requests per replica (default {MAX_ONGOING_REQUESTS})")
    args = ap.parse_args()

    import ray
    from ray import serve

    from catalog.settings import Settings
    from components.workers.pool import WorkerPool, deploy

    home = Path(tempfile.mkdtemp(prefix="stylus-bench-workers-"))
    settings = Settings(home=home, device="cpu", torch_threads=1, lora_cache_size=4, workers="auto")
    cards, sets = _cards(args.sets)
    rng = random.Random(0)
    workload = [sets[rng.randrange(len(sets))] for _ in range(args.requests)]  # sets repeat
    per_replica_cpus = min(1.0, args.cpus / 2)

    def fresh(replicas: int, affinity: bool = True) -> WorkerPool:
        """New replicas (empty adapter caches), each adapter set sent once (not measured)."""
        if APP_NAME in serve.status().applications:
            serve.delete(APP_NAME)
        t0 = time.perf_counter()
        deploy(deployer_settings(settings), replicas=replicas, num_cpus=per_replica_cpus,
               max_ongoing=args.max_ongoing)
        print(f"  {replicas} replica(s) up in {time.perf_counter() - t0:.1f} s", flush=True)
        pool = WorkerPool(settings, affinity=affinity)
        drive(pool, "warm-up", sets, cards, 1, args.steps, args.phase_seconds)
        return pool

    t_all = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, configure_logging=False,
             log_to_driver=False)  # a new cluster, even when another one runs on this machine
    phases: list[Phase] = []
    try:
        print(f"Ray {ray.__version__}: {args.cpus} CPUs, {args.requests} requests a phase, {args.steps} steps, "
              f"64x64, {args.sets} adapter sets of 2, lora_cache_size 4, max_ongoing_requests "
              f"{args.max_ongoing}", flush=True)
        for replicas in (1, 2):  # throughput and latency
            phases.append(drive(fresh(replicas), f"{replicas} replica(s), {args.users} users", workload, cards,
                                args.users, args.steps, args.phase_seconds))
        for affinity in (True, False):  # adapter-cache hit rate
            phases.append(drive(fresh(2, affinity), f"2 replicas, {args.cache_users} users, "
                                f"{'affinity' if affinity else 'no affinity'}", workload, cards,
                                args.cache_users, args.steps, args.phase_seconds))
        pool = fresh(2)
        killed: list[str] = []

        def kill_one(phase: Phase, result) -> None:  # a third of the way: kill the replica that just served
            if not killed and phase.images >= max(1, args.requests // 3):
                name = next(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                            if a["name"].endswith("#" + result.worker["replica"]))
                ray.kill(ray.get_actor(name, namespace="serve"))
                killed.append(name)

        phases.append(drive(pool, f"2 replicas, {args.users} users, 1 killed", workload, cards, args.users,
                            args.steps, args.phase_seconds, on_progress=kill_one))
    finally:
        serve.shutdown()
        ray.shutdown()
    print()
    print(HEADER)
    for phase in phases:
        print(phase.row())
    print(f"\nimg/s: images per second of the phase; p50/p95: request latency; hits: adapters already "
          f"loaded on the replica that served the request; err: errors users saw; rtr: requests retried "
          f"on another replica; lost: requests without their image; rp: replicas that served. "
          f"Total {time.perf_counter() - t_all:.0f} s.")
    for phase in phases:
        for error in phase.errors[:3]:
            print(f"  {phase.label}: {error}")


if __name__ == "__main__":
    main()
