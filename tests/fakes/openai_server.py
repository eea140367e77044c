"""A scriptable local OpenAI-compatible server for tests (chat completions only).

    with FakeOpenAI() as server:
        server.queue(content='{"topics": []}')           # one answer
        server.queue(status=500, body={"error": ...})     # an error status
        server.queue(content="late", delay=2.0)           # a slow answer (client timeout)
        litellm.completion(model="openai/fake", api_base=server.base_url, api_key="x", ...)
        server.requests                                   # the JSON bodies received

Responses are served in queue order; when the queue is empty ``default`` answers (None = 500).
Requests answered concurrently can be scripted by content instead of order:
``server.route("card-7", FakeResponse(status=500), FakeResponse(content=...))`` answers requests
whose body contains "card-7" with those responses in turn (the last one repeats), before the
queue. ``server.received`` keeps path, headers and raw text of every request;
``server.requests_mentioning("card-7")`` filters them.
Listens on 127.0.0.1 and an OS-chosen port; runs in a daemon thread.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeResponse:
    content: str = ""
    status: int = 200
    delay: float = 0.0
    body: Any = None  # full JSON body to send instead of a chat completion
    raw: bytes | None = None  # exact bytes to send (e.g. broken JSON at the HTTP level)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    text: str  # raw body, for substring checks
    json: Any

    @property
    def messages(self) -> list[dict]:
        return self.json.get("messages", []) if isinstance(self.json, dict) else []


@dataclass
class FakeOpenAI:
    default: FakeResponse | None = None
    requests: list[dict] = field(default_factory=list)
    received: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: deque[FakeResponse] = deque()
        self._routes: list[tuple[str, deque[FakeResponse]]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # cuts scripted delays short on stop()
        self._server: ThreadingHTTPServer | None = None

    def route(self, match: str, *responses: FakeResponse) -> "FakeOpenAI":
        """Answer requests whose raw body contains ``match`` with ``responses`` (last repeats)."""
        with self._lock:
            self._routes.append((match, deque(responses)))
        return self

    def requests_mentioning(self, text: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.received if text in r.text]

    def clear(self) -> None:
        """Forget queued and routed responses and recorded requests."""
        with self._lock:
            self._queue.clear()
            self._routes.clear()
            self.requests.clear()
            self.received.clear()

    def _routed(self, text: str) -> FakeResponse | None:
        with self._lock:
            for match, responses in self._routes:
                if match in text and responses:
                    return responses[0] if len(responses) == 1 else responses.popleft()
        return None

    def queue(self, content: str = "", status: int = 200, delay: float = 0.0, body: Any = None,
              raw: bytes | None = None) -> "FakeOpenAI":
        with self._lock:
            self._queue.append(FakeResponse(content, status, delay, body, raw))
        return self

    def _next(self) -> FakeResponse:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.default or FakeResponse(status=500, body={"error": {"message": "no response queued"}})

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) or b"{}"
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = {"_unparsed": True}
                text = raw.decode("utf-8", "replace")
                with fake._lock:
                    fake.requests.append(body)
                    fake.received.append(RecordedRequest(self.path, dict(self.headers), text, body))
                resp = fake._routed(text) or fake._next()
                if resp.delay:
                    fake._stopping.wait(resp.delay)
                payload = resp.raw if resp.raw is not None else json.dumps(
                    resp.body if resp.body is not None else _completion(resp.content)).encode()
                try:
                    self.send_response(resp.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (timeout): nothing to answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _completion(content: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": "fake", "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
