"""A local stand-in for the Civitai REST API (``GET /api/v1/models``) on 127.0.0.1.

Serves pages in the real shape (``{"items": [...], "metadata": {"nextCursor", "nextPage",
"pageSize"}}``), filters by ``types``, ``baseModels`` and ``query`` like Civitai does, records
every request (path, query, headers) and can fail chosen requests on purpose:
``faults={2: "429", 3: "500", 4: "drop", 5: "401"}`` makes the 2nd request a 429 (with
``Retry-After``), the 3rd a 500, the 4th a closed connection without a reply and the 5th a
401 whose body echoes the Authorization header it got (as careless servers do).

For the token rules: ``next_base`` writes another server's address into ``nextPage``, and
``redirects`` answers a path with a 302 to another address (the query kept). ``pages``
serves those page objects verbatim, one per request, then an empty last page (fuzzing).

Downloads (``GET /api/download/models/{versionId}``): ``downloads`` maps a version id to a
presigned storage URL (answered with a 307 to it, as Civitai does), ``"401"`` (a gated file)
or ``"html"`` (the login page Civitai serves with status 200). With ``token`` set, a request
without ``Authorization: Bearer <token>`` gets the 401.

By hash: ``versions`` maps an upper-case SHA256 to a model-version JSON (the shape
``/api/v1/model-versions/{id}`` has, with ``files[].hashes.SHA256``). ``GET
/api/v1/models/{id}`` answers the item of ``items`` with that id (tags, description). ``GET
/api/v1/model-versions/by-hash/{hash}`` answers it or 404; ``POST
/api/v1/model-versions/by-hash`` with a JSON list of up to 100 hashes answers the list of the
known versions (400 for more than 100).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    method: str = "GET"
    body: object = None  # the parsed JSON body of a POST


@dataclass
class FakeCivitai:
    items: list[dict]
    faults: dict[int, str] = field(default_factory=dict)  # request number (1-based) -> fault
    retry_after: str = "2"
    next_base: str | None = None  # base URL written into nextPage (default: this server)
    redirects: dict[str, str] = field(default_factory=dict)  # request path -> 302 Location (no query)
    pages: list | None = None  # served verbatim in request order instead of self.items
    downloads: dict[int, str] = field(default_factory=dict)  # version id -> storage URL | "401" | "html"
    token: str | None = None  # downloads need "Authorization: Bearer <token>" when set
    versions: dict[str, dict] = field(default_factory=dict)  # SHA256 (upper) -> model-version JSON
    requests: list[Request] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None, "start() the fake first"
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeCivitai":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fake.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                fake.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> "FakeCivitai":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- one request ------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = parse_qs(url.query)
        body = None
        if h.command == "POST":
            raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = raw
        self.requests.append(Request(url.path, query, {k.lower(): v for k, v in h.headers.items()},
                                     h.command, body))
        fault = self.faults.get(len(self.requests))
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(2)  # hang up without a status line
            return
        if fault == "429":
            return self._send(h, 429, {"error": "Too many requests"}, {"Retry-After": self.retry_after})
        if fault == "500":
            return self._send(h, 500, {"error": "Internal server error"})
        if fault == "401":
            padding = "x" * 150  # the token straddles a 200-character cut of the body
            return self._send(h, 401, {"error": f"{padding} bad credentials: {h.headers.get('Authorization')}"})
        if url.path in self.redirects:
            location = self.redirects[url.path] + (f"?{url.query}" if url.query else "")
            return self._send(h, 302, {"moved": location}, {"Location": location})
        if url.path.startswith("/api/download/models/"):
            return self._download(h, url.path.rsplit("/", 1)[-1])
        if url.path.startswith("/api/v1/model-versions/by-hash"):
            return self._by_hash(h, url.path, body)
        if url.path.startswith("/api/v1/models/"):  # one model by id, from items
            wanted = url.path.rsplit("/", 1)[-1]
            item = next((it for it in self.items if str(it.get("id")) == wanted), None)
            return self._send(h, 200, item) if item else self._send(h, 404, {"error": f"No model with id {wanted}"})
        if self.pages is not None:
            served = len(self.requests) - 1
            return self._send(h, 200, self.pages[served] if served < len(self.pages) else {"items": []})
        if url.path != "/api/v1/models":
            return self._send(h, 404, {"error": f"no route {url.path}"})
        self._send(h, 200, self.page(query))

    def page(self, query: dict[str, list[str]]) -> dict:
        wanted = [t.lower() for t in query.get("types", [])]
        bases = query.get("baseModels", [])
        text = query.get("query", [""])[0].lower()
        matching = [it for it in self.items
                    if (not wanted or str(it.get("type", "")).lower() in wanted)
                    and (not bases or any(isinstance(v, dict) and v.get("baseModel") in bases
                                          for v in it.get("modelVersions") or []))
                    and text in str(it.get("name", "")).lower()]
        limit = int(query.get("limit", ["100"])[0])
        start = int(query.get("cursor", ["0"])[0])
        chunk = matching[start:start + limit]
        metadata: dict = {"pageSize": limit}
        if start + limit < len(matching):
            metadata["nextCursor"] = str(start + limit)
            nxt = {k: v for k, v in query.items() if k != "cursor"} | {"cursor": [str(start + limit)]}
            metadata["nextPage"] = f"{self.next_base or self.base_url}/api/v1/models?{urlencode(nxt, doseq=True)}"
        return {"items": chunk, "metadata": metadata}

    def _download(self, h: BaseHTTPRequestHandler, version: str) -> None:
        what = self.downloads.get(int(version)) if version.isdecimal() else None
        if what is None:
            return self._send(h, 404, {"error": f"no model version {version}"})
        if what == "401" or (self.token and h.headers.get("Authorization") != f"Bearer {self.token}"):
            return self._send(h, 401, {"error": "Unauthorized", "message": "The creator of this asset "
                                       "requires you to be logged in to download it"})
        if what == "html":  # the login page Civitai serves to a browser-like client
            page = b"<!DOCTYPE html><html><head><title>Sign in | Civitai</title></head><body>Sign in</body></html>"
            h.send_response(200)
            h.send_header("Content-Type", "text/html; charset=utf-8")
            h.send_header("Content-Length", str(len(page)))
            h.end_headers()
            h.wfile.write(page)
            return
        self._send(h, 307, {"redirect": "storage"}, {"Location": what})

    def _by_hash(self, h: BaseHTTPRequestHandler, path: str, body: object) -> None:
        if h.command == "POST":
            if not isinstance(body, list) or not all(isinstance(x, str) for x in body):
                return self._send(h, 400, {"error": "expected a JSON array of hashes"})
            if len(body) > 100:
                return self._send(h, 400, {"error": "at most 100 hashes per request"})
            found = [self.versions[x.upper()] for x in dict.fromkeys(body) if x.upper() in self.versions]
            return self._send(h, 200, found)
        version = self.versions.get(path.rsplit("/", 1)[-1].upper())
        if version is None:
            return self._send(h, 404, {"error": "Model not found"})
        self._send(h, 200, version)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: object, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
