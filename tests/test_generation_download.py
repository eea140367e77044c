"""Adapter downloads against a local HTTP server: verified, allow-listed, resumable."""
from __future__ import annotations

import hashlib
from http.server import BaseHTTPRequestHandler

import pytest

from catalog.card import AdapterCard, AdapterFile
from catalog.settings import Settings
from components.generator.adapters import cache_path, fetch_card_file
from tests.fakes.local_http import LocalServer

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


class _Server(LocalServer):
    """Serves PAYLOAD at /file (Range honoured), /cut (closes half-way), /moved (redirect)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.cut = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Range")))
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "http://localhost:%d/file" % outer.port)
                    self.end_headers()
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path == "/cut" and outer.cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        super().__init__(Handler)


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _settings(tmp_path, hosts=("127.0.0.1",)) -> Settings:
    return Settings(home=tmp_path / "s", download_hosts=list(hosts))


def _card(url: str, sha: str | None = hashlib.sha256(PAYLOAD).hexdigest()) -> AdapterCard:
    return AdapterCard(id="dl-1", source="civitai", name="downloaded",
                       files=[AdapterFile(name="dl.safetensors", sha256=sha, download_url=url, primary=True)])


def test_verified_download_lands_in_the_cache(tmp_path, server):
    settings, notices = _settings(tmp_path), []
    source = fetch_card_file(settings, _card(server.url("/file")), notices)
    assert source is not None and source.origin == "download", notices
    assert source.path == cache_path(settings, _card(server.url("/file")))
    assert source.path.read_bytes() == PAYLOAD


def test_hash_mismatch_is_not_kept(tmp_path, server):
    settings, notices = _settings(tmp_path), []
    card = _card(server.url("/file"), sha="0" * 64)
    assert fetch_card_file(settings, card, notices) is None
    assert "SHA256 mismatch" in notices[0] and "skipped" in notices[0]
    assert not list(cache_path(settings, card).parent.glob("*"))


def test_host_not_allowed_is_refused_without_a_request(tmp_path, server):
    settings, notices = _settings(tmp_path, hosts=("civitai.com",)), []
    assert fetch_card_file(settings, _card(server.url("/file")), notices) is None
    assert "host '127.0.0.1' is not in the download allow-list" in notices[0]
    assert server.requests == []


def test_redirect_to_a_host_not_allowed_is_refused(tmp_path, server):
    settings, notices = _settings(tmp_path), []  # 127.0.0.1 allowed, localhost not
    assert fetch_card_file(settings, _card(server.url("/moved")), notices) is None
    assert "host 'localhost' is not in the download allow-list" in notices[0]


def test_plain_http_to_a_remote_host_is_refused(tmp_path):
    settings, notices = _settings(tmp_path, hosts=("example.com",)), []
    assert fetch_card_file(settings, _card("http://example.com/x.safetensors"), notices) is None
    assert "only https downloads are allowed" in notices[0]


def test_size_cap(tmp_path, server):
    settings, notices = _settings(tmp_path).replace(download_max_mb=0), []
    assert fetch_card_file(settings, _card(server.url("/file")), notices) is None
    assert "MB cap" in notices[0]


def test_interrupted_download_is_not_used_and_resumes_later(tmp_path, server):
    settings, notices = _settings(tmp_path), []
    card = _card(server.url("/cut"))
    assert fetch_card_file(settings, card, notices) is None
    assert "skipped" in notices[0]
    final = cache_path(settings, card)
    assert not final.exists()
    assert final.with_name(final.name + ".part").stat().st_size == len(PAYLOAD) // 2
    server.cut = False
    source = fetch_card_file(settings, card, [])
    assert source is not None and source.path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/cut", f"bytes={len(PAYLOAD) // 2}-")
