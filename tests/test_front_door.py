"""The first minutes of a new user: what the About tab says, card images offline, readable
errors, messages that fit the front end they appear in, and the small things a new user trips on.

Browser checks drive the real app in Chromium (screenshots in test-artifacts/)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from catalog.card import AdapterCard, ExampleImage
from tests.fakes.web_catalog import write_catalog

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


# ---- card images ------------------------------------------------------------------------------------
def _candidate(preview: str) -> dict:
    return {"id": "c1", "name": "Card", "category": "style", "weight": 0.8, "score": 1.0, "tags": [],
            "trigger_words": [], "preview": preview, "why": "", "description": ""}


def test_card_images_are_backgrounds_over_a_placeholder_never_img_tags():
    from stylus_ui.web import render
    html = render.card_item_html(_candidate("https://image.civitai.com/x/a.jpeg"))
    assert "<img" not in html
    assert 'url(&quot;https://image.civitai.com/x/a.jpeg&quot;), var(--stylus-placeholder)' in html
    assert "stylus-placeholder" in render.card_item_html(_candidate(""))  # no image: the placeholder alone
    card = AdapterCard(id="c2", source="civitai", name="C",
                       examples=[ExampleImage(url="https://image.civitai.com/x/b.png", prompt="p")])
    assert "<img" not in render.card_detail_html(card) and "b.png" in render.card_detail_html(card)


def test_a_card_image_url_cannot_leave_its_css_url():
    from stylus_ui.web import render
    html = render.card_item_html(_candidate('https://x.test/a.png"), url(https://evil.test/t.png'))
    assert "evil.test" in html and '"), url(' not in html and "%22%29" in html
    assert "background-image" not in render.card_item_html(_candidate("javascript:alert(1)"))


# ---- messages ---------------------------------------------------------------------------------------
def test_about_status_shows_the_resolved_device_and_dtype(tmp_path):
    from catalog.settings import Settings
    from components.engine import StylusEngine
    from stylus_ui.web.about_tab import full_status
    write_catalog(tmp_path / "catalog")
    text = full_status(StylusEngine(Settings(home=tmp_path, device="auto", dtype="auto")))
    assert "device `cpu` (setting `auto`)" in text and "dtype `float32` (setting `auto`)" in text


def test_llm_composer_without_a_model_speaks_to_every_front_end():
    from components.composer import ComposeOptions, compose
    from components.types import StylusError
    with pytest.raises(StylusError) as err:
        compose("a cat", [], ComposeOptions(composer="llm", llm_model=""))
    message = str(err.value)
    assert "llm_model" in message and "STYLUS_LLM_MODEL" in message and "--" not in message


def test_cli_generate_refuses_an_empty_prompt(tmp_path):
    write_catalog(tmp_path / "catalog")
    env = {"STYLUS_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "stylus_ui", "generate", "  ", "--out", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "prompt is empty" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


# ---- the page ---------------------------------------------------------------------------------------
@pytest.fixture
def page_on_app(page, app_url):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.set_default_timeout(90_000)
    page.goto(app_url)
    return page


@pytest.mark.browser
def test_about_catalog_and_inpainting_read_well(page_on_app):
    from playwright.sync_api import expect
    page = page_on_app
    ARTIFACTS.mkdir(exist_ok=True)
    expect(page.locator("#preview-banner")).to_have_count(1)
    page.get_by_role("tab", name="About / Settings").click()
    expect(page.locator("#about-status")).to_contain_text("device cpu (setting auto)", timeout=90_000)
    assert page.locator(".stylus-banner").count() == 1  # the preview banner once, above the tabs
    page.screenshot(path=str(ARTIFACTS / "about-tab.png"), full_page=True)

    page.get_by_role("tab", name="Catalog").click()
    header = page.locator("#catalog-results thead th").filter(has_text="downloads").first
    expect(header).to_be_visible()
    lines = page.evaluate("""() => [...document.querySelectorAll('#catalog-results thead th span.header')]
        .map(span => { const range = document.createRange(); range.selectNodeContents(span);
                       return [span.innerText.trim(), range.getClientRects().length]; })""")
    assert lines and all(n == 1 for _, n in lines), lines  # every header on one line: no "download s"
    page.locator("#catalog-card-id input, #catalog-card-id textarea").first.fill("test-corgi")
    page.locator("#catalog-open").click()
    expect(page.locator("#catalog-detail")).to_contain_text("Corgi Dog")
    assert page.locator("#catalog-detail img, #catalog-results img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "catalog-tab.png"), full_page=True)

    page.get_by_role("tab", name="Inpainting").click()
    help_line = page.locator("#inpaint-help")
    expect(help_line).to_contain_text("paint white over the part to repaint")
    box, editor = help_line.bounding_box(), page.locator("#inpaint-editor").bounding_box()
    assert box["y"] + box["height"] <= editor["y"] + 1  # above the editor, not under its toolbar
    page.screenshot(path=str(ARTIFACTS / "inpainting-tab.png"), full_page=True)


@pytest.mark.browser
def test_a_refused_request_keeps_the_images_and_says_why_by_its_buttons(page_on_app):
    from playwright.sync_api import expect
    page = page_on_app
    page.locator("#txt2img-prompt textarea").fill("a corgi on the moon")
    page.locator("#txt2img-run").click()
    thumbs = page.locator("#txt2img-gallery .thumbnail-item")
    expect(thumbs).to_have_count(4, timeout=120_000)
    expect(page.locator("#txt2img-timings")).to_contain_text("Timings", timeout=120_000)
    before = thumbs.first.locator("img").get_attribute("src")
    page.locator("#txt2img-prompt textarea").fill("   ")
    page.locator("#txt2img-run").click()  # Select + generate: the select is refused, nothing is generated
    status = page.locator("#txt2img-status")
    expect(status).to_contain_text("Type a prompt first.")
    expect(thumbs).to_have_count(4)
    assert thumbs.first.locator("img").get_attribute("src") == before
    assert page.locator(".toast-body").count() == 0
    assert page.locator("#txt2img-gallery").get_by_text("Error", exact=True).count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "refused-request.png"), full_page=True)
    page.locator("#txt2img-prompt textarea").fill("a corgi on the moon")
    page.locator("#txt2img-select").click()  # a request that succeeds clears the message
    expect(status).not_to_contain_text("Type a prompt first.")
