"""Issue 13, items 5 and 6: a slow server or a long request never holds everyone else up.

Real parts: the tiny preview pipelines, local servers on 127.0.0.1 that answer a byte at a time
(tests/fakes/slow_http.py), the LLM through litellm, and the app as a real process driven with
gradio_client. Timing checks are only "did not wait for the slow thing" (under a third of it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from catalog.card import AdapterCard, AdapterFile
from catalog.settings import Settings
from components.types import Composition, GenerationRequest, Topic, TopicAdapter
from tests.fakes.openai_server import FakeOpenAI, _completion
from tests.fakes.slow_http import TrickleServer
from tests.fakes.web_catalog import write_catalog

REPO = Path(__file__).resolve().parents[1]


def _request(**kw) -> GenerationRequest:
    values = dict(prompt="a cat", steps=2, width=64, height=64, num_images=1, include_baseline=False)
    values.update(kw)
    return GenerationRequest(**values)


# ---- the preview model costs what a preview should (item 6) ----------------------------------------
def test_preview_model_serves_a_large_request_in_seconds(gen_settings):
    """256x256, 25 steps with a baseline took minutes (512x512 never finished): the preview VAE
    downsamples 2x, so attention ran at 64x64 latents. Run in a child process that is killed
    when it takes too long, so a regression cannot hang the suite."""
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from catalog.settings import Settings\n"
        "from components.generator import Generator\n"
        "from components.types import GenerationRequest\n"
        f"gen = Generator(Settings(home={str(gen_settings.home)!r}, device='cpu'))\n"
        "r = gen.generate(GenerationRequest(prompt='a corgi', steps=25, width=256, height=192, num_images=1,"
        " include_baseline=True))\n"
        "print(json.dumps({'sizes': [list(i.image.size) for i in r.images + [r.baseline]],"
        " 'notices': r.notices, 'params': r.images[0].parameters}))\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                              timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("a 256x192, 25-step preview request did not finish within 90 s")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["sizes"] == [[256, 192], [256, 192]]  # the size asked for
    assert "Size: 256x192" in out["params"]
    assert any("preview model drew" in n and "upscaled to 256x192" in n for n in out["notices"]), out["notices"]


def test_preview_draw_size_stays_small_at_every_allowed_size():
    from components.generator.preview_model import PREVIEW_MAX_PIXELS, preview_draw_size

    assert preview_draw_size(64, 64) == (64, 64)  # small requests are drawn as asked
    for w, h in [(512, 512), (2048, 2048), (2048, 64), (64, 2048), (1024, 768)]:  # 64..2048 allowed
        dw, dh = preview_draw_size(w, h)
        assert dw * dh <= PREVIEW_MAX_PIXELS and dw % 8 == 0 and dh % 8 == 0 and dw >= 8 and dh >= 8, (w, h)
        assert abs(dw / dh - w / h) / (w / h) < 0.5  # about the same shape


# ---- cancel and time budget of a generation (item 6) -----------------------------------------------
def test_cancel_stops_a_generation_at_the_next_step_and_frees_the_generator(tiny_generator):
    from components.generator.budget import GenerationStopped

    cancel = threading.Event()
    steps_seen: list[int] = []

    def progress(done: int, total: int) -> None:
        steps_seen.append(done)
        if done == 3:
            cancel.set()  # as the web app's Stop button does, from another thread

    with pytest.raises(GenerationStopped, match="cancelled"):
        tiny_generator.generate(_request(steps=100, num_images=4), progress=progress, cancel=cancel)
    assert steps_seen == [1, 2, 3]  # not one step more
    after = tiny_generator.generate(_request())  # the lock was released, the base weights restored
    assert len(after.images) == 1


def test_a_request_over_its_time_budget_stops_with_a_message(gen_settings):
    from components.generator import Generator
    from components.generator.budget import GenerationStopped

    gen = Generator(gen_settings.replace(generation_timeout_s=1.0))
    gen.pipelines()
    t0 = time.monotonic()
    with pytest.raises(GenerationStopped) as info:
        gen.generate(_request(steps=150, num_images=16))  # about 150 s of work
    assert time.monotonic() - t0 < 50
    assert "time budget of 1 s" in str(info.value) and "STYLUS_GENERATION_TIMEOUT_S" in str(info.value)


def test_a_bad_time_budget_is_refused_naming_the_value(gen_settings):
    from catalog.settings import SettingsError
    from components.generator.budget import Budget
    from components.types import StylusError

    for name in ("generation_timeout_s", "download_timeout_s", "llm_total_timeout_s"):
        with pytest.raises(SettingsError, match=rf"{name}=0\.0 is not allowed; use a number of seconds > 0"):
            gen_settings.replace(**{name: 0.0})
    with pytest.raises(StylusError, match=r"generation_timeout_s=-1 is not allowed; use a number of seconds > 0"):
        Budget(-1)


# ---- a slow download (item 5) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """The preview weights saved as a model folder: loaded as a *real* model, so cards download."""
    import torch
    torch.set_num_threads(1)
    from components.generator.preview_model import ensure_preview_model
    return ensure_preview_model(tmp_path_factory.mktemp("model"))


def _lora_payload(tmp_path: Path) -> bytes:
    from tests.fakes.tiny_loras import write_kohya
    return write_kohya(tmp_path / "src.safetensors", seed=7).read_bytes()


def _card(url: str) -> AdapterCard:
    return AdapterCard(id="slow-dl", source="civitai", name="Slow download", base_model="SD 1.5",
                       files=[AdapterFile(name="x.safetensors", primary=True, download_url=url)])


def test_a_slow_download_does_not_hold_the_generator(tmp_path, real_model):
    """Request A needs an adapter from a server sending 2 KB/s (a minute for the file); request B
    (no adapters) must not wait for that download: files are fetched before a request takes the
    generator."""
    from components.engine import StylusEngine

    server = TrickleServer(_lora_payload(tmp_path), chunk=1000, interval=0.5)
    card = _card(server.url("/x.safetensors"))
    settings = Settings(home=tmp_path / "h", model=str(real_model), device="cpu", download_hosts=["127.0.0.1"],
                        torch_threads=1)
    engine = StylusEngine(settings)
    engine.store.upsert(card)
    engine.generator.pipelines()
    comp = Composition(prompt="a cat", topics=[Topic(keywords=["cat"], adapters=[
        TopicAdapter(card_id=card.id, name=card.name, weight=0.8)])])
    results: dict[str, object] = {}

    def run(name: str, request: GenerationRequest) -> None:
        results[name] = engine.generate(request)

    a = threading.Thread(target=run, args=("a", _request(composition=comp)), daemon=True)
    b = threading.Thread(target=run, args=("b", _request(prompt="a dog")), daemon=True)
    try:
        a.start()
        assert server.started.wait(30), "request A never started its download"
        t0 = time.monotonic()
        b.start()
        b.join(server.seconds / 3)
        waited = time.monotonic() - t0
        a_downloading = a.is_alive()
    finally:
        server.close()  # ends A's download mid-way
    a.join(60)
    b.join(60)
    assert waited < server.seconds / 3 and "b" in results, \
        f"B waited {waited:.1f} s behind A's download ({server.seconds:.0f} s)"
    assert a_downloading, "the download finished before B: the test proves nothing"
    assert len(results["b"].images) == 1
    assert any(card.id in n and "skipped" in n for n in results["a"].notices), results["a"].notices


def test_a_download_has_a_total_deadline_not_a_per_read_one(tmp_path):
    from components.generator.adapters import fetch_card_file

    server = TrickleServer(_lora_payload(tmp_path), chunk=1000, interval=0.5)  # a read every 0.5 s
    try:
        settings = Settings(home=tmp_path / "h", download_hosts=["127.0.0.1"], download_timeout_s=2.0)
        notices: list[str] = []
        t0 = time.monotonic()
        assert fetch_card_file(settings, _card(server.url("/x.safetensors")), notices) is None
        took = time.monotonic() - t0
    finally:
        server.close()
    assert took < server.seconds / 3, f"{took:.1f} s for a 2 s budget"
    assert any("not finished within its time budget" in n and "STYLUS_DOWNLOAD_TIMEOUT_S" in n and "skipped" in n
               for n in notices), notices


# ---- a slow or huge LLM answer (item 5) ------------------------------------------------------------
def _llm_engine(tmp_path: Path, base_url: str, **kw):
    from components.engine import StylusEngine
    write_catalog(tmp_path / "h" / "catalog")
    settings = Settings(home=tmp_path / "h", composer="llm", llm_model="openai/fake", llm_api_base=base_url,
                        llm_api_key="sk-budget-test", **kw)
    return StylusEngine(settings)


def test_an_llm_answering_a_byte_at_a_time_is_cut_at_the_total_deadline(tmp_path):
    answer = json.dumps(_completion('{"topics": [{"keywords": ["corgi"], "adapters": []}]}')).encode()
    server = TrickleServer(answer, chunk=1, interval=0.1, content_type="application/json")  # 1 read per 0.1 s
    try:
        engine = _llm_engine(tmp_path, server.url("/v1"), llm_timeout=5.0, llm_total_timeout_s=2.0)
        engine.retrieve("a corgi")  # the index is built before the clock starts
        t0 = time.monotonic()
        comp = engine.select("a corgi astronaut on the moon").composition
        took = time.monotonic() - t0
    finally:
        server.close()
    assert took < server.seconds / 3, f"{took:.1f} s (the server needs {server.seconds:.0f} s)"
    assert comp.composer == "offline (fallback from llm)"
    assert "total time budget of 2 s" in comp.notices[0] and "STYLUS_LLM_TOTAL_TIMEOUT_S" in comp.notices[0]


def _answer_with_unknown_ids(n: int) -> str:
    return json.dumps({"topics": [{"keywords": ["corgi"], "adapters": [{"id": f"no-such-{i}", "reason": "x"}
                                                                       for i in range(n)]}]})


def test_a_huge_llm_answer_is_refused_unparsed(tmp_path):
    content = _answer_with_unknown_ids(20_000)  # ~900 KB: it gave one notice per unknown id
    with FakeOpenAI() as server:
        server.queue(content=content).queue(content=content)  # the first try and the retry
        comp = _llm_engine(tmp_path, server.base_url).select("a corgi astronaut on the moon").composition
    assert len(comp.notices) < 30, len(comp.notices)
    assert comp.composer == "offline (fallback from llm)"
    from components.composer.llm import MAX_ANSWER_CHARS
    assert len(content) > MAX_ANSWER_CHARS
    assert f"{len(content):,} characters, above the cap of {MAX_ANSWER_CHARS:,}" in comp.notices[0], \
        comp.notices[:2]


def test_many_dropped_adapters_give_a_bounded_number_of_notices(tmp_path):
    content = _answer_with_unknown_ids(1_500)  # ~70 KB, under the size cap
    with FakeOpenAI() as server:
        server.queue(content=content)
        comp = _llm_engine(tmp_path, server.base_url).select("a corgi astronaut on the moon").composition
    assert comp.composer == "llm:openai/fake"
    dropped = [n for n in comp.notices if "no-such-" in n]
    assert len(dropped) < 30, len(dropped)
    from components.composer.llm import MAX_ANSWER_CHARS, MAX_NOTICES
    assert len(content) < MAX_ANSWER_CHARS and len(dropped) == MAX_NOTICES
    assert f"... and {1_500 - MAX_NOTICES:,} more notices like these" in comp.notices, comp.notices[-3:]


# ---- cancel through the app (item 6) ---------------------------------------------------------------
def test_job_cancel_stops_running_and_queued_generates_and_the_next_one_runs(tmp_path):
    from gradio_client import Client

    from tests.fakes.app_process import start_app
    from tests.test_faults import _wait_processing

    app = start_app(tmp_path / "home")
    try:
        client = Client(app.url, verbose=False)
        client.predict("a corgi", "", None, 1, 7.0, 0, 1, "one_hot_loras", "", 64, 64, api_name="/generate")
        t0 = time.monotonic()  # warm: 20 steps for the image and 20 for the baseline
        client.predict("a corgi", "", None, 20, 7.0, 0, 1, "one_hot_loras", "", 64, 64, api_name="/generate")
        long_seconds = 17 * 150 * (time.monotonic() - t0) / 40  # what the long job below costs
        long_job = client.submit("a corgi", "", None, 150, 7.0, 0, 16, "one_hot_loras", "", 64, 64,
                                 api_name="/generate")  # 17 images x 150 steps
        _wait_processing(long_job)
        queued = Client(app.url, verbose=False).submit("a cat", "", None, 150, 7.0, 0, 16, "one_hot_loras", "",
                                                       64, 64, api_name="/generate")  # waits for the GPU
        time.sleep(1.0)  # the long job is well into denoising
        queued.cancel()  # leaves the queue
        long_job.cancel()  # stops at its next step
        t1 = time.monotonic()
        short = Client(app.url, verbose=False).submit("a dog", "", None, 2, 7.0, 0, 1, "one_hot_loras", "",
                                                      64, 64, api_name="/generate")
        gallery, info = short.result(timeout=long_seconds / 3)
        waited = time.monotonic() - t1
    finally:
        app.stop()
    assert len(gallery) == 2 and info["images"][0]["seed"] == 0
    assert waited < long_seconds / 3


def test_a_slow_llm_select_does_not_hold_up_other_selects(tmp_path):
    """One user's LLM compose against a server sending a byte every 0.1 s; another user's
    offline select must not queue behind it (it did: selects shared a one-slot group)."""
    from gradio_client import Client

    from tests.fakes.app_process import start_app
    from tests.test_faults import _wait_processing

    answer = json.dumps(_completion('{"topics": []}')).encode()
    server = TrickleServer(answer, chunk=1, interval=0.1, content_type="application/json")
    app = start_app(tmp_path / "home", {"STYLUS_LLM_MODEL": "openai/fake", "STYLUS_LLM_API_BASE": server.url("/v1"),
                                        "STYLUS_LLM_API_KEY": "sk-slow-test", "STYLUS_LLM_TIMEOUT": "5"})
    try:
        client = Client(app.url, verbose=False)
        client.predict("a corgi", 10, "offline", "", 3, api_name="/select")  # the index is built
        slow = client.submit("a corgi astronaut", 10, "llm", "openai/fake", 3, api_name="/select")
        _wait_processing(slow)
        assert server.started.wait(30), "the LLM call never reached the server"
        t0 = time.monotonic()
        other = Client(app.url, verbose=False).predict("a castle at dusk", 10, "offline", "", 3,
                                                       api_name="/select")
        waited = time.monotonic() - t0
        assert not slow.done(), "the LLM answered before the other select: the test proves nothing"
    finally:
        server.close()
        app.stop()
    assert other["composition"] is not None
    assert waited < server.seconds / 3, f"the offline select waited {waited:.1f} s behind the LLM"


def test_every_generation_tab_has_a_stop_button_that_cancels_its_generations(tmp_path):
    """The page's Stop button cancels the tab's generate events (queued or running); the running
    ones are async callbacks, so the cancellation reaches them while denoising runs."""
    import inspect

    from components.engine import StylusEngine
    from stylus_ui.web import create_demo

    demo = create_demo(StylusEngine(Settings(home=tmp_path / "stylus")))
    deps = demo.config["dependencies"]
    elem = {c["id"]: c.get("props", {}).get("elem_id") for c in demo.config["components"]}

    def triggered_by(elem_id: str) -> list[int]:
        return [i for i, d in enumerate(deps) if any(elem.get(t[0]) == elem_id for t in d["targets"])]

    def after(events: list[int]) -> list[int]:  # the steps chained after these (.success)
        return [i for i, d in enumerate(deps) if d.get("trigger_after") in events]

    for mode in ("txt2img", "img2img", "inpaint"):
        # Generate: a select when the mapping is empty, then the generation; Select + generate likewise
        first = [i for i in [*triggered_by(f"{mode}-generate"), *triggered_by(f"{mode}-run")]
                 if demo.fns[i].fn is not None]
        generating = after(first)
        cancelled = {c for i in triggered_by(f"{mode}-stop") for c in deps[i].get("cancels") or []}
        assert first and len(generating) == 2 and set(first + generating) <= cancelled, (mode, first, cancelled)
        assert all(inspect.iscoroutinefunction(demo.fns[i].fn) for i in generating)
    api_generate = next(i for i, d in enumerate(deps) if d.get("api_name") == "generate")
    assert any(api_generate in (d.get("cancels") or []) for d in deps)  # gradio_client's Job.cancel()
    assert inspect.iscoroutinefunction(demo.fns[api_generate].fn)
