"""Security: downloads, files the app serves, folder import, uploads, secrets, untrusted text.

The web checks run against a real ``python app.py`` process with tokens in its environment;
remote services are local fakes on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from PIL import Image

from catalog.card import AdapterCard, AdapterFile
from catalog.settings import Settings
from components.generator.adapters import cache_path, fetch_card_file
from components.generator.downloads import DownloadError, host_allowed
from components.types import StylusError
from tests.fakes.app_process import REPO, app_env, start_app
from tests.fakes.local_http import LocalServer
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.web_catalog import write_catalog

TOKENS = {"STYLUS_CIVITAI_TOKEN": "civ-tok-7f3a9c1e55", "STYLUS_LLM_API_KEY": "sk-llm-key-4b8d2e9f71",
          "STYLUS_HF_TOKEN": "hf_tok_c0ffee9a3b21", "OPENAI_API_KEY": "sk-env-openai-5d6e7f8a9b"}
PAYLOAD = b"stylus-test-adapter" * 500


# ---- downloads ---------------------------------------------------------------------------------
class _FileServer(LocalServer):
    """/file: PAYLOAD; /nolength: PAYLOAD without Content-Length; /away: redirect to localhost."""

    def __init__(self) -> None:
        outer = self
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                return

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                if self.path == "/away":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{outer.port}/file")
                    self.end_headers()
                    return
                self.send_response(200)
                if self.path != "/nolength":
                    self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                self.wfile.write(PAYLOAD)

        super().__init__(Handler)


@pytest.fixture
def file_server():
    server = _FileServer()
    yield server
    server.close()


def _card(url: str, name: str = "a.safetensors", sha: str | None = hashlib.sha256(PAYLOAD).hexdigest()):
    return AdapterCard(id="sec-1", source="civitai", name="sec",
                       files=[AdapterFile(name=name, sha256=sha, download_url=url, primary=True)])


@pytest.mark.parametrize("url, why", [
    ("http://civitai.com/a.safetensors", "only https"),
    ("ftp://civitai.com/a.safetensors", "only https"),
    ("file:///etc/passwd", "only https"),
    ("http://127.0.0.1:9/a.safetensors", "not in the download allow-list"),  # loopback, not listed
    ("https://evil.example/civitai.com/a", "not in the download allow-list"),
    ("https://civitai.com.evil.example/a", "not in the download allow-list"),
    ("https://evilcivitai.com/a", "not in the download allow-list"),
    ("https://civitai.com@evil.example/a", "user info"),
    ("https://evil.example\\@civitai.com/a", "user info"),
    ("https://10.0.0.1/a", "not in the download allow-list"),
])
def test_download_urls_outside_the_policy_are_refused(url, why):
    with pytest.raises(DownloadError, match=why):
        host_allowed(url, ["civitai.com", "huggingface.co"])


def test_loopback_http_only_when_listed_and_ip_not_matched_by_suffix():
    assert host_allowed("http://127.0.0.1:8/x", ["127.0.0.1"]) == "127.0.0.1"
    assert host_allowed("https://cdn.civitai.com/x", ["civitai.com"]) == "cdn.civitai.com"
    with pytest.raises(DownloadError, match="allow-list"):
        host_allowed("http://127.0.0.1:8/x", ["0.0.1"])  # an IP must be listed exactly
    assert "civitai.com" in Settings(home=Path("/tmp/x")).download_hosts  # configurable, listed by default


def test_card_file_name_and_hash_cannot_escape_the_cache(tmp_path, file_server):
    settings = Settings(home=tmp_path / "s", download_hosts=["127.0.0.1"])
    loras = (Path(settings.cache_dir) / "loras").resolve()
    named = _card(file_server.url("/file"), name="../../evil.safetensors")
    forged = _card(file_server.url("/file"), name="../../evil.safetensors", sha="../../../evil")
    for card in (named, forged):
        assert cache_path(settings, card).resolve().parent == loras
    notices: list[str] = []
    source = fetch_card_file(settings, named, notices)
    assert source is not None and source.path.resolve().parent == loras and source.path.read_bytes() == PAYLOAD
    assert fetch_card_file(settings, forged, notices) is None  # a forged hash never verifies
    assert "SHA256 mismatch" in notices[-1]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [source.path], written  # nothing outside the cache, nothing unverified kept


def test_size_cap_holds_without_content_length(tmp_path, file_server):
    settings = Settings(home=tmp_path / "s", download_hosts=["127.0.0.1"], download_max_mb=0)
    notices: list[str] = []
    assert fetch_card_file(settings, _card(file_server.url("/nolength")), notices) is None
    assert "MB cap" in notices[0]
    assert not any((Path(settings.cache_dir) / "loras").glob("*"))


def test_redirect_to_an_unlisted_host_is_not_followed(tmp_path, file_server):
    settings = Settings(home=tmp_path / "s", download_hosts=["127.0.0.1"])
    notices: list[str] = []
    assert fetch_card_file(settings, _card(file_server.url("/away")), notices) is None
    assert "host 'localhost' is not in the download allow-list" in notices[0]
    assert file_server.paths == ["/away"]  # the redirect target was never requested


# ---- folder import -------------------------------------------------------------------------------
def test_folder_import_through_engine_and_cli_respects_roots_and_public(tmp_path):
    from components.engine import StylusEngine

    inside, outside = tmp_path / "loras", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    public = StylusEngine(Settings(home=tmp_path / "h1", public=True))
    with pytest.raises(StylusError, match="folder import is off on a public server"):
        public.catalog.import_folder(str(inside))
    rooted = StylusEngine(Settings(home=tmp_path / "h2", public=True, folder_import_roots=[str(inside)]))
    assert rooted.catalog.import_folder(str(inside)).skipped == []
    for folder in (outside, inside / ".." / "elsewhere"):
        with pytest.raises(Exception, match="not inside an allowed import root"):
            rooted.catalog.import_folder(str(folder))

    def cli(env: dict[str, str], folder: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stylus_ui", "catalog", "import", "folder", str(folder)],
                              cwd=REPO, env=app_env(tmp_path / "h3", 0, env), capture_output=True,
                              text=True, timeout=120)

    off = cli({"STYLUS_PUBLIC": "1"}, inside)
    assert off.returncode == 2 and "folder import is off on a public server" in off.stderr
    refused = cli({"STYLUS_FOLDER_IMPORT_ROOTS": str(inside)}, outside)
    assert refused.returncode == 2 and "not inside an allowed import root" in refused.stderr


# ---- uploads -------------------------------------------------------------------------------------
def _png(size=(100, 80)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, format="PNG")  # noise: does not compress away
    return buf.getvalue()


def test_uploads_malformed_or_too_large_are_refused_with_clear_messages(tmp_path):
    from components.engine import StylusEngine
    from components.types import GenerationRequest
    from stylus_ui.web.images import editor_to_image_and_mask, to_rgb

    truncated = tmp_path / "truncated.png"
    whole = _png((40, 40))
    truncated.write_bytes(whole[: len(whole) // 2])
    text = tmp_path / "notes.png"
    text.write_text("this is not an image", encoding="utf-8")
    big = tmp_path / "big.png"
    big.write_bytes(_png((100, 80)))
    settings = Settings(home=tmp_path / "h", max_upload_pixels=64 * 64, max_upload_mb=1)
    engine = StylusEngine(settings)

    def generate(image):
        return engine.generate(GenerationRequest(prompt="a cat", mode="img2img", init_image=image,
                                                 strength=0.5, steps=4, width=64, height=64))

    for path, message in ((truncated, "not an image that can be read"), (text, "not an image that can be read"),
                          (big, "100x80 = 8,000 pixels; the limit is 4,096 pixels")):
        with pytest.raises(StylusError, match=message):
            generate(str(path))
        with pytest.raises(StylusError, match=message):
            to_rgb(str(path), (64, 64), "input image", settings)
    heavy = tmp_path / "heavy.png"
    heavy.write_bytes(_png((60, 60)) + b"\0" * (2 * 2**20))
    with pytest.raises(StylusError, match="MB; the limit is 1 MB"):
        generate(str(heavy))
    with pytest.raises(StylusError, match="pixels"):
        generate(Image.new("RGB", (100, 80)))
    with pytest.raises(ValueError, match="the limit is 4,096 pixels"):
        editor_to_image_and_mask({"background": __import__("numpy").zeros((80, 100, 3), "uint8"),
                                  "layers": []}, (64, 64), settings)


# ---- secrets and untrusted text ------------------------------------------------------------------
def test_log_records_and_llm_errors_never_carry_a_token(caplog):
    from components.composer.llm import LLMComposer
    from components.composer.options import ComposeOptions
    from ground.redact import install_log_redaction, register_secrets
    from tests.retrieval_helpers import small_catalog
    from components.types import Candidate

    key = TOKENS["STYLUS_LLM_API_KEY"]
    register_secrets([key])
    install_log_redaction()
    try:
        raise RuntimeError(f"auth failed for {key}")
    except RuntimeError:
        logging.getLogger("stylus.test").exception("call with key %s failed", key)
    assert caplog.records and key not in caplog.text and "***" in caplog.text
    cands = [Candidate(card=c, score=1.0, rank=i + 1) for i, c in enumerate(small_catalog())]
    with FakeOpenAI() as server:
        server.default = __import__("tests.fakes.openai_server", fromlist=["FakeResponse"]).FakeResponse(
            status=401, body={"error": {"message": f"Incorrect API key provided: {key}", "type": "auth"}})
        comp = LLMComposer().compose("a samurai in armor", cands, ComposeOptions(
            composer="llm", llm_model="openai/fake", api_base=server.base_url, api_key=key, retries=0))
    assert comp.composer.startswith("offline") and "failed" in comp.notices[0]
    assert key not in json.dumps(comp.notices)


def test_every_render_path_escapes_untrusted_text():
    from components.types import Composition, Topic, TopicAdapter
    from stylus_ui.web import render
    from stylus_ui.web.catalog_tab import _report_md
    from stylus_ui.web.generation import mapping_note
    from tests.fakes.web_catalog import card
    from catalog.store import ImportReport

    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    c = card("evil-" + "x", evil, "style", [evil, "ok"], [evil], evil)
    c.examples[0].url = 'https://x.example/a.png" onerror="alert(3)'

    class Cand:
        card, score, rank, evidence = c, 1.0, 1, {"tags": [evil]}
        concepts = [{"concept": evil, "fits": True, "why": evil}]

    d = render.candidate_dict(Cand())
    comp = Composition(prompt=evil, topics=[Topic(keywords=[evil], adapters=[TopicAdapter(
        card_id=c.id, name=evil, weight=0.8, reason=evil)])], unassigned=[evil], composer=evil, notices=[evil],
        scores={"unassigned": {evil: evil}})
    report = ImportReport(notices=[evil], skipped=[(evil, evil)])
    outputs = {
        "card_item_html": render.card_item_html(d), "cards_html": render.cards_html([d], [evil]),
        "card_detail_html": render.card_detail_html(c), "timings_markdown": render.timings_markdown({evil: 1.0}, [evil]),
        "status_markdown": render.status_markdown({"settings": {k: evil for k in ("model", "device", "home")},
                                                   "catalog": evil}),
        "mapping_note": mapping_note(comp), "import_report": _report_md(report),
    }
    for name, html_text in outputs.items():
        assert "<script" not in html_text and "<img src=x" not in html_text, name
        assert 'onerror="alert' not in html_text, name
        assert "&lt;script&gt;" in html_text or "&lt;img" in html_text, name


def test_prompt_injection_cannot_pick_ids_outside_the_candidates(tmp_path):
    from components.engine import StylusEngine
    from tests.fakes.openai_server import FakeResponse

    write_catalog(tmp_path / "h" / "catalog")
    with FakeOpenAI() as server:
        settings = Settings(home=tmp_path / "h", composer="llm", llm_model="openai/fake", llm_api_base=server.base_url,
                            llm_api_key="sk-not-used-123")
        engine = StylusEngine(settings)
        engine.catalog.edit("test-pixel", blocked=True)  # in the catalog, but never a candidate
        answer = {"topics": [{"keywords": ["moon"], "adapters": [
            {"id": "test-moon"}, {"id": "evil-outside-id"}, {"id": "test-pixel"}, {"id": "../../etc"}]}]}
        server.default = FakeResponse(content=json.dumps(answer))
        selection = engine.select("an astronaut on the moon")
        retrieval, comp = selection.retrieval, selection.composition
        sent = server.received[0]
    ids = {c.id for c in retrieval.candidates}
    assert "test-pixel" not in ids
    assert comp.adapter_ids() == ["test-moon"]
    dropped = " ".join(comp.notices)
    for bad in ("evil-outside-id", "test-pixel", "../../etc"):
        assert f"dropped adapter id '{bad}': not among the candidates" in dropped
    # the injected description reaches the model only as data inside the user message
    assert "window.__stylus_xss" not in sent.messages[0]["content"]


@pytest.fixture(scope="module")
def secret_app(tmp_path_factory):
    home = tmp_path_factory.mktemp("secapp") / "home"
    with FakeOpenAI() as llm:
        from tests.fakes.openai_server import FakeResponse
        llm.default = FakeResponse(status=401, body={"error": {
            "message": f"Incorrect API key provided: {TOKENS['STYLUS_LLM_API_KEY']}", "type": "invalid_request_error"}})
        app = start_app(home, {**TOKENS, "STYLUS_LLM_API_BASE": llm.base_url, "STYLUS_LLM_MODEL": "openai/fake",
                               "STYLUS_MAX_UPLOAD_MB": "1"})
        try:
            yield app, llm
        finally:
            app.stop()


def test_app_serves_only_outputs_and_assets(secret_app):
    from gradio_client import Client

    app, _ = secret_app
    Client(app.url, verbose=False).predict("a corgi", "", None, 2, 7.0, 1, 1, "one_hot_loras", "", 64, 64,
                                           api_name="/generate")
    home = app.home
    output = next((home / "outputs").rglob("*.png"))
    assert httpx.get(f"{app.url}gradio_api/file={output}").status_code == 200
    probes = ["/etc/passwd", home / "catalog" / "catalog.sqlite3", home / "cache", app.log, REPO / "app.py",
              REPO / ".venv" / "pyvenv.cfg", "../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd",
              f"{home / 'outputs'}/../catalog/catalog.sqlite3", f"{home / 'outputs'}/%2e%2e/catalog/catalog.sqlite3"]
    for probe in probes:
        for route in ("gradio_api/file=", "file="):
            resp = httpx.get(f"{app.url}{route}{probe}")
            assert resp.status_code in (403, 404), (route, probe, resp.status_code)
            assert b"root:" not in resp.content and b"SQLite format" not in resp.content
    too_big = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("big.png", b"\0" * (2 * 2**20))})
    assert too_big.status_code >= 400


def test_tokens_never_reach_logs_errors_pngs_or_the_ui(secret_app, tmp_path):
    from gradio_client import Client

    app, llm = secret_app
    client = Client(app.url, verbose=False)
    selected = client.predict("a corgi astronaut on the moon", 10, "llm", "openai/fake", 3, api_name="/select")
    assert any("offline composer" in n for n in selected["composition"]["notices"])  # the fake refused the key
    assert llm.received and llm.received[0].headers.get("Authorization", "").endswith(TOKENS["STYLUS_LLM_API_KEY"])
    _, generated = client.predict("a corgi astronaut", "", None, 2, 7.0, 3, 1, "one_hot_loras", "", 64, 64,
                                  api_name="/generate")
    with pytest.raises(Exception):
        client.predict("no-such-card", api_name="/catalog_block")  # an error path
    seen = {"select": json.dumps(selected), "generate": json.dumps(generated),
            "config": httpx.get(f"{app.url}config").text, "info": httpx.get(f"{app.url}gradio_api/info").text,
            "page": httpx.get(app.url).text, "log": app.output()}
    for png in app.home.rglob("*.png"):
        with Image.open(png) as im:
            seen[f"png {png.name}"] = json.dumps({k: str(v) for k, v in im.info.items()})
    cli = subprocess.run([sys.executable, "-m", "stylus_ui", "generate", "a corgi on the moon", "--n", "1",
                          "--steps", "2", "--out", str(tmp_path / "cli")], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=app_env(app.home, 0, {**TOKENS, "STYLUS_COMPOSER": "llm",
                                                                           "STYLUS_LLM_MODEL": "openai/fake",
                                                                           "STYLUS_LLM_API_BASE": llm.base_url}))
    assert cli.returncode == 0, cli.stderr[-2000:]
    seen["cli stdout"], seen["cli stderr"] = cli.stdout, cli.stderr
    for path in (tmp_path / "cli").iterdir():
        seen[f"cli {path.name}"] = path.read_bytes().decode("latin-1")
    assert "offline composer" in seen["cli stylus-summary.json"] or "offline" in cli.stdout
    for where, text in seen.items():
        for name, token in TOKENS.items():
            assert token not in text, f"{name} leaked into {where}"
