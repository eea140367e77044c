"""Weights and grids a person can read, in a real browser (Playwright + Debian's Chromium) against a
real ``python app.py`` on the preview model and the small test catalog plus one adapter with a very
long name. Screenshots go to test-artifacts/ (look at them)."""
from __future__ import annotations

import re

import pytest

from tests.test_browser import TIMEOUT, captions, mapping_cell, mapping_rows, set_number, shot, wait_for_gallery

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

LONG_ID = "test-longname"
LONG_NAME = ("Extraordinarily Detailed Lighthouse Painting Style With Salt Spray, Soft Edges and "
             "Paper Texture (Seaside Edition v2)")
RULE = "applied weight = recommended weight x base weight 0.8 / adapters on in its topic"
MODE = "txt2img"
HEADER = "keyword", "adapter id", "name", "recommended weight", "applied weight"


@pytest.fixture(scope="module")
def app_process(tmp_path_factory):
    """``python app.py`` on the test catalog plus a card with a long name."""
    import torch
    torch.set_num_threads(1)
    from catalog.store import CatalogStore
    from tests.fakes.app_process import start_app
    from tests.fakes.web_catalog import card, write_catalog
    home = tmp_path_factory.mktemp("weights-grid") / "stylus"
    write_catalog(home / "catalog")
    long = card(LONG_ID, LONG_NAME, "style", ["lighthouse", "seaside"], ["lghths"], "A lighthouse painting style.")
    with CatalogStore(home / "catalog") as store:
        with store.transaction() as tx:
            store.upsert(long, tx)
            store.set_refined(long.id, long.refined, tx)
    app = start_app(home)
    yield app
    app.stop()


@pytest.fixture
def page_at_app(page, app_process):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    page.goto(app_process.url)
    expect(page.locator(f"#{MODE}-prompt textarea")).to_be_visible()
    return page


def select(page, prompt: str) -> None:
    page.locator(f"#{MODE}-prompt textarea").fill(prompt)
    page.locator(f"#{MODE}-select").click()
    expect(mapping_cell(page, MODE, 0, 1)).to_contain_text("test-")


def set_variants(page, n: int, strategy: str) -> None:
    page.locator(f"#{MODE}-advanced").click()
    set_number(page.get_by_label("Variants").first, n)
    page.get_by_label("Mask strategy").first.click()
    page.get_by_role("option", name=strategy).click()


def edit_cell(page, row: int, col: int, value: str) -> None:
    cell = mapping_cell(page, MODE, row, col)
    cell.dblclick()
    cell.locator("textarea").fill(value)
    cell.locator("textarea").press("Enter")
    expect(cell).to_contain_text(value)


def see_grid(page):
    """The labelled grid's image, scrolled to (it loads lazily) and shown."""
    grid = page.locator(f"#{MODE}-grid img")
    grid.scroll_into_view_if_needed()
    expect(grid).to_be_visible()
    return grid


def table(page) -> list[list[str]]:
    rows = mapping_rows(page, MODE).count()
    return [[mapping_cell(page, MODE, r, c).inner_text().strip() for c in range(5)] for r in range(rows)]


def test_select_shows_recommended_and_applied_weights_with_the_rule(page_at_app):
    page = page_at_app
    select(page, "a corgi astronaut on the moon, watercolor")
    mapping = page.locator(f"#{MODE}-mapping")
    for name in HEADER:
        expect(mapping.get_by_role("columnheader", name=name, exact=True).first).to_be_visible()
    expect(page.locator(f"#{MODE}-mapping-note")).to_contain_text(RULE)
    rows = table(page)
    per_topic = {k: sum(1 for r in rows if r[0] == k) for k, *_ in rows}
    for keyword, _id, _name, recommended, applied in rows:  # the rule, with every adapter on
        assert float(applied) == pytest.approx(round(float(recommended) * 0.8 / per_topic[keyword], 3), abs=1e-3)
    shot(page, "weights-mapping-after-select")


def test_an_edited_applied_weight_is_what_the_image_gets(page_at_app):
    page = page_at_app
    select(page, "a corgi astronaut on the moon, watercolor")
    set_variants(page, 2, "all")
    name = mapping_cell(page, MODE, 0, 2).inner_text().strip()
    recommended = mapping_cell(page, MODE, 0, 3).inner_text().strip()
    edit_cell(page, 0, 4, "0.45")
    page.locator(f"#{MODE}-generate").click()
    wait_for_gallery(page, MODE, 2)
    assert all(f"{name} 0.45" in c for c in captions(page, MODE)), captions(page, MODE)
    # the fixed applied weight stays in the table, the recommended one is unchanged
    expect(mapping_cell(page, MODE, 0, 4)).to_have_text("0.45")
    expect(mapping_cell(page, MODE, 0, 3)).to_have_text(recommended)
    expect(page.locator(f"#{MODE}-download")).to_contain_text("-grid")  # the labelled grid's PNG
    page.locator(f"#{MODE}-gallery .thumbnail-item").first.click()
    details = page.locator(f"#{MODE}-details")
    expect(details).to_contain_text(re.compile(r"<lora:[^:>]+:0\.45>"))
    expect(details).to_contain_text(RULE)
    expect(details.locator(".cm-lineWrapping")).to_have_count(1)  # long A1111 lines wrap
    expect(details.get_by_role("button", name=re.compile("copy", re.I))).to_be_visible()
    grid = see_grid(page)
    assert grid.evaluate("img => img.naturalWidth") > 2 * 256  # base model + 2 variants, labelled cells
    expect(page.locator(f"#{MODE}-timings")).to_contain_text("differ only by seed")  # "all": the same mask twice
    shot(page, "weights-applied-edited-and-grid")


def test_long_names_keep_the_weights_and_captions_readable(page_at_app):
    page = page_at_app
    select(page, "a corgi on the moon")
    search = page.locator(f"#{MODE}-add-search textarea, #{MODE}-add-search input").first
    search.fill("lighthouse")
    search.press("Enter")
    expect(page.locator(f"#{MODE}-add-choice input")).to_have_value(re.compile("Extraordinarily"))
    page.locator(f"#{MODE}-add-keyword textarea, #{MODE}-add-keyword input").first.fill("moon")
    page.locator(f"#{MODE}-add").click()
    expect(page.locator(f"#{MODE}-mapping-note")).to_contain_text(f"Added {LONG_NAME}")
    expect(page.locator(f"#{MODE}-mapping")).to_contain_text(LONG_ID)
    row = next(i for i, r in enumerate(table(page)) if r[1] == LONG_ID)
    mapping = page.locator(f"#{MODE}-mapping").bounding_box()
    for col in (3, 4):  # the weight columns are inside the table's box, not scrolled away
        box = mapping_cell(page, MODE, row, col).bounding_box()
        assert mapping["x"] <= box["x"] and box["x"] + box["width"] <= mapping["x"] + mapping["width"] + 1, (col, box)
        expect(mapping_cell(page, MODE, row, col)).to_have_text(re.compile(r"^\s*-?\d+(\.\d+)?\s*$"))
    expect(mapping_cell(page, MODE, row, 2)).to_have_text(LONG_NAME)  # wrapped, whole
    set_variants(page, 2, "all")
    page.locator(f"#{MODE}-generate").click()
    wait_for_gallery(page, MODE, 2)
    caption = page.locator(f"#{MODE}-gallery .caption-label").first
    expect(caption).to_be_visible()
    expect(caption).to_contain_text(LONG_NAME)
    overflow = caption.evaluate("e => [e.scrollWidth - e.clientWidth, getComputedStyle(e).textOverflow]")
    assert overflow[0] <= 1 and overflow[1] != "ellipsis", overflow  # the caption is not cut
    see_grid(page)
    shot(page, "weights-long-name")


def test_generate_with_an_empty_mapping_selects_first_and_says_so(page_at_app):
    page = page_at_app
    expect(page.locator(f"#{MODE}-mapping")).to_contain_text("an empty mapping: Generate selects adapters first")
    assert mapping_rows(page, MODE).count() == 0
    page.locator(f"#{MODE}-prompt textarea").fill("a corgi astronaut on the moon, watercolor")
    page.locator(f"#{MODE}-generate").click()
    note = page.locator(f"#{MODE}-mapping-note")
    expect(note).to_contain_text("The mapping was empty, so Generate selected adapters first")
    expect(mapping_cell(page, MODE, 0, 1)).to_contain_text("test-")
    expect(page.locator(f"#{MODE}-cards")).to_contain_text("adapters retrieved")
    wait_for_gallery(page, MODE, 4)
    assert any(re.search(r"\d\.\d\d", c) for c in captions(page, MODE)), captions(page, MODE)
    see_grid(page)
    shot(page, "weights-empty-mapping-generate")


def test_api_mapping_rows_carry_an_applied_weight_that_compose_honours(app_process):
    """/select's rows say ``applied_weight: null`` (the rule); a row sent back with a number fixes it."""
    from gradio_client import Client
    client = Client(app_process.url, verbose=False)
    selected = client.predict(prompt="a corgi astronaut on the moon, watercolor", api_name="/select")
    rows = selected["mapping"]
    assert rows and all(r["applied_weight"] is None for r in rows), rows
    composed = client.predict(prompt="a corgi astronaut on the moon, watercolor", mapping=rows, num_images=1,
                              mask_strategy="all", api_name="/compose")
    rule = composed["variants"][0]["weights"]
    rows[0]["applied_weight"] = 0.45
    fixed = client.predict(prompt="a corgi astronaut on the moon, watercolor", mapping=rows, num_images=1,
                           mask_strategy="all", api_name="/compose")
    weights = fixed["variants"][0]["weights"]
    assert weights[rows[0]["id"]] == 0.45 and rule[rows[0]["id"]] != 0.45
    assert {k: v for k, v in weights.items() if k != rows[0]["id"]} == {
        k: v for k, v in rule.items() if k != rows[0]["id"]}
    assert fixed["composition"]["topics"][0]["adapters"][0]["applied_weight"] == 0.45
