"""The front's side of the worker pool: :class:`WorkerPool` has the Generator's ``generate()``.

``STYLUS_WORKERS=auto`` starts a local Ray cluster (loopback, no dashboard, no HTTP proxy) and
deploys ``worker_replicas`` replicas; an address (``ray://host:port`` or ``host:port``) connects
to a running cluster and uses the application deployed there (``deploy/serve.yaml``), deploying it
when it is not. Selection, masks and the catalog stay in the front: a request travels with its
variants and the cards it uses.

- Affinity: each request carries its adapter set as Serve's multiplexed model id.
- Faults: a replica that dies mid-request (node lost, process killed) costs the request a retry
  on another replica, at most :data:`MAX_ATTEMPTS` tries in all; ``result.worker["retries"]`` says
  how many it took. A pool that cannot start (a replica failing in its constructor) raises a
  :class:`StylusError` naming the cause.
- Progress crosses Ray as a stream of events; ``cancel`` and the time budget cancel the Serve
  request, and the replica stops denoising at the next step. Not supported across Ray: progress
  while a request waits in Serve's router queue (there is no event until a replica takes it).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray's telemetry off (a cluster this process starts)
import ray  # noqa: E402
from ray import serve  # noqa: E402
from ray.exceptions import ActorUnavailableError, RayActorError  # noqa: E402
from ray.serve.exceptions import RequestCancelledError  # noqa: E402

from catalog.card import AdapterCard  # noqa: E402
from catalog.settings import Settings  # noqa: E402
from components.generator.budget import Budget, GenerationStopped  # noqa: E402
from components.types import GenerationRequest, GenerationResult, StylusError, Variant  # noqa: E402

from .deployment import APP_NAME, MAX_ONGOING_REQUESTS, adapter_set_id, build_app, deployer_settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # tries of one request when replicas die under it
_WATCH_S = 0.1  # how often a running request looks at its cancel flag and time budget
_CONNECT_S = 5.0  # a TCP connection to the cluster address, before Ray's own (long) retries
_DEPLOY_WAIT_S = 600.0  # how long a front waits for an application another deployer is deploying
# a replica went away under the request: another replica can serve it
_LOST = (RayActorError, ActorUnavailableError)
_EXCEPTION_LINE = re.compile(r"(?:\w+\.)*(?P<name>\w*(?:Error|Exception)): (?P<message>.*)")

Progress = Callable[[int, int], None]


class WorkerPool:
    """``generate(request, variants=, cards=, progress=, cancel=)`` on a Ray Serve deployment.

    ``affinity=False`` routes without the adapter set (Serve's default choice of replica): the
    benchmark's baseline for the adapter-cache hit rate."""

    def __init__(self, settings: Settings, *, affinity: bool = True):
        if not settings.workers:
            raise StylusError("WorkerPool needs the setting workers (STYLUS_WORKERS): 'auto' or a Ray address")
        self.settings = settings
        self.affinity = affinity
        self._handle = connect(settings)

    def generate(self, request: GenerationRequest, variants: list[Variant] | None = None,
                 cards: dict[str, AdapterCard] | None = None, progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """As :meth:`components.generator.Generator.generate`; the result's ``worker`` says which
        replica served it, its queue position there and the retries it took. Blocking, like the
        Generator's, also when called from a thread that runs an event loop (Serve's blocking
        handle calls refuse such a thread, so the request then waits in a thread of its own)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._generate(request, variants, cards, progress, cancel)
        with ThreadPoolExecutor(1, thread_name_prefix="stylus-pool") as pool:
            return pool.submit(self._generate, request, variants, cards, progress, cancel).result()

    def _generate(self, request: GenerationRequest, variants: list[Variant] | None,
                  cards: dict[str, AdapterCard] | None, progress: Progress | None,
                  cancel: threading.Event | None) -> GenerationResult:
        budget = Budget(self.settings.generation_timeout_s, cancel or threading.Event())
        set_id = adapter_set_id(request, variants)
        handle = self._handle.options(stream=True, multiplexed_model_id=set_id if self.affinity else "")
        lost: list[str] = []
        while True:
            try:
                result = self._attempt(handle, request, variants, dict(cards or {}), progress, budget)
            except _LOST as exc:
                lost.append(f"{type(exc).__name__}: {_first_line(exc)}")
                log.warning("worker pool: a replica was lost under a request (%s); %s",
                            lost[-1], "retrying" if len(lost) < MAX_ATTEMPTS else "giving up")
                if len(lost) >= MAX_ATTEMPTS:
                    raise StylusError(f"the worker pool lost this request {len(lost)} times (replicas died: "
                                      f"{lost[-1]}); try again when the cluster has recovered") from None
                continue
            result.worker = {**(result.worker or {}), "retries": len(lost),
                             "routing": "affinity" if self.affinity else "any"}
            return result

    def _attempt(self, handle, request: GenerationRequest, variants: list[Variant] | None,
                 cards: dict[str, AdapterCard], progress: Progress | None, budget: Budget) -> GenerationResult:
        stream = handle.generate.remote(request, variants, cards)
        stopped: list[GenerationStopped] = []
        done = threading.Event()

        def watch() -> None:  # cancel flag and time budget, also while the request is queued
            while not done.wait(_WATCH_S):
                try:
                    budget.check()
                except GenerationStopped as exc:
                    stopped.append(exc)
                    stream.cancel()  # the replica stops denoising at its next step
                    return

        watcher = threading.Thread(target=watch, name="stylus-pool-watch", daemon=True)
        watcher.start()
        try:
            for event in stream:
                kind = event[0]
                if kind == "progress" and progress is not None:
                    progress(event[1], event[2])
                elif kind == "error":
                    raise event[1]
                elif kind == "result":
                    return event[1]
        except RequestCancelledError:
            if stopped:
                raise stopped[0] from None
            raise
        finally:
            done.set()
            watcher.join()
        if stopped:
            raise stopped[0]
        raise StylusError("the worker pool ended a request without a result; try again")


def connect(settings: Settings):
    """A handle to the running generator application, connecting to (``auto``: starting) the Ray
    cluster; the application is deployed when the cluster has none, waited for while it deploys
    (e.g. from deploy/serve.yaml) and reported with its cause when its deployment failed."""
    local = settings.workers == "auto"
    if not ray.is_initialized():
        try:
            if local:  # a new cluster (never another one running here); no dashboard
                ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
            else:
                _check_reachable(settings.workers)  # Ray itself retries a wrong address for minutes
                ray.init(address=settings.workers, log_to_driver=False)
        except (ConnectionError, RuntimeError) as exc:
            raise StylusError(f"the worker pool could not connect to the Ray cluster at {settings.workers!r} "
                              f"({_first_line(exc)}); check the address (`ray start --head` prints it) and, "
                              f"with Ray's token authentication, RAY_AUTH_MODE=token here") from None
    status = _wait_while_deploying(APP_NAME)
    if status == "DEPLOY_FAILED":
        raise StylusError(f"the worker pool could not start: the application {APP_NAME!r} on the cluster "
                          f"failed to deploy ({_cause(_status_text(APP_NAME))})")
    if status != "RUNNING":
        deploy(deployer_settings(settings, paths=local), replicas=settings.worker_replicas,
               num_cpus=_share("CPU", settings.worker_replicas), num_gpus=_share("GPU", settings.worker_replicas),
               local_code=local)
    return serve.get_app_handle(APP_NAME)


def _check_reachable(address: str) -> None:
    """Raise ConnectionError when nothing listens at ``[ray://]host:port`` (a few seconds at most)."""
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_S).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port}: {exc}") from None


def _wait_while_deploying(name: str) -> str:
    """The application's status once it is not deploying (bounded wait); "" when there is none."""
    deadline = time.monotonic() + _DEPLOY_WAIT_S
    while True:
        app = serve.status().applications.get(name)
        status = app.status.value if app is not None else ""
        if status not in ("NOT_STARTED", "DEPLOYING", "UNHEALTHY") or time.monotonic() > deadline:
            return status
        time.sleep(1.0)


def _status_text(name: str) -> str:
    """Serve's messages about the application's deployments (a failed replica's traceback)."""
    app = serve.status().applications.get(name)
    return "\n".join(d.message for d in app.deployments.values()) if app is not None else ""


def deploy(settings: dict[str, Any], replicas: int, num_cpus: float = 1.0, num_gpus: float = 0.0,
           local_code: bool = True, name: str = APP_NAME, max_ongoing: int = MAX_ONGOING_REQUESTS):
    """Deploy the generator application (Serve without an HTTP proxy) and wait until its replicas
    are up; a replica that cannot start raises a :class:`StylusError` with the cause."""
    serve.start(proxy_location="Disabled")
    app = build_app(settings, replicas=replicas, num_cpus=num_cpus, num_gpus=num_gpus, local_code=local_code,
                    max_ongoing=max_ongoing)
    try:
        return serve.run(app, name=name, route_prefix=None)
    except Exception as exc:  # Serve's deployment status carries the replica's traceback as text
        raise StylusError(f"the worker pool could not start: a generator replica failed to start "
                          f"({_cause(_status_text(name) or str(exc))}); check the settings (model, device) "
                          f"and the model cache on the worker nodes") from None


def _share(resource: str, replicas: int) -> float:
    """One CPU (GPU) per replica when the cluster has enough; an equal share otherwise; 0 without."""
    total = float(ray.cluster_resources().get(resource, 0))
    return 0.0 if total <= 0 else min(1.0, total / replicas)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _cause(text: str) -> str:
    """The replica's own exception (``SomeError: message``, without its module) out of a traceback."""
    found = [m for m in map(_EXCEPTION_LINE.fullmatch, (line.strip() for line in text.splitlines())) if m]
    if found:
        return f"{found[-1]['name']}: {found[-1]['message']}"[:300]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no cause given"
