"""A public instance (STYLUS_PUBLIC=1) as strangers meet it: they may select, compose and generate,
but not curate; curators sign in with the admin token or Hugging Face. Uploads are checked before
Gradio decodes them, and a user's mistake writes one log line, not a traceback.

One real ``python app.py`` process serves the module; the Hugging Face side of the login is a
local stand-in for ``/api/whoami-v2`` (Gradio's login runs against it off a Space).
"""
from __future__ import annotations

import io
import json
import re
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from catalog.store import CatalogStore
from tests.fakes.app_process import start_app
from tests.fakes.local_http import LocalServer

ADMIN = "adm-5f1e9c2d7b3a4e60"
CURATOR = "alice-curates"
HF_TOKEN = "hf_machine_login_9d8c7b6a"
CARD = "test-corgi"
REFUSED = "needs a signed-in curator"


class _JsonServer(LocalServer):
    """Answers every GET with ``body`` (JSON) and logs the paths asked for."""

    def __init__(self, body: dict) -> None:
        outer, data = self, json.dumps(body).encode()
        self.calls: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return

            def do_GET(self) -> None:
                outer.calls.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


def _whoami() -> _JsonServer:
    """``GET /api/whoami-v2``: the Hugging Face account of the machine's token is ``CURATOR``."""
    return _JsonServer({"type": "user", "name": CURATOR, "fullname": "Alice", "avatarUrl": "",
                        "auth": {"accessToken": {"role": "read"}}})


def _civitai() -> _JsonServer:
    """An empty Civitai API: an anonymous import must not reach it at all."""
    return _JsonServer({"items": [], "metadata": {}})


@pytest.fixture(scope="module")
def public_app(tmp_path_factory):
    whoami, civitai = _whoami(), _civitai()
    home = tmp_path_factory.mktemp("public")
    app = start_app(home, {"STYLUS_PUBLIC": "1", "STYLUS_ADMIN_TOKEN": ADMIN, "STYLUS_CURATORS": CURATOR,
                           "STYLUS_HF_LOGIN": "on", "HF_TOKEN": HF_TOKEN, "HF_ENDPOINT": whoami.url(""),
                           "HF_HUB_OFFLINE": "0", "STYLUS_FOLDER_IMPORT_ROOTS": str(home)})
    app.civitai = civitai
    app.whoami = whoami
    yield app
    app.stop()
    whoami.close()
    civitai.close()


def _card(app):
    with CatalogStore(app.home / "catalog") as store:
        return store.get(CARD)


def _refused(call) -> str:
    with pytest.raises(AppError) as err:
        call()
    return str(err.value)


def test_anonymous_users_select_but_cannot_curate_import_or_reindex(public_app):
    client = Client(public_app.url, verbose=False)
    before = _card(public_app)
    writes = {
        "/catalog_block": (CARD,),
        "/catalog_save": (CARD, "rewritten by a stranger", "style", "x", "y", 0.5, False, False, True, "n"),
        "/catalog_save_all": (CARD, "rewritten by a stranger", "style", "x", "y", 0.5, False, False, True, "n",
                              "thing", "style", [], "sfw"),
        "/on_import_api": ("", "", 1000),
        "/on_reindex": (),
        "/on_import_1": (str(public_app.home),),  # the folder import
        "/on_import_2": (str(public_app.home),),  # identify a folder's files on Civitai
    }
    for api_name, args in writes.items():
        message = _refused(lambda: client.predict(*args, api_name=api_name))
        assert REFUSED in message and "admin token" in message, (api_name, message)
    after = _card(public_app)
    assert (after.blocked, after.effective_description()) == (before.blocked, before.effective_description())
    assert public_app.civitai.calls == []
    # what strangers may do still works
    answer = client.predict("a corgi on the moon", 150, "offline", "", 3, "named", api_name="/select")
    assert any(c["id"] == CARD for c in answer["candidates"])


def test_admin_token_signs_in_one_session_only(public_app):
    client, stranger = Client(public_app.url, verbose=False), Client(public_app.url, verbose=False)
    assert "not right" in _refused(lambda: client.predict("adm-guess-0000000000", api_name="/curator_login"))
    assert REFUSED in _refused(lambda: client.predict(CARD, api_name="/catalog_block"))
    token_box, note, *_ = client.predict(ADMIN, api_name="/curator_login")
    assert token_box == "" and "Signed in as curator" in note
    client.predict(CARD, api_name="/catalog_block")
    assert _card(public_app).blocked
    assert REFUSED in _refused(lambda: stranger.predict(CARD, api_name="/catalog_unblock"))
    assert _card(public_app).blocked
    client.predict(CARD, api_name="/catalog_unblock")
    assert not _card(public_app).blocked
    assert _card(public_app).curation.edited_by == "web:admin"  # the catalog names the curator


def test_hugging_face_login_of_a_listed_curator(public_app):
    with httpx.Client(base_url=public_app.url, follow_redirects=False, timeout=30) as http:
        first = http.get("/login/huggingface")
        assert first.status_code in (302, 307), first.text
        callback = http.get(first.headers["location"])
        cookie = callback.headers.get("set-cookie", "")
    session = re.search(r"session=([^;]+)", cookie)
    assert session, cookie
    assert public_app.whoami.calls, "the login asked the hub who the token belongs to"
    curator = Client(public_app.url, verbose=False, headers={"Cookie": f"session={session.group(1)}"})
    curator.predict(CARD, api_name="/catalog_block")
    assert _card(public_app).blocked
    curator.predict(CARD, api_name="/catalog_unblock")
    assert not _card(public_app).blocked
    assert HF_TOKEN not in public_app.output()


def test_a_signed_in_user_who_is_not_listed_is_no_curator():
    from gradio import OAuthProfile

    from catalog.settings import Settings
    from stylus_ui.web import auth
    s = Settings(public=True, curators=[CURATOR], hf_login="on", admin_token=ADMIN)
    someone = OAuthProfile({"preferred_username": "mallory", "name": "M", "picture": "", "profile": ""})
    listed = OAuthProfile({"preferred_username": CURATOR, "name": "A", "picture": "", "profile": ""})
    assert auth.curator(s, {}, someone) is None
    assert auth.curator(s, {}, listed).name == CURATOR
    assert auth.curator(s.replace(public=False), {}, None).how == "private instance"
    assert auth.curator(s.replace(hf_login="off"), {}, listed) is None


def test_short_admin_token_is_refused_by_settings():
    from catalog.settings import Settings, SettingsError
    with pytest.raises(SettingsError, match="admin_token is 5 characters long; use at least 16"):
        Settings(admin_token="short")


# ---- uploads -------------------------------------------------------------------------------------
def _generate_args(image) -> tuple:
    """The image translation tab's Generate: prompt, negative, mapping, steps, guidance,
    seed, n, strategy, debias, width, height, image, strength."""
    return ("a corgi", "", {"headers": ["keyword", "adapter id", "name", "weight"], "data": []},
            2, 7.0, 0, 1, "one_hot_loras", "", 64, 64, image, 0.6)


def test_a_fake_png_in_image_translation_gets_a_clear_message(public_app, tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"this is not a PNG at all" * 10)
    client = Client(public_app.url, verbose=False)
    info = httpx.get(public_app.url + "gradio_api/info?all_endpoints=true").json()["named_endpoints"]
    generate = next(name for name, e in info.items() if name.startswith("/on_generate")
                    and any(p["label"].startswith("Input image") for p in e["parameters"]))
    message = _refused(lambda: client.predict(*_generate_args(handle_file(str(fake))), api_name=generate))
    assert "input image is not an image that can be read" in message, message


def test_uploads_are_checked_before_they_are_decoded(tmp_path):
    """A 5000x5000 image (a small file) is refused from its header by both image inputs."""
    import gradio as gr
    from gradio.data_classes import FileData, ImageData
    from gradio.components.image_editor import EditorData

    from catalog.settings import Settings
    from stylus_ui.web.uploads import checked
    big = tmp_path / "big.png"
    Image.new("L", (5000, 5000)).save(big)
    assert big.stat().st_size < 1_000_000
    s = Settings(home=tmp_path)
    with gr.Blocks():
        image = checked(gr.Image(type="filepath"), "input image", s)
        editor = checked(gr.ImageMask(type="numpy"), "image", s)
    with pytest.raises(gr.Error) as err:
        image.preprocess(ImageData(path=str(big), orig_name="big.png"))
    assert "input image is 5000x5000 = 25,000,000 pixels" in err.value.message
    with pytest.raises(gr.Error) as err:
        editor.preprocess(EditorData(background=FileData(path=str(big), orig_name="big.png"), layers=[],
                                     composite=None))
    assert "image is 5000x5000" in err.value.message
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64)).save(small)
    assert image.preprocess(ImageData(path=str(small), orig_name="small.png")) == str(small)


def test_a_mask_of_another_size_says_so():
    from stylus_ui.web.images import editor_to_image_and_mask
    background = np.zeros((64, 64, 3), dtype=np.uint8)
    layer = np.zeros((32, 48, 4), dtype=np.uint8)
    layer[..., 3] = 255
    with pytest.raises(ValueError, match="mask layer 1 is 48x32 but the image is 64x64"):
        editor_to_image_and_mask({"background": background, "layers": [layer]}, (64, 64))


# ---- logs ------------------------------------------------------------------------------------------
def test_user_errors_log_one_line_and_no_traceback(public_app):
    client = Client(public_app.url, verbose=False)
    _refused(lambda: client.predict("", 150, "offline", "", 3, "named", api_name="/select"))
    _refused(lambda: client.predict("a cat", None, "[]", 2, 7.0, 0, 1, "nope", "", 64, 64, api_name="/generate"))
    log = public_app.output()
    assert "Traceback" not in log, log[-3000:]
    refused = [line for line in log.splitlines() if ": refused: " in line]
    assert any("prompt is empty" in line for line in refused), log[-2000:]
    assert any("mask_strategy" in line for line in refused), log[-2000:]


# ---- the page --------------------------------------------------------------------------------------
@pytest.mark.browser
def test_catalog_tab_is_read_only_for_strangers_and_opens_after_sign_in(public_app, page):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(public_app.url)
    page.get_by_role("tab", name="Catalog").click()
    note = page.locator("#catalog-access")
    expect(note).to_contain_text("Read-only", timeout=60_000)
    expect(note).to_contain_text("only curators can edit")
    expect(page.locator("#catalog-save")).to_be_disabled()
    expect(page.locator("#catalog-edit-description textarea")).to_be_disabled()
    page.screenshot(path=str(artifacts / "public-catalog-read-only.png"), full_page=True)
    page.locator("#catalog-sign-in").get_by_text("Curator sign-in").click()
    page.locator("#catalog-admin-token input").fill(ADMIN)
    page.locator("#catalog-sign-in-btn").click()
    expect(note).to_contain_text("Signed in as curator", timeout=30_000)
    expect(page.locator("#catalog-save")).to_be_enabled()
    expect(page.locator("#catalog-edit-description textarea")).to_be_editable()
    page.screenshot(path=str(artifacts / "public-catalog-curator.png"), full_page=True)
