"""Generation on a Ray Serve worker pool (issue 17), on a real local Ray cluster.

One cluster per module (2 CPUs, no dashboard, no HTTP proxy, shut down at the end) with two CPU
replicas of the tiny preview model. Covered: a request served by the pool equals the same request
served in this process (same seed, same pixels and parameters); affinity keeps an adapter set on
one replica; cancel crosses Ray; a replica that cannot start is reported with its cause; a replica
killed mid-request costs a retry, not an error; the engine uses the pool when the setting is on; the
app without the setting never imports Ray; bad setting values are refused.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from catalog.settings import Settings, SettingsError
from components.generator import Generator
from components.generator.budget import GenerationStopped
from components.types import StylusError, Variant
from tests.fakes.tiny_loras import write_kohya
from tests.generation_helpers import folder_card, lighthouse_request

REPO = Path(__file__).resolve().parents[1]


def _pixels(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def _same_images(a, b) -> bool:
    pairs = list(zip(a.images, b.images)) + [(a.baseline, b.baseline)]
    return len(a.images) == len(b.images) and all(
        np.array_equal(_pixels(x.image), _pixels(y.image)) and x.parameters == y.parameters
        and x.seed == y.seed for x, y in pairs)


# ---- without a cluster ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["yes", "ray://head", "head:0", "ray://head:70000", "http://head:6379",
                                   "ray://-bad:1"])
def test_bad_workers_values_are_refused_naming_the_value(tmp_path, value):
    with pytest.raises(SettingsError) as err:
        Settings(home=tmp_path, workers=value)
    assert repr(value) in str(err.value) and "'auto'" in str(err.value) and "ray://host:port" in str(err.value)


def test_bad_environment_values_are_refused(tmp_path):
    with pytest.raises(SettingsError, match=r"worker_replicas=0 must be in 1\.\.64"):
        Settings.from_env({"STYLUS_HOME": str(tmp_path), "STYLUS_WORKER_REPLICAS": "0"})
    with pytest.raises(SettingsError, match="STYLUS_WORKER_REPLICAS='two' is not a valid"):
        Settings.from_env({"STYLUS_HOME": str(tmp_path), "STYLUS_WORKER_REPLICAS": "two"})
    ok = Settings.from_env({"STYLUS_HOME": str(tmp_path), "STYLUS_WORKERS": "ray://10.0.0.5:10001"})
    assert ok.workers == "ray://10.0.0.5:10001"


NO_RAY = """
import sys
from catalog.settings import Settings
from components.engine import StylusEngine
from stylus_ui.web import build_app
from tests.generation_helpers import lighthouse_request
settings = Settings(home=sys.argv[1], device="cpu", torch_threads=1)
build_app(settings)
result = StylusEngine(settings).generate(lighthouse_request(include_baseline=False))
assert len(result.images) == 1 and result.worker is None
print("ray imported:", "ray" in sys.modules)
if len(sys.argv) > 2:
    import components.workers.pool
    print("ray imported:", "ray" in sys.modules)
"""


def test_the_app_without_the_setting_never_imports_ray(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "GRADIO_ANALYTICS_ENABLED": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "ANONYMIZED_TELEMETRY": "False", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", NO_RAY, str(tmp_path / "stylus"), "then-the-pool"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # built the app and generated without Ray; the check sees Ray once the pool module is imported
    assert run.stdout.splitlines()[-2:] == ["ray imported: False", "ray imported: True"], run.stdout


def test_serve_config_parses_and_builds_the_application():
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -r requirements-workers.txt)")
    from ray.serve.deployment import Application
    from ray.serve.schema import ServeDeploySchema
    from components.workers.deployment import APP_NAME, DEPLOYMENT_NAME, app_builder
    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "deploy" / "serve.yaml").read_text()))
    [app] = config.applications
    assert app.name == APP_NAME and app.import_path == "components.workers.deployment:app_builder"
    [deployment] = app.deployments
    assert deployment.name == DEPLOYMENT_NAME  # else Serve would not apply these options
    scaling = deployment.autoscaling_config
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    assert isinstance(app_builder(app.args), Application)
    with pytest.raises(StylusError, match="unknown Stylus settings no_such_setting"):
        app_builder({"settings": {"no_such_setting": 1}})


# ---- on a local Ray cluster ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster (2 CPUs, loopback, no dashboard) with the generator deployed on two
    half-CPU replicas; yields the settings of a front that uses it."""
    ray = pytest.importorskip("ray", reason="ray[serve] is not installed (pip install -r requirements-workers.txt)")
    from ray import serve
    from components.workers.deployment import deployer_settings
    from components.workers.pool import deploy
    settings = Settings(home=tmp_path_factory.mktemp("workers") / "stylus", device="cpu", torch_threads=1,
                        scheduler="euler", lora_cache_size=4, workers="auto")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # telemetry off
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False)  # "local": a new cluster, even when another one runs on this machine
    try:
        deploy(deployer_settings(settings), replicas=2, num_cpus=0.5)
        yield settings
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def pool(cluster):
    from components.workers.pool import WorkerPool
    return WorkerPool(cluster)


@pytest.fixture(scope="module")
def local(cluster):
    """The same generator in this process (same settings, same preview model files)."""
    import torch
    torch.set_num_threads(1)
    return Generator(cluster.replace(workers=""))


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    return {cid: folder_card(cid, write_kohya(folder / f"{cid}.safetensors", seed=seed))
            for seed, cid in enumerate(("ink", "neon", "moss"), 1)}


def _variants(*sets: dict[str, float]) -> list[Variant]:
    return [Variant(i, dict(weights), "a lighthouse") for i, weights in enumerate(sets)]


def test_a_request_served_by_the_pool_equals_the_same_request_in_process(pool, local, cards):
    request = lighthouse_request(num_images=2)
    variants = _variants({"ink": 1.0}, {"neon": 0.8, "moss": 0.6})
    served = pool.generate(request, variants, cards)
    here = local.generate(request, variants, cards)
    assert _same_images(served, here)
    assert served.notices == here.notices
    assert served.worker["replica"] and served.worker["retries"] == 0 and served.worker["queue_position"] == 0
    assert here.worker is None
    assert not any("replica" in image.parameters for image in served.images)  # not in the PNG text


def test_the_pool_also_serves_a_caller_inside_an_event_loop(pool, cards):
    import asyncio

    async def caller():  # an async front calling the blocking API, as the in-process Generator allows
        return pool.generate(lighthouse_request(include_baseline=False), _variants({"ink": 1.0}), cards)

    results = []  # a thread of its own: this test's thread may run a loop already (browser tests)
    thread = threading.Thread(target=lambda: results.append(asyncio.run(caller())))
    thread.start()
    thread.join()
    assert len(results) == 1 and len(results[0].images) == 1


def test_affinity_keeps_an_adapter_set_on_the_replica_that_has_it_loaded(pool, cards):
    sets = [{"ink": 1.0}, {"neon": 1.0}, {"ink": 0.5, "moss": 0.5}]
    served: dict[int, list[dict]] = {i: [] for i in range(len(sets))}
    for _ in range(3):
        for i, weights in enumerate(sets):
            result = pool.generate(lighthouse_request(include_baseline=False), _variants(weights), cards)
            served[i].append(result.worker)
    for i, workers in served.items():
        assert len({w["replica"] for w in workers}) == 1, (sets[i], workers)
        assert len({w["adapter_set"] for w in workers}) == 1
        # the repeats found every adapter of the set already loaded on that replica
        assert [w["adapter_misses"] for w in workers[1:]] == [0, 0], workers
        assert [w["adapter_hits"] for w in workers[1:]] == [len(sets[i])] * 2, workers


def test_progress_and_cancel_cross_ray(pool, cards):
    seen: list[tuple[int, int]] = []
    result = pool.generate(lighthouse_request(steps=3), _variants({"ink": 1.0}), cards,
                           progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)] and len(result.images) == 1
    cancel = threading.Event()
    with pytest.raises(GenerationStopped, match="generation cancelled"):
        pool.generate(lighthouse_request(steps=40), _variants({"ink": 1.0}), cards,
                      progress=lambda done, total: cancel.set(), cancel=cancel)
    assert pool.generate(lighthouse_request(), _variants({"ink": 1.0}), cards).images  # still serving


def test_the_engine_generates_on_the_pool_when_the_setting_is_on(cluster, tmp_path):
    from components.engine import StylusEngine
    from components.generator.output import save_result, served_by
    from components.workers.pool import WorkerPool
    engine = StylusEngine(cluster)
    assert isinstance(engine.generator, WorkerPool)
    result = engine.generate(lighthouse_request(include_baseline=False))
    assert len(result.images) == 1 and result.worker["adapter_set"] == "base"
    # the front says which replica served it (summary and UI line), never the PNG
    summary = save_result(result, tmp_path)
    assert summary["worker"]["replica"] == result.worker["replica"]
    assert served_by(result.worker).startswith(f"served by worker replica {result.worker['replica']}")
    assert "replica" not in result.images[0].parameters.lower()


def test_a_replica_that_cannot_start_is_reported_with_its_cause(cluster):
    from ray import serve
    from components.workers.deployment import deployer_settings
    from components.workers.pool import deploy
    broken = deployer_settings(cluster.replace(device="cuda"))  # this machine has no CUDA
    try:
        with pytest.raises(StylusError, match=r"could not start.*StylusError: device='cuda' but CUDA is "
                                              r"not available"):
            deploy(broken, replicas=1, num_cpus=0.5, name="stylus-broken")
    finally:
        serve.delete("stylus-broken")


def test_a_replica_killed_mid_request_costs_a_retry_not_an_error(pool, local, cards):
    """Last in the module: Serve replaces the killed replica in the background."""
    import ray
    variants = _variants({"moss": 1.0})
    first = pool.generate(lighthouse_request(include_baseline=False), variants, cards)
    victim = first.worker["replica"]  # affinity sends the same set there again
    killed: list[str] = []

    def kill_on_first_step(done: int, total: int) -> None:
        if not killed:
            [name] = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].endswith("#" + victim)]
            ray.kill(ray.get_actor(name, namespace="serve"))
            killed.append(name)

    request = lighthouse_request(steps=12)
    served = pool.generate(request, variants, cards, progress=kill_on_first_step)
    assert killed and served.worker["retries"] == 1 and served.worker["replica"] != victim
    assert _same_images(served, local.generate(request, variants, cards))
