"""A server on 127.0.0.1 that answers every GET or POST with one payload, a few bytes at a time.

    server = TrickleServer(payload, chunk=1, interval=0.2)   # 5 bytes/s
    server.url("/file.safetensors"); server.started.wait()    # a client is being served
    server.close()                                            # ends every answer mid-way

It announces the full ``Content-Length`` first, then sends ``chunk`` bytes every ``interval``
seconds: a client with a per-read timeout longer than ``interval`` never times out.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from tests.fakes.local_http import LocalServer


class TrickleServer(LocalServer):
    def __init__(self, payload: bytes, chunk: int = 1, interval: float = 0.2,
                 content_type: str = "application/octet-stream") -> None:
        self.payload = payload
        self.seconds = -(-len(payload) // chunk) * interval  # how long one whole answer takes
        self.started = threading.Event()  # set when the first answer begins
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                server.started.set()
                try:
                    for start in range(0, len(payload), chunk):
                        if server._stop.wait(interval):
                            return  # closing: the client sees the connection end early
                        self.wfile.write(payload[start:start + chunk])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up

            do_GET = _answer
            do_POST = _answer

        super().__init__(Handler)
        self.httpd.daemon_threads = True

    def close(self) -> None:
        self._stop.set()
        super().close()
