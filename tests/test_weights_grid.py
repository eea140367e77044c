"""Weights a person can read (recommended vs applied, a fixed applied weight) and the labelled grid.

Real parts: the masks, the engine's mapping parser on a real catalog, the grid drawn with Pillow,
``save_result`` writing real files. No model is loaded.
"""
from __future__ import annotations

import json
import re

import pytest
from PIL import Image, ImageDraw, ImageFont

from components.generator.grid import BASELINE_LABEL, labelled_grid, result_grid, variant_label, wrap_text
from components.masks import (applied_weights, build_variants, repeated_masks_notice, sample_masks,
                              weights_for)
from components.types import (Composition, GeneratedImage, GenerationResult, StylusError, Topic, TopicAdapter,
                              Variant)


def comp(applied: float | None = None) -> Composition:
    """Topic "dog": two adapters (0.9 and 0.5); topic "moon": one (0.7)."""
    return Composition(prompt="a dog on the moon", topics=[
        Topic(["dog"], [TopicAdapter("a", "Corgi", 0.9, applied_weight=applied), TopicAdapter("b", "Pug", 0.5)]),
        Topic(["moon"], [TopicAdapter("c", "Moon", 0.7)])])


# ---- applied weights -------------------------------------------------------------------------
def test_applied_weight_is_recommended_times_base_over_adapters_on():
    assert applied_weights(comp(), 0.8) == {"a": 0.36, "b": 0.2, "c": 0.56}
    assert weights_for(comp(), [[True, False], [True]], 0.8) == {"a": 0.72, "c": 0.56}


def test_a_fixed_applied_weight_is_applied_as_given_whenever_the_adapter_is_on():
    c = comp(applied=0.45)
    assert weights_for(c, [[True, True], [False]], 0.8) == {"a": 0.45, "b": 0.2}
    assert weights_for(c, [[True, False], [False]], 0.8) == {"a": 0.45}  # not divided, not scaled
    assert weights_for(c, [[False, True], [True]], 0.8) == {"b": 0.4, "c": 0.56}
    v = build_variants(c, "all", 1, seed=0)[0]
    assert "<lora:Corgi:0.45>" in v.export and v.weights["a"] == 0.45


# ---- distinct masks, and saying when they repeat ------------------------------------------------
def test_one_hot_loras_draws_every_combination_before_repeating_one():
    c = comp()  # 3 adapters: 8 combinations
    for seed in range(5):
        masks = [str(m) for m in sample_masks(c, "one_hot_loras", 16, seed)]
        assert len(set(masks[:8])) == 8 and len(set(masks[8:])) == 8, seed
    assert sample_masks(c, "one_hot_loras", 8, 3) == sample_masks(c, "one_hot_loras", 8, 3)


def test_repeated_masks_are_said():
    variants = build_variants(comp(), "all", 3, seed=0)
    notice = repeated_masks_notice(variants)
    assert notice and "#0, #1, #2" in notice and "differ only by seed" in notice
    assert repeated_masks_notice(build_variants(comp(), "one_hot_loras", 8, seed=1)) is None
    # two topics: 4 combinations, so the fifth image repeats one of the first four (and only it)
    notice = repeated_masks_notice(build_variants(comp(), "one_hot_concepts", 5, seed=2))
    assert re.search(r": #[0-3], #4; ", notice), notice


# ---- the engine parses an edited mapping's applied weights ---------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from catalog.settings import Settings
    from components.engine import StylusEngine
    from tests.fakes.web_catalog import write_catalog
    home = tmp_path_factory.mktemp("weights") / "stylus"
    write_catalog(home / "catalog")
    return StylusEngine(Settings(home=home))


def test_rows_carry_an_optional_applied_weight(engine):
    c = engine.composition_from_rows("a corgi on the moon", [
        {"keyword": "corgi", "id": "test-corgi", "weight": "0.9", "applied_weight": "0.5"},
        {"keyword": "moon", "id": "test-moon", "weight": 0.7, "applied_weight": None},
        {"keyword": "moon", "id": "test-watercolor", "weight": 0.6, "applied_weight": " "},
        {"keyword": "moon", "id": "test-neon", "weight": 0.6}])
    applied = {a.card_id: a.applied_weight for t in c.topics for a in t.adapters}
    assert applied == {"test-corgi": 0.5, "test-moon": None, "test-watercolor": None, "test-neon": None}


@pytest.mark.parametrize("value, message", [
    ("strong", "row 2: applied weight 'strong' is not a number in [-2.0, 2.0]"),
    (2.5, "row 2: applied weight 2.5 is outside [-2.0, 2.0]"),
    ("nan", "row 2: applied weight 'nan' is outside [-2.0, 2.0]"),
])
def test_a_bad_applied_weight_names_the_row_and_the_range(engine, value, message):
    rows = [{"keyword": "corgi", "id": "test-corgi", "weight": 0.9},
            {"keyword": "moon", "id": "test-moon", "weight": 0.7, "applied_weight": value}]
    with pytest.raises(StylusError) as err:
        engine.composition_from_rows("a corgi on the moon", rows)
    assert str(err.value).startswith(message) and "leave it empty" in str(err.value)


# ---- the mapping table and the API's rows ----------------------------------------------------------
def test_mapping_rows_show_recommended_and_applied_weights():
    from stylus_ui.web import render
    assert render.composition_rows(comp(), 0.8) == [["dog", "a", "Corgi", 0.9, 0.36], ["dog", "b", "Pug", 0.5, 0.2],
                                                    ["moon", "c", "Moon", 0.7, 0.56]]
    assert render.composition_rows(comp(applied=1.1), 0.8)[0][4] == 1.1
    assert render.mapping_dicts(comp())[0] == {"keyword": "dog", "id": "a", "name": "Corgi", "weight": 0.9,
                                               "applied_weight": None}
    table = render.rows_to_dicts([["dog", "a", "Corgi", "0.9", "0.4"], ["moon", "c", "Moon", 0.7]])
    assert table[0]["applied_weight"] == "0.4" and "applied_weight" not in table[1]


def test_an_edited_applied_cell_is_told_from_a_computed_one(engine):
    from stylus_ui.web.generation import fixed_applied, mapping_view
    c = engine.composition_from_rows("a corgi on the moon", [
        {"keyword": "corgi", "id": "test-corgi", "weight": 0.9},
        {"keyword": "corgi", "id": "test-watercolor", "weight": 0.5}])
    rows, state = mapping_view(engine, c, {"prompt": "p"})
    assert [r[4] for r in rows] == [0.36, 0.2] and state["applied"] == {"test-corgi": 0.36, "test-watercolor": 0.2}
    table = [["corgi", "test-corgi", "Corgi Dog", "0.9", "0.36"],  # as computed: the rule
             ["corgi", "test-watercolor", "Watercolor Wash", "0.5", "0.75"]]  # typed by the user
    from stylus_ui.web.render import rows_to_dicts
    kept = fixed_applied(rows_to_dicts(table), state)
    assert [r["applied_weight"] for r in kept] == [None, "0.75"]
    edited = engine.composition_from_rows("p", kept)
    rows, state = mapping_view(engine, edited, state)
    assert [r[4] for r in rows] == [0.36, 0.75] and state["applied"] == {"test-corgi": 0.36}


# ---- the labelled grid ----------------------------------------------------------------------------
def _tile(color: str, size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), color)


def test_labels_name_adapters_at_applied_weights_and_mark_the_base_model():
    names = {"a": "Corgi", "c": "Moon"}
    assert variant_label(Variant(2, {"a": 0.36, "c": 0.56, "b": 0.0}, "p"), names) == "#2: Corgi 0.36, Moon 0.56"
    assert variant_label(Variant(0, {}, "p"), names) == "#0: no adapters"
    assert variant_label(None, names) == BASELINE_LABEL == "base model, no adapters"


def test_long_labels_wrap_and_keep_every_character():
    font = ImageFont.load_default(size=14)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text = "#3: " + ", ".join(f"Very Long Adapter Name Number {i} 0.12" for i in range(6)) + " " + "x" * 120
    lines = wrap_text(text, font, 200, draw)
    assert len(lines) > 5 and all(draw.textlength(line, font=font) <= 200 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_grid_cells_hold_the_images_under_their_labels():
    short = labelled_grid([_tile("red"), _tile("blue")], ["a", "b"], columns=2)
    long = labelled_grid([_tile("red"), _tile("blue")], ["a", "word " * 60], columns=2)
    assert long.height > short.height and long.width == short.width  # the label wraps, the cell keeps its width
    grid = labelled_grid([_tile("red"), _tile("blue"), _tile("lime")], ["base", "#0", "#1"], columns=2, marked=[0])
    assert grid.width == 2 * 256 + 3 * 8  # small images get cells wide enough to read a label
    pixels = grid.load()
    assert pixels[8 + 2, 8 + 2] == (0x3B, 0x2F, 0x8F)  # the base model's label is dark
    assert pixels[8 + 256 + 8 + 2, 8 + 2] == (0xF3, 0xF3, 0xF3)  # a variant's label is light
    red = [(x, y) for x in range(grid.width) for y in range(grid.height) if pixels[x, y] == (255, 0, 0)]
    assert len(red) == 64 * 64  # every pixel of the image is in the grid: no label or frame covers it
    with pytest.raises(ValueError, match="2 images and 1 labels"):
        labelled_grid([_tile("red"), _tile("blue")], ["a"])


def test_the_saved_grid_is_labelled_with_the_base_model_first(tmp_path):
    from components.generator import read_png_parameters, save_result
    result = GenerationResult(
        images=[GeneratedImage(_tile("red"), 1, Variant(0, {"a": 0.36}, "p"), "p <lora:Corgi:0.36>"),
                GeneratedImage(_tile("blue"), 2, Variant(1, {"a": 0.36}, "p"), "p <lora:Corgi:0.36>")],
        baseline=GeneratedImage(_tile("lime"), 1, None, "p"))
    summary = save_result(result, tmp_path, stem="t", names={"a": "Corgi"})
    assert summary["grid_labels"] == ["base model, no adapters", "#0: Corgi 0.36", "#1: Corgi 0.36"]
    saved = json.loads((tmp_path / "t-summary.json").read_text())
    with Image.open(saved["grid"]) as grid:
        image, labels = result_grid(result, {"a": "Corgi"})
        assert grid.size == image.size and labels == summary["grid_labels"]
    assert read_png_parameters(tmp_path / "t-00-seed1.png") == "p <lora:Corgi:0.36>"


def test_the_cli_writes_a_labelled_grid_and_prints_both_weights(tmp_path):
    """``python -m stylus_ui generate`` on the preview model and the small test catalog."""
    import subprocess
    import sys

    from tests.fakes.app_process import REPO, app_env
    from tests.fakes.web_catalog import free_port, write_catalog
    home = tmp_path / "stylus"
    write_catalog(home / "catalog")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "stylus_ui", "generate", "a corgi astronaut on the moon, watercolor",
                          "--n", "2", "--masks", "all", "--out", str(out)], cwd=str(REPO), capture_output=True,
                         text=True, env=app_env(home, free_port()), timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "recommended weight 0.8, applied weight 0.64" in run.stdout, run.stdout
    assert "applied weight = recommended weight x base weight 0.8" in run.stdout
    summary = json.loads((out / "stylus-summary.json").read_text())
    assert summary["grid_labels"][0] == "base model, no adapters"
    assert all(re.match(r"#\d: \w.* 0\.64", label) for label in summary["grid_labels"][1:]), summary["grid_labels"]
    assert any("differ only by seed" in n for n in summary["notices"])  # "all": the same mask twice
    with Image.open(summary["grid"]) as grid:  # base model + 2 variants: 2 columns of labelled cells, 2 rows
        assert grid.width == 2 * 256 + 3 * 8 and grid.height > 2 * 64
