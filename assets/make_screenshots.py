"""Take the README's screenshots from the real app on the starter catalog, in Chromium.

    python assets/make_screenshots.py            # writes assets/screenshot*.png

Starts ``python app.py`` with a fresh STYLUS_HOME (the starter catalog is seeded, preview model),
runs a real prompt through *Select + generate*, then opens a card in the Catalog tab and the
Inpainting tab. Needs Chromium (/usr/bin/chromium) and the project's venv.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = "a castle on a hill that looks like Studio Ghibli, watercolor"
TIMEOUT_MS = 180_000


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    from tests.fakes.app_process import start_app

    with tempfile.TemporaryDirectory() as tmp:
        app = start_app(Path(tmp) / "home", catalog=False)  # seeds the starter catalog
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(TIMEOUT_MS)
                expect.set_options(timeout=TIMEOUT_MS)
                page.goto(app.url)
                page.locator("#txt2img-prompt textarea").fill(PROMPT)
                page.locator("#txt2img-run").click()
                expect(page.locator("#txt2img-gallery .thumbnail-item")).to_have_count(4)
                expect(page.locator("#txt2img-timings")).to_contain_text("Timings")
                page.locator("#txt2img-gallery .thumbnail-item").first.click()
                page.locator("#txt2img-grid img").scroll_into_view_if_needed()
                page.wait_for_timeout(1500)
                page.screenshot(path=str(REPO / "assets" / "screenshot.png"), full_page=True)

                page.get_by_role("tab", name="Catalog").click()
                first = page.locator("#catalog-results").get_by_test_id("cell-0-0")
                expect(first).to_be_visible()
                most_downloaded = first.inner_text().strip()
                page.locator("#catalog-search input, #catalog-search textarea").first.fill("ghibli")
                page.locator("#catalog-search-btn").click()
                expect(first).not_to_have_text(most_downloaded)  # the search's first row
                page.locator("#catalog-card-id input, #catalog-card-id textarea").first.fill(first.inner_text().strip())
                page.locator("#catalog-open").click()
                expect(page.locator("#catalog-detail h3")).to_be_visible()
                page.wait_for_timeout(1000)
                page.screenshot(path=str(REPO / "assets" / "screenshot-catalog.png"), full_page=True)

                page.get_by_role("tab", name="Inpainting").click()
                page.locator("#inpaint-prompt textarea").fill("a red dragon kite in the sky")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(REPO / "assets" / "screenshot-inpainting.png"), full_page=True)
                browser.close()
        finally:
            app.stop()
    print("wrote assets/screenshot.png, assets/screenshot-catalog.png, assets/screenshot-inpainting.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
