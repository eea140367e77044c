"""The web app without a browser: it builds, its API endpoints work through gradio_client
against a launched app on 127.0.0.1, and errors come back as readable messages."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fakes.web_catalog import XSS_DESCRIPTION, card, write_catalog

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a corgi astronaut on the moon, watercolor"


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client
    return Client(app_url, verbose=False)


# ---- building --------------------------------------------------------------------------------
def test_create_demo_builds_without_opening_the_catalog_or_models(tmp_path):
    import gradio as gr

    from catalog.settings import Settings
    from components.engine import StylusEngine
    from stylus_ui.web import create_demo

    engine = StylusEngine(Settings(home=tmp_path / "stylus"))
    demo = create_demo(engine)
    assert isinstance(demo, gr.Blocks)
    assert not {"store", "retriever", "generator"} & set(vars(engine)), "parts must be built lazily"
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"select", "compose", "generate"} <= names


def test_importing_app_loads_no_model_libraries():
    code = ("import sys, app; heavy = [m for m in ('torch', 'diffusers', 'chromadb', 'litellm', "
            "'sentence_transformers', 'gradio') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_command_is_registered():
    out = subprocess.run([sys.executable, "-m", "stylus_ui", "serve", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--port" in out.stdout and "--share" in out.stdout


# ---- rendering untrusted text ---------------------------------------------------------------
def test_card_html_escapes_author_text():
    from stylus_ui.web import render

    c = card("x1", "<b onmouseover=alert(1)>Name</b>", "style", ["<script>t</script>"], ["<i>trig</i>"],
             XSS_DESCRIPTION)
    html = render.card_detail_html(c)
    assert "<img src=x" not in html and "<script>" not in html and "<b onmouseover" not in html
    assert "&lt;img src=x onerror=" in html
    from components.types import Candidate
    item = render.cards_html([render.candidate_dict(Candidate(card=c, score=1.0, evidence={"tags": ["<x>"]}))])
    assert "<script>" not in item and "&lt;script&gt;" in item and "&lt;x&gt;" in item


def test_mapping_rows_accept_strings_and_skip_blank_rows():
    from stylus_ui.web.render import rows_to_dicts
    rows = rows_to_dicts([["moon", "test-moon", "Lunar", "0.7"], ["", "", "", ""], ["x", "id", "n"]])
    assert rows[0] == {"keyword": "moon", "id": "test-moon", "name": "Lunar", "weight": "0.7"}
    assert len(rows) == 2 and rows[1]["weight"] == ""


def test_inpaint_mask_comes_from_painted_layer_and_empty_mask_is_refused():
    from stylus_ui.web.images import editor_to_image_and_mask
    bg = np.full((40, 40, 3), 120, dtype=np.uint8)
    layer = np.zeros((40, 40, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="mask is empty"):
        editor_to_image_and_mask({"background": bg, "layers": [layer]}, (32, 32))
    layer[10:20, 10:20, 3] = 255
    init, mask = editor_to_image_and_mask({"background": bg, "layers": [layer]}, (32, 32))
    assert init.size == mask.size == (32, 32) and mask.mode == "L"
    m = np.asarray(mask)
    assert m[12, 12] == 255 and m[0, 0] == 0


# ---- the API through gradio_client ----------------------------------------------------------
def test_select_returns_candidates_with_evidence_and_a_mapping(client):
    out = client.predict(PROMPT, 20, "offline", "", 2, api_name="/select")
    ids = [c["id"] for c in out["candidates"]]
    assert "test-corgi" in ids and "test-moon" in ids
    assert all("score" in c and "evidence" in c for c in out["candidates"])
    assert out["mapping"], "the composer should map some keyword"
    assert {r["id"] for r in out["mapping"]} <= set(ids)


def test_select_character_policy(client):
    from gradio_client.exceptions import AppError
    prompt = "a hooded figure in a green cloak on the moon"
    named = client.predict(prompt, 20, "offline", "", 2, api_name="/select")  # default: named
    assert "test-ranger" not in [c["id"] for c in named["candidates"]]
    everyone = client.predict(prompt, 20, "offline", "", 2, "all", api_name="/select")
    ranger = next(c for c in everyone["candidates"] if c["id"] == "test-ranger")  # described: retrieved
    assert ranger["concepts"] and "character" not in ranger["concepts"][0]["why"]  # and not refused as one
    assert "test-ranger" in [c["id"] for c in client.predict("ranger kiri on the moon", 20, "offline", "", 2,
                                                             api_name="/select")["candidates"]]  # named
    with pytest.raises(AppError, match="'sometimes' is not one of named, all, none"):
        client.predict(prompt, 20, "offline", "", 2, "sometimes", api_name="/select")


def test_compose_validates_edits_with_readable_errors(client):
    from gradio_client.exceptions import AppError
    rows = [{"keyword": "moon", "id": "test-moon", "weight": 0.7},
            {"keyword": "corgi", "id": "test-corgi", "weight": 0.9}]
    out = client.predict(PROMPT, rows, 3, "all", 0, "", api_name="/compose")
    assert out["variants"][0]["weights"].keys() == {"test-moon", "test-corgi"}
    assert "<lora:" in out["variants"][0]["export"]
    with pytest.raises(AppError, match=r"outside \[-2"):
        client.predict(PROMPT, [{"keyword": "moon", "id": "test-moon", "weight": 5}], 2, "all", 0, "",
                       api_name="/compose")
    with pytest.raises(AppError, match="not in the catalog"):
        client.predict(PROMPT, [{"keyword": "moon", "id": "no-such-adapter", "weight": 1}], 2, "all", 0, "",
                       api_name="/compose")
    with pytest.raises(AppError, match="not a number"):
        client.predict(PROMPT, [{"keyword": "moon", "id": "test-moon", "weight": "heavy"}], 2, "all", 0, "",
                       api_name="/compose")


def test_generate_returns_captioned_pngs_with_metadata(client):
    rows = [{"keyword": "moon", "id": "test-moon", "weight": 0.8},
            {"keyword": "watercolor", "id": "test-watercolor", "weight": 0.8}]
    gallery, info = client.predict(PROMPT, "blurry", rows, 3, 7.0, 5, 2, "all", "", 64, 64,
                                   api_name="/generate")
    assert len(gallery) == 3  # two variants and the base image
    assert "Lunar Landscape" in gallery[0]["caption"] and gallery[-1]["caption"].startswith("base model")
    png = Image.open(gallery[0]["image"])
    assert png.size == (64, 64)
    assert "<lora:" in png.info.get("parameters", "") and "Seed: 5" in png.info["parameters"]
    assert info["preview_model"] is True and "total" in info["timings"]
    assert [i["seed"] for i in info["images"]] == [5, 6, 5]


def test_generate_refuses_bad_input_with_readable_messages(client):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="prompt is empty"):
        client.predict("  ", "", None, 2, 7.0, 0, 1, "all", "", 64, 64, api_name="/generate")
    with pytest.raises(AppError, match="mask_strategy 'sometimes' is not known"):
        client.predict(PROMPT, "", None, 2, 7.0, 0, 1, "sometimes", "", 64, 64, api_name="/generate")


# ---- the engine's catalog calls behind the Catalog tab ------------------------------------
def test_catalog_search_filters_and_edits_persist(tmp_path):
    from catalog.settings import Settings
    from components.engine import StylusEngine
    from components.types import StylusError

    home = tmp_path / "stylus"
    write_catalog(home / "catalog")
    engine = StylusEngine(Settings(home=home))
    assert [c.id for c in engine.catalog.search(text="corgi")] == ["test-corgi"]
    assert {c.id for c in engine.catalog.search(category="style")} == {"test-watercolor", "test-pixel"}
    engine.catalog.edit("test-pixel", blocked=True, tags=["pixel art", "retro"])
    assert [c.id for c in engine.catalog.search(status="blocked")] == ["test-pixel"]
    again = StylusEngine(Settings(home=home))
    assert again.catalog.card("test-pixel").blocked and again.catalog.card("test-pixel").effective_tags() == [
        "pixel art", "retro"]
    with pytest.raises(StylusError, match="filter"):
        engine.catalog.search(flags=["sparkly"])


def test_folder_import_is_off_on_a_public_server_without_roots(tmp_path):
    from catalog.settings import Settings
    from components.engine import StylusEngine
    from components.types import StylusError

    engine = StylusEngine(Settings(home=tmp_path / "stylus", public=True))
    with pytest.raises(StylusError, match="folder import is off"):
        engine.catalog.import_folder(str(tmp_path))
