"""A local stand-in for the Hugging Face hub HTTP API, serving repositories from directories.

Serves what ``huggingface_hub`` asks for: ``GET /api/models/OWNER/NAME`` (model info with
LFS blob metadata) and ``HEAD``/``GET /OWNER/NAME/resolve/main/FILE`` (with Range support).
Counts the bytes sent per file so a test can prove weights were not downloaded.
``refuse_token=True`` answers every request with a 401 whose body and ``X-Error-Message``
echo the Authorization header it got (as careless servers do).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0" * 40


class FakeHub:
    def __init__(self, repos: dict[str, Path], refuse_token: bool = False):
        self.repos = repos
        self.refuse_token = refuse_token
        self.bytes_sent: Counter = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def model_info(self, repo_id: str) -> dict:
        root = self.repos[repo_id]
        siblings = []
        for p in sorted(root.rglob("*")):
            if p.is_file():
                data = p.read_bytes()
                entry = {"rfilename": str(p.relative_to(root)), "size": len(data)}
                if p.suffix == ".safetensors":
                    entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                siblings.append(entry)
        return {"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False, "siblings": siblings}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._serve(body=True)

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def _serve(self, body: bool) -> None:
                if hub.refuse_token:
                    echo = f"Invalid credentials in Authorization header: {self.headers.get('Authorization')}"
                    return self._send(401, json.dumps({"error": echo}).encode(), body,
                                      {"Content-Type": "application/json", "X-Error-Message": echo})
                path = self.path.split("?", 1)[0]
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?$", path)
                if m and m.group(1) in hub.repos:
                    return self._send(200, json.dumps(hub.model_info(m.group(1))).encode(), body,
                                      {"Content-Type": "application/json"})
                m = re.match(r"^/([^/]+/[^/]+)/resolve/[^/]+/(.+)$", path)
                if m and m.group(1) in hub.repos and (hub.repos[m.group(1)] / m.group(2)).is_file():
                    return self._file(hub.repos[m.group(1)] / m.group(2), m.group(2), body)
                self._send(404, b'{"error": "Repository Not Found"}', body,
                           {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound"})

            def _file(self, file: Path, name: str, body: bool) -> None:
                data = file.read_bytes()
                etag = hashlib.sha256(data).hexdigest()
                headers = {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT, "Accept-Ranges": "bytes"}
                rng = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if rng:
                    start = int(rng.group(1))
                    end = min(int(rng.group(2) or len(data) - 1), len(data) - 1)
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    return self._send(206, data[start:end + 1], body, headers, name)
                self._send(200, data, body, headers, name)

            def _send(self, status: int, data: bytes, body: bool, headers: dict, name: str = "") -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
                    hub.bytes_sent[name] += len(data)

        return Handler
