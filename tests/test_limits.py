"""One set of request limits (components/limits.py), the same through every entry.

The same bad value gets the same message ("<param> <value> is not allowed; use <range>") from
the engine, the CLI (``python -m stylus_ui``, exit 2, the message on stderr, the option named as
typed) and the running web API (gradio_client against a real ``python app.py`` process); zero is
checked like any value, never turned into a default. One app serves the whole module.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from components.types import Composition, GenerationRequest, StylusError, Topic, TopicAdapter
from tests.fakes.app_process import REPO, app_env, start_app

PROMPT = "a corgi astronaut on the moon, watercolor"
ROWS = [{"keyword": "moon", "id": "test-moon", "weight": 0.7},
        {"keyword": "corgi", "id": "test-corgi", "weight": 0.9}]
LONG_DEBIAS = "realistic, " * 4545 + "best "  # 50,000 characters
LONG_PROMPT = "a corgi " * 6249 + "a corgi!"  # 50,000 characters


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("limits") / "stylus")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def engine(app):
    """An engine in this process on the app's catalog (read only: every call here is refused)."""
    from catalog.settings import Settings
    from components.engine import StylusEngine
    return StylusEngine(Settings(home=app.home, torch_threads=1))


def composition() -> Composition:
    topics = [Topic(["moon"], [TopicAdapter("test-moon", "Lunar Landscape", 0.7)]),
              Topic(["corgi"], [TopicAdapter("test-corgi", "Corgi Dog", 0.9)])]
    return Composition(prompt=PROMPT, topics=topics)


def engine_error(call, *args, **kwargs) -> str:
    with pytest.raises(StylusError) as info:
        call(*args, **kwargs)
    return str(info.value)


def api_error(client, *args, api_name: str) -> str:
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def cli_error(app, *argv: str) -> str:
    """The message of a refused command: exit status 2, ``error: <message>`` on stderr."""
    done = subprocess.run([sys.executable, "-m", "stylus_ui", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=app_env(app.home, 0))
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-2000:]}"
    lines = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert lines, done.stderr[-2000:]
    return lines[-1].removeprefix("error: ")


def compose_args(n=2, seed=0, debias="") -> tuple:
    return (PROMPT, ROWS, n, "all", seed, debias)


def generate_args(steps=2, seed=0, n=1, debias="") -> tuple:
    return (PROMPT, "", ROWS, steps, 7.0, seed, n, "all", debias, 64, 64)


@pytest.mark.parametrize("n", [256, 0])
def test_number_of_variants_is_checked_the_same_everywhere(app, client, engine, n):
    message = f"num_images {n} is not allowed; use 1 to 16"
    assert engine_error(engine.variants, composition(), n) == message
    assert api_error(client, *compose_args(n=n), api_name="/compose") == message
    assert api_error(client, *generate_args(n=n), api_name="/generate") == message
    assert cli_error(app, "generate", PROMPT, "--n", str(n)) == message.replace("num_images", "--n")


def test_a_long_debias_is_refused_not_copied_into_every_variant(client, engine):
    message = engine_error(engine.variants, composition(), 2, debias=LONG_DEBIAS)
    assert message.startswith("debias 'realistic, realistic, re'...")
    assert message.endswith("(50,000 characters) is not allowed; use at most 500 characters")
    assert len(message) < 200  # the message does not carry the text either
    assert api_error(client, *compose_args(debias=LONG_DEBIAS), api_name="/compose") == message
    assert api_error(client, *generate_args(debias=LONG_DEBIAS), api_name="/generate") == message


def test_a_long_prompt_is_refused_before_any_retrieval(app, client, engine):
    message = engine_error(engine.select, LONG_PROMPT)
    assert message.endswith("(50,000 characters) is not allowed; use at most 4,000 characters")
    assert message.startswith("prompt 'a corgi a corgi a corgi "), message
    assert not {"store", "retriever"} & set(vars(engine)), "checked before the catalog or index is opened"
    assert api_error(client, LONG_PROMPT, 20, "offline", "", 2, api_name="/select") == message
    assert api_error(client, LONG_PROMPT, ROWS, 2, "all", 0, "", api_name="/compose") == message
    assert cli_error(app, "retrieve", LONG_PROMPT) == message
    assert cli_error(app, "compose", LONG_PROMPT) == message


def test_zero_steps_is_refused_not_replaced_by_the_default(app, client, engine):
    message = "steps 0 is not allowed; use 1 to 150"
    assert engine_error(engine.generate, GenerationRequest(prompt=PROMPT, steps=0, width=64, height=64)) == message
    assert api_error(client, *generate_args(steps=0), api_name="/generate") == message
    assert cli_error(app, "generate", PROMPT, "--steps", "0") == message.replace("steps", "--steps")


def test_zero_top_k_is_refused_not_replaced_by_the_default(app, client, engine):
    message = "top_k 0 is not allowed; use 1 to 500"
    assert engine_error(engine.select, PROMPT, top_k=0) == message
    assert engine_error(engine.retrieve, PROMPT, top_k=0) == message
    assert not {"store", "retriever"} & set(vars(engine)), "checked before the catalog or index is opened"
    assert api_error(client, PROMPT, 0, "offline", "", 2, api_name="/select") == message
    assert cli_error(app, "retrieve", PROMPT, "--top-k", "0") == message.replace("top_k", "--top-k")
    assert cli_error(app, "compose", PROMPT, "--candidates", "0") == message.replace("top_k", "--candidates")
    per_topic = "adapters_per_topic 11 is not allowed; use 0 to 10"
    assert engine_error(engine.select, PROMPT, adapters_per_topic=11) == per_topic
    assert api_error(client, PROMPT, 20, "offline", "", 11, api_name="/select") == per_topic
    assert cli_error(app, "compose", PROMPT, "--top-k", "11") == per_topic.replace("adapters_per_topic", "--top-k")


def test_compose_refuses_the_seeds_generate_refuses(app, client, engine):
    message = "seed -1 is not allowed; use 0 to 2**63-17"
    assert api_error(client, *compose_args(seed=-1), api_name="/compose") == message
    assert engine_error(engine.variants, composition(), 2, seed=-1) == message
    assert api_error(client, *generate_args(seed=-1), api_name="/generate") == message
    assert cli_error(app, "generate", PROMPT, "--seed", "-1") == message.replace("seed", "--seed")


def test_a_small_compose_request_gets_a_small_answer(client):
    """Under 1 KB in: either refused (too many variants) or at most 20 KB out."""
    from gradio_client.exceptions import AppError
    debias = "best quality, " * 14  # 196 characters, within the limit
    for n in (16, 256):
        request = json.dumps([PROMPT, ROWS, n, "one_hot_loras", 0, debias])
        assert len(request) < 1000
        try:
            answer = json.dumps(client.predict(PROMPT, ROWS, n, "one_hot_loras", 0, debias, api_name="/compose"))
        except AppError as exc:
            assert str(exc) == f"num_images {n} is not allowed; use 1 to 16"
            continue
        assert len(answer) < 20_000, f"{len(request)} bytes in, {len(answer)} out for {n} variants"


def test_the_web_sliders_offer_exactly_the_allowed_ranges(tmp_path):
    from catalog.settings import Settings
    from components import limits
    from components.engine import StylusEngine
    from stylus_ui.web import create_demo

    demo = create_demo(StylusEngine(Settings(home=tmp_path / "stylus")))
    expected = {"Steps": limits.STEPS, "Guidance": limits.GUIDANCE, "Variants": limits.NUM_IMAGES,
                "Width": limits.SIDE, "Height": limits.SIDE, "Top-K retrieved": limits.TOP_K,
                "Adapters per topic": limits.ADAPTERS_PER_TOPIC}
    sliders = [c["props"] for c in demo.config["components"] if c.get("type") == "slider"]
    seen = {p["label"] for p in sliders if p.get("label") in expected}
    assert seen == set(expected)
    for props in sliders:
        if props.get("label") in expected:
            limit = expected[props["label"]]
            assert (props["minimum"], props["maximum"]) == (limit.low, limit.high), props["label"]
