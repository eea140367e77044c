"""The web app in a real browser (Playwright + Debian's Chromium), on a temp catalog and the
untrained preview model. Screenshots of every tab go to test-artifacts/ (look at them)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes.web_catalog import launched_app, write_catalog

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
EXAMPLE = REPO / "assets" / "example.png"
TIMEOUT = 90_000  # ms: the first calls load the embedder and build the preview model on shared cores
expect.set_options(timeout=TIMEOUT)


@pytest.fixture
def app(page, app_url):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    page.goto(app_url)
    expect(page.locator("#txt2img-prompt textarea")).to_be_visible()
    page.dialogs = dialogs
    return page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def captions(page, mode: str) -> list[str]:
    return page.locator(f"#{mode}-gallery .caption-label").all_inner_texts()


def wait_for_gallery(page, mode: str, count: int) -> None:
    expect(page.locator(f"#{mode}-gallery .thumbnail-item")).to_have_count(count, timeout=TIMEOUT)
    expect(page.locator(f"#{mode}-timings")).to_contain_text("Timings", timeout=TIMEOUT)


def set_number(field, value: int) -> None:
    """Type ``value`` into a number field and commit it (Tab). A field in an accordion that has just
    opened can still take its first value back from the page while it mounts, so the typing is
    repeated until the field keeps the number (a few tries, then the usual failure)."""
    expect(field).to_be_editable()
    for _ in range(4):
        field.fill(str(value))
        field.press("Tab")  # commit the number (change event) before generating
        try:
            expect(field).to_have_value(str(value), timeout=3_000)
            field.page.wait_for_timeout(300)
            if field.input_value() == str(value):
                return
        except AssertionError:
            pass
    expect(field).to_have_value(str(value))


def mapping_rows(page, mode: str):
    return page.locator(f"#{mode}-mapping [role=row][data-index]")


def mapping_cell(page, mode: str, row: int, col: int):
    return page.locator(f"#{mode}-mapping").get_by_test_id(f"cell-{row}-{col}")


def test_text_to_image_select_edit_and_regenerate(app):
    page = app
    page.locator("#txt2img-prompt textarea").fill("a corgi astronaut on the moon, watercolor")
    page.locator("#txt2img-select").click()
    cards = page.locator("#txt2img-cards")
    expect(cards).to_contain_text("adapters retrieved")
    expect(cards).to_contain_text("Corgi Dog")
    expect(cards.locator(".stylus-card-why").first).to_contain_text("why:")
    expect(mapping_cell(page, "txt2img", 0, 1)).to_contain_text("test-")
    rows_before = mapping_rows(page, "txt2img").count()
    assert rows_before >= 2

    page.locator("#txt2img-advanced").click()
    set_number(page.get_by_label("Variants").first, 2)
    page.get_by_label("Mask strategy").first.click()
    page.get_by_role("option", name="all").click()
    page.locator("#txt2img-generate").click()
    wait_for_gallery(page, "txt2img", 2)
    first = captions(page, "txt2img")
    expect(page.locator("#txt2img-baseline img")).to_be_visible()
    shot(page, "text-to-image")

    # edit the first weight, remove the second adapter, regenerate: the captions follow
    cell = mapping_cell(page, "txt2img", 0, 3)
    cell.dblclick()
    cell.locator("textarea").fill("1.5")
    cell.locator("textarea").press("Enter")
    expect(cell).to_contain_text("1.5")
    removed = mapping_cell(page, "txt2img", 1, 2).inner_text().strip()
    page.locator("#txt2img-remove-choice input").click()
    page.get_by_role("option").nth(1).click()
    page.locator("#txt2img-remove").click()
    expect(page.locator("#txt2img-mapping-note")).to_contain_text(f"Removed {removed}")
    expect(mapping_rows(page, "txt2img")).to_have_count(rows_before - 1)
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-gallery .caption-label").first).not_to_have_text(first[0], timeout=TIMEOUT)
    after = captions(page, "txt2img")
    assert all(removed not in c for c in after), after
    assert re.search(r"1\.20", after[0]), after  # 1.5 x base weight 0.8, alone in its topic

    page.locator("#txt2img-gallery .thumbnail-item").first.click()
    expect(page.locator("#txt2img-details")).to_contain_text("<lora:")
    expect(page.locator("#txt2img-download")).to_contain_text(".png")
    assert page.dialogs == []


def test_add_any_catalog_adapter_and_readable_edit_errors(app):
    page = app
    page.locator("#txt2img-prompt textarea").fill("a corgi knight on the moon, watercolor")
    page.locator("#txt2img-select").click()
    expect(mapping_cell(page, "txt2img", 0, 1)).to_contain_text("test-")
    rows = mapping_rows(page, "txt2img").count()
    page.locator("#txt2img-add-search textarea, #txt2img-add-search input").first.fill("pixel")
    page.locator("#txt2img-add-search textarea, #txt2img-add-search input").first.press("Enter")
    expect(page.locator("#txt2img-add-choice input")).to_have_value(re.compile("Pixel Art"))
    page.locator("#txt2img-add-keyword textarea, #txt2img-add-keyword input").first.fill("knight")
    page.locator("#txt2img-add").click()
    expect(mapping_rows(page, "txt2img")).to_have_count(rows + 1)
    expect(mapping_cell(page, "txt2img", rows, 1)).to_contain_text("test-pixel")

    cell = mapping_cell(page, "txt2img", 0, 3)
    cell.dblclick()
    cell.locator("textarea").fill("7")
    cell.locator("textarea").press("Enter")
    page.locator("#txt2img-generate").click()
    status = page.locator("#txt2img-status")  # one message, by the buttons that sent the request
    expect(status).to_contain_text("outside [-2.0, 2.0]")
    expect(status).not_to_contain_text("Traceback")
    assert page.locator(".toast-body").count() == 0


def test_translation_with_an_uploaded_image(app):
    page = app
    open_tab(page, "Image translation")
    page.locator("#img2img-image input[type=file]").set_input_files(str(EXAMPLE))
    page.locator("#img2img-prompt textarea").fill("a neon city at night")
    page.locator("#img2img-run").click()
    expect(page.locator("#img2img-cards")).to_contain_text("Neon City")
    wait_for_gallery(page, "img2img", 4)
    shot(page, "image-translation")


def test_inpainting_with_a_mask_drawn_on_the_canvas(app):
    page = app
    open_tab(page, "Inpainting")
    page.locator("#inpaint-prompt textarea").fill("a pixel art house")
    editor = page.locator("#inpaint-editor")
    editor.locator("input[type=file]").first.set_input_files(str(EXAMPLE))
    canvas = editor.locator("canvas").first
    expect(canvas).to_be_visible()

    brush = editor.get_by_role("button", name=re.compile("brush", re.I))
    if brush.count():
        brush.first.click()
    empty = page.get_by_text("the mask is empty")
    for _attempt in range(3):  # the editor loads the upload and commits strokes asynchronously:
        page.wait_for_timeout(1000)  # a stroke drawn before it is ready is lost (and then said so)
        # Where the image sits depends on the zoom the editor picked: fitted to the canvas, or (when
        # it measured the canvas before layout, on a loaded machine) 33 % near the top left. Start
        # in the middle (the canvas edges are under the label and toolbar) and zigzag over the
        # canvas so that the stroke crosses the image either way.
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        for row in range(10):
            y = box["y"] + box["height"] * (0.14 + row * 0.08)
            for x in ((0.9, 0.1) if row % 2 else (0.1, 0.9)):
                page.mouse.move(box["x"] + box["width"] * x, y, steps=6)
        page.mouse.up()
        page.wait_for_timeout(1500)
        page.locator("#inpaint-run").click()
        gallery = page.locator("#inpaint-gallery .thumbnail-item")
        for _ in range(180):
            if gallery.count() == 4 or empty.count():
                break
            page.wait_for_timeout(500)
        if gallery.count() == 4:
            break
        assert empty.count(), "neither images nor the empty-mask message appeared"
        for close in page.get_by_test_id("toast-close").all():
            close.click()
        expect(empty).to_have_count(0, timeout=15_000)  # error toasts also close themselves (10 s)
    wait_for_gallery(page, "inpaint", 4)
    shot(page, "inpainting")


def test_untrusted_description_does_not_execute(app):
    page = app
    page.locator("#txt2img-prompt textarea").fill("xss trigger injection on the moon")
    page.locator("#txt2img-select").click()
    expect(page.locator("#txt2img-cards")).to_contain_text("Injected Card")
    open_tab(page, "Catalog")
    page.locator("#catalog-card-id textarea, #catalog-card-id input").first.fill("test-xss")
    page.locator("#catalog-open").click()
    detail = page.locator("#catalog-detail")
    expect(detail).to_contain_text("<img src=x onerror=")  # shown as text, not run
    assert detail.locator("img[src=x], script").count() == 0
    page.wait_for_timeout(500)
    assert page.evaluate("window.__stylus_xss") is None
    assert page.dialogs == []


def test_catalog_edit_survives_a_restart(page, tmp_path):
    home = tmp_path / "stylus"
    write_catalog(home / "catalog")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    with launched_app(home) as url:
        page.goto(url)
        open_tab(page, "Catalog")
        page.locator("#catalog-search textarea, #catalog-search input").first.fill("neon")
        page.locator("#catalog-search-btn").click()
        expect(page.locator("#catalog-results")).to_contain_text("Neon City")
        page.locator("#catalog-results").get_by_test_id("cell-0-1").click()
        expect(page.locator("#catalog-detail")).to_contain_text("Neon City")
        page.locator("#catalog-edit-description textarea").fill("Curated: rainy neon streets.")
        page.locator("#catalog-edit-tags textarea, #catalog-edit-tags input").first.fill("neon, rain")
        page.locator("#catalog-save").click()
        expect(page.locator("#catalog-edit-status")).to_contain_text("Saved test-neon")
        page.locator("#catalog-block").click()
        expect(page.locator("#catalog-edit-status")).to_contain_text("blocked")
        shot(page, "catalog")
        open_tab(page, "About / Settings")
        expect(page.locator("#about-status")).to_contain_text("cards")
        shot(page, "about")
    with launched_app(home) as url:
        page.goto(url)
        open_tab(page, "Catalog")
        page.locator("#catalog-card-id textarea, #catalog-card-id input").first.fill("test-neon")
        page.locator("#catalog-open").click()
        detail = page.locator("#catalog-detail")
        expect(detail).to_contain_text("Curated: rainy neon streets.")
        expect(detail).to_contain_text("blocked")
        expect(page.locator("#catalog-edit-blocked input")).to_be_checked()


def test_gradio_client_generate(app_url):
    from gradio_client import Client
    client = Client(app_url, verbose=False)
    gallery, info = client.predict("a corgi on the moon", "", None, 2, 7.0, 1, 2, "one_hot_loras", "",
                                   64, 64, api_name="/generate")
    assert len(gallery) == 3 and info["preview_model"] is True
    assert info["composition"]["topics"], "an empty mapping selects adapters first"
