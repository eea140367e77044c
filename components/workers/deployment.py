"""The generator as a Ray Serve deployment: one replica = one :class:`Generator`.

A replica builds its Generator from its node's settings (``STYLUS_*`` environment, secrets
included: tokens never travel with a request) overridden by the non-secret settings the deployer
passes, and loads the pipelines in its constructor, so a replica that cannot load its model fails
to start and Serve reports the cause. ``generate`` is a streaming method: it yields
``("progress", done, total)`` events while denoising and ends with ``("result", GenerationResult)``
or ``("error", StylusError)`` (a refusal travels as itself, not as a Ray traceback).

Adapter affinity: the caller sets a multiplexed model id per request (:func:`adapter_set_id`, the
request's adapter set) and Serve's model multiplexing routes repeated ids to the replica that
already served them. The adapters themselves live in the Generator's LRU (``lora_cache_size``);
each result says how many of its adapters were already loaded (``adapter_hits``).

This module imports Ray: only :mod:`components.workers.pool` and Serve configs import it.
"""
from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any, AsyncIterator

import ray
from ray import serve

from catalog.card import AdapterCard
from catalog.settings import SECRET_FIELDS, Settings
from components.generator import Generator
from components.generator.adapters import adapter_name
from components.generator.budget import Budget
from components.types import GenerationRequest, GenerationResult, StylusError, Variant

APP_NAME = "stylus-generator"  # the Serve application the pool deploys and looks up
DEPLOYMENT_NAME = "StylusGenerator"
BASE_SET_ID = "base"  # the multiplexed model id of requests without adapters
# adapter sets Serve remembers per replica for routing (the adapters themselves are bounded by
# the replica's lora_cache_size; a set has one or more adapters, so this is half the default 16)
MAX_ADAPTER_SETS_PER_REPLICA = 8
MAX_ONGOING_REQUESTS = 2  # one denoising, one waiting on the replica (its queue_position is 1)
# settings a replica takes from its own node, never from the deployer
_NODE_ONLY = (*SECRET_FIELDS, "workers", "worker_replicas")
_PATHS = ("home", "catalog_dir", "cache_dir", "output_dir")
REPO = Path(__file__).resolve().parents[2]


def adapter_set_id(request: GenerationRequest, variants: list[Variant] | None) -> str:
    """The multiplexed model id of a request: its adapter set (sorted card ids with a non-zero
    weight in any variant; the engine draws the variants), hashed to a short id;
    :data:`BASE_SET_ID` when it uses no adapter."""
    ids = {c for v in variants or () for c, w in v.weights.items() if w}
    if not ids:
        return BASE_SET_ID
    return "adapters-" + hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def deployer_settings(settings: Settings, paths: bool = True) -> dict[str, Any]:
    """The settings a deployer passes to its replicas: every field but secrets and the pool's own;
    ``paths=False`` also leaves the folders to each node (a cluster on other machines)."""
    skip = _NODE_ONLY if paths else (*_NODE_ONLY, *_PATHS)
    return {f.name: getattr(settings, f.name) for f in fields(settings) if f.name not in skip}


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=MAX_ONGOING_REQUESTS)
class GeneratorReplica:
    def __init__(self, settings: dict[str, Any] | None = None):
        # the node's STYLUS_* environment, then the deployer's (non-secret) values; never a pool
        overrides = {k: v for k, v in (settings or {}).items() if k not in _NODE_ONLY}
        self.settings = Settings.from_env(**overrides).replace(workers="")
        self.generator = Generator(self.settings)
        self.generator.pipelines()  # now: a replica that cannot load its model fails to start
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()
        # one request at a time (the Generator serialises its denoising anyway); held from before
        # the adapter cache is looked at until the result, so adapter_hits is exact. It also covers
        # the Generator's adapter-file fetch: on a real model, a download holds this replica's queue.
        self._lock = threading.Lock()
        self._ongoing = 0  # requests on this replica: denoising or waiting for the lock

    @serve.multiplexed(max_num_models_per_replica=MAX_ADAPTER_SETS_PER_REPLICA)
    async def adapter_set(self, set_id: str) -> str:
        """Registers the request's adapter set with Serve's router (affinity); nothing to load
        here: the Generator loads the adapters on first use into its bounded LRU."""
        return set_id

    async def generate(self, request: GenerationRequest, variants: list[Variant] | None,
                       cards: dict[str, AdapterCard]) -> AsyncIterator[tuple]:
        """Stream ``("progress", done, total)`` events, then ``("result", result)`` or
        ``("error", StylusError)``. A caller that cancels the stream stops the denoising at the
        next step (the cancel flag of :meth:`Generator.generate`)."""
        set_id = await self.adapter_set(serve.get_multiplexed_model_id() or BASE_SET_ID)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        position, self._ongoing = self._ongoing, self._ongoing + 1

        def progress(done: int, total: int) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("progress", done, total))

        def run() -> tuple:
            try:
                return "result", self._run(request, variants, cards, progress, cancel,
                                           {"queue_position": position, "adapter_set": set_id})
            except StylusError as exc:  # a refusal or a stop: the caller re-raises it as it is
                return "error", exc

        work = asyncio.ensure_future(asyncio.to_thread(run))
        work.add_done_callback(self._finished)
        try:
            while not work.done():
                event = asyncio.ensure_future(events.get())
                await asyncio.wait({event, work}, return_when=asyncio.FIRST_COMPLETED)
                if event.done():
                    yield event.result()
                else:
                    event.cancel()
            yield work.result()
        except asyncio.CancelledError:  # the caller cancelled (or went away): stop at the next step
            cancel.set()
            raise

    def _finished(self, work: asyncio.Future) -> None:
        self._ongoing -= 1  # when the thread is done (a cancelled request holds the lock until then)
        if not work.cancelled():
            work.exception()  # retrieved: a stop after cancellation is expected, not an error

    def _run(self, request: GenerationRequest, variants: list[Variant] | None,
             cards: dict[str, AdapterCard], progress, cancel: threading.Event,
             worker: dict[str, Any]) -> GenerationResult:
        Budget(self.settings.generation_timeout_s, cancel).acquire(self._lock)
        try:
            used = {c for v in variants or () for c, w in v.weights.items() if w} & set(cards)
            loaded = self.generator.loaded_adapters()
            hits = sum(adapter_name(c) in loaded for c in used)
            result = self.generator.generate(request, variants=variants, cards=cards,
                                             progress=progress, cancel=cancel)
        finally:
            self._lock.release()
        result.worker = {"replica": self.replica, "node": self.node, **worker,
                         "adapter_hits": hits, "adapter_misses": len(used) - hits}
        return result



def build_app(settings: dict[str, Any] | None = None, replicas: int | None = None,
              autoscaling: dict[str, Any] | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
              local_code: bool = True, max_ongoing: int = MAX_ONGOING_REQUESTS):
    """The Serve application for ``settings`` (:func:`deployer_settings`): ``replicas`` fixed replicas, or ``autoscaling`` bounds
    (``{"min_replicas", "max_replicas", "target_ongoing_requests"}``). ``local_code``: replicas
    import Stylus from this checkout (a local cluster); a multi-node cluster installs it on every node.
    ``max_ongoing``: requests a replica takes at once; Serve's router sends a request elsewhere when
    the replica holding its adapter set is full, so more queues longer on the affine replica."""
    actor: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    if local_code:
        actor["runtime_env"] = {"env_vars": {"PYTHONPATH": str(REPO)}}
    options: dict[str, Any] = {"ray_actor_options": actor, "max_ongoing_requests": max_ongoing}
    if autoscaling:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas or 1
    return GeneratorReplica.options(**options).bind(dict(settings or {}))


def app_builder(args: dict[str, Any]):
    """For a Serve config (deploy/serve.yaml): ``args.settings`` are Stylus settings for every
    replica; replicas, resources and autoscaling come from the config's ``deployments`` entry."""
    settings = dict(args.get("settings") or {})
    unknown = sorted(set(settings) - {f.name for f in fields(Settings)})
    if unknown:
        raise StylusError(f"serve config: unknown Stylus settings {', '.join(unknown)}; "
                          f"use fields of catalog/settings.py")
    return GeneratorReplica.bind(settings)
