"""The README's "Web API (gradio_client)" section, run as written, and the API's names and defaults.

Every ```python block of that section is executed verbatim, in README order, in one fresh
namespace (as a reader pasting them into one Python session would), against a real
``python app.py`` started by tests/fakes/app_process.py: the untrained preview model and the small
test catalog of tests/fakes/web_catalog.py (corgi, astronaut, moon, watercolor, ...).

One string is substituted: the README's ``"http://127.0.0.1:7860/"`` becomes the test app's URL.
The app runs on a free port rather than on 7860, which a developer's own app or another test run
on this machine may hold; nothing else in the blocks is changed.
"""
from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README_URL = '"http://127.0.0.1:7860/"'
SECTION = "## Web API (gradio_client)"
ENDPOINTS = ("/select", "/compose", "/generate")
ROW_KEYS = {"keyword", "id", "name", "weight", "applied_weight"}
PROMPT = "a corgi astronaut on the moon, watercolor"


def api_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:] if end < 0 else text[start:end]


def python_blocks(section: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def parameter_tables(text: str) -> dict[str, list[tuple[str, str]]]:
    """Endpoint -> (parameter, default cell) rows of its "## `/name`" (or "###") table; a row
    naming two parameters (`width`, `height`) gives one entry for each."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for endpoint, body in re.findall(r"##+ `(/\w+)`[^\n]*\n(.*?)(?=\n##|\Z)", text, flags=re.DOTALL):
        rows = []
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[0].startswith("`"):
                rows += [(name, cells[2]) for name in re.findall(r"`(\w+)`", cells[0])]
        tables[endpoint] = rows
    return tables


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.fakes.app_process import start_app
    app = start_app(tmp_path_factory.mktemp("readme-api") / "home")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    return Client(app.url, verbose=False)


def test_readme_api_blocks_run_as_written_and_give_what_the_readme_says(app):
    from gradio_client.utils import Status

    from components.generator.grid import BASELINE_LABEL

    section = api_section()
    blocks = python_blocks(section)
    assert len(blocks) >= 3 and README_URL in blocks[0], "the section's first block connects to the app"
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in blocks:
            exec(compile(block.replace(README_URL, repr(app.url)), "README.md", "exec"), namespace)
    out = printed.getvalue()

    # /select: the rows carry the documented keys; adapters_per_topic=2 caps every topic
    sel, rows = namespace["sel"], namespace["rows"]
    assert rows and all(set(r) == ROW_KEYS for r in sel["mapping"]), sel["mapping"]
    assert all(len(t["adapters"]) <= 2 for t in sel["composition"]["topics"])
    first, last = rows[0], rows[-1]
    assert (first["weight"], last["applied_weight"]) == (0.6, 0.5)

    # /compose, mask "all": the fixed applied weight is applied as is, the other by the rule
    plan = namespace["plan"]
    assert len(plan["variants"]) == 4
    topic_size = sum(r["keyword"] == first["keyword"] for r in rows)
    for v in plan["variants"]:
        assert v["weights"][last["id"]] == 0.5, v
        if first is not last:
            assert v["weights"][first["id"]] == round(0.6 * 0.8 / topic_size, 4), v
        assert f":{v['weights'][last['id']]:g}>" in v["export"], v["export"]

    # /generate: 2 variants then the base image; 512x512 PNGs with their A1111 parameters
    images, info = namespace["images"], namespace["info"]
    assert len(images) == len(info["images"]) == 2 + 1
    assert images[-1]["caption"] == BASELINE_LABEL and info["images"][-1]["baseline"]
    assert all(i["caption"].startswith(f"#{n}: ") for n, i in enumerate(images[:-1]))
    assert not any(i["baseline"] for i in info["images"][:-1])
    for item, meta in zip(images, info["images"]):
        with Image.open(item["image"]) as png:
            assert png.size == (512, 512)
            assert png.info["parameters"] == meta["parameters"]
        assert "Steps: 25" in meta["parameters"] and "Negative prompt: blurry" in meta["parameters"]
        assert meta["weights"].get(last["id"], 0.5) in (0, 0.5)  # off, or on at its fixed weight
    assert info["preview_model"] is True

    # client.view_api() prints every parameter of the tables
    for endpoint, table in parameter_tables(section).items():
        assert f'api_name="{endpoint}"' in out
        for name, _ in table:
            assert f" {name}: " in out, (endpoint, name)

    # a print's comment is what it prints
    for expected in re.findall(r"^\s*print\(.*\)\s*#\s*(.+)$", section, flags=re.MULTILINE):
        assert expected.strip() in out.splitlines(), (expected, out[-500:])

    # Job.cancel(): the /generate (16 images x 150 steps) ends cancelled, not finished
    job = namespace["job"]
    deadline = time.monotonic() + 60  # a bound on the wait, not a timing assertion
    while not job.done() and job.status().code != Status.CANCELLED and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.status().code == Status.CANCELLED, job.status()


@pytest.mark.parametrize("doc", ["README.md", "docs/API.md"])
def test_view_api_names_and_defaults_are_the_documented_tables(client, doc):
    """Names in order (positional calls rely on it) and each default the tables give (on the
    preview model: its steps and size)."""
    text = api_section() if doc == "README.md" else (REPO / doc).read_text(encoding="utf-8")
    documented = parameter_tables(text)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(documented) == set(ENDPOINTS), doc
    for endpoint in ENDPOINTS:
        params = api[endpoint]["parameters"]
        assert [p["parameter_name"] for p in params] == [name for name, _ in documented[endpoint]], endpoint
        for p, (name, cell) in zip(params, documented[endpoint]):
            if name == "prompt":
                assert not p["parameter_has_default"] and cell == "required"
                continue
            assert p["parameter_has_default"], (endpoint, name)
            default = p["parameter_default"]
            shown = {None: {"null"}, "": {'""', "empty"}}.get(default, {str(default)})
            assert shown & set(re.findall(r'""|[\w.]+', cell)), (endpoint, name, default, cell)


def test_keyword_calls_with_only_the_prompt_use_the_documented_defaults(client):
    selected = client.predict(prompt=PROMPT, api_name="/select")
    assert selected["mapping"] and all(set(r) == ROW_KEYS for r in selected["mapping"])
    assert all(r["applied_weight"] is None for r in selected["mapping"])
    assert all(len(t["adapters"]) <= 3 for t in selected["composition"]["topics"])  # adapters_per_topic 3

    plan = client.predict(prompt=PROMPT, api_name="/compose")  # mapping null: /select's composer
    assert len(plan["variants"]) == 4 and plan["composition"]["topics"]

    images, info = client.predict(prompt=PROMPT, api_name="/generate")
    assert len(images) == 4 + 1 and info["images"][-1]["baseline"]
    assert [i["seed"] for i in info["images"]] == [0, 1, 2, 3, 0]
    parameters = info["images"][0]["parameters"]
    # the preview model's defaults: 12 steps, 128x128; guidance 7.0; no negative prompt
    assert "Steps: 12," in parameters and "Size: 128x128" in parameters and "CFG scale: 7.0" in parameters
    assert "Negative prompt" not in parameters, parameters


def test_an_out_of_range_value_is_refused_naming_the_parameter_as_passed(client, tmp_path):
    from gradio_client.exceptions import AppError

    from catalog.settings import Settings
    from components.engine import StylusEngine
    from components.types import RetrievalResult, StylusError

    message = "adapters_per_topic 50 is not allowed; use 0 to 10"
    with pytest.raises(AppError) as refused:
        client.predict(PROMPT, adapters_per_topic=50, api_name="/select")
    assert str(refused.value) == message
    with pytest.raises(AppError) as zero:  # 0 is a value, not "the default"
        client.predict(PROMPT, steps=0, api_name="/generate")
    assert str(zero.value) == "steps 0 is not allowed; use 1 to 150"
    # the engine's compose step (the CLI's path) names it the same way, not as the composer's top_k
    engine = StylusEngine(Settings(home=tmp_path / "stylus"))
    with pytest.raises(StylusError) as direct:
        engine.compose(PROMPT, RetrievalResult(query=PROMPT, candidates=[]), adapters_per_topic=50)
    assert str(direct.value) == message
