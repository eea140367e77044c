"""A local stand-in for the object storage Civitai redirects downloads to (Cloudflare R2, B2).

Serves ``files`` (path -> bytes) over https on ``localhost`` with a self-signed certificate
made on start (``ca_file`` is the trust anchor to hand to the client), honours ``Range``, and
behaves like R2 towards credentials that were not meant for it: a request carrying an
``Authorization`` header, a ``Cookie`` or a ``token`` query parameter gets 400 (R2's answer;
B2 answers 403). Every request is recorded (path, query, headers).
"""
from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class StorageRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


def self_signed(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """(certificate, key) PEM files for ``host`` (and 127.0.0.1), valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "storage.crt", directory / "storage.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class FakeStorage:
    files: dict[str, bytes]
    status: int = 400  # the answer to a request carrying credentials (R2: 400, B2: 403)
    requests: list[StorageRequest] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    ca_file: Path | None = None
    _tmp: tempfile.TemporaryDirectory | None = None

    def url(self, path: str) -> str:
        """``https://localhost:PORT/path``: a named host, as presigned URLs use."""
        assert self.server is not None, "start() the fake first"
        return f"https://localhost:{self.server.server_address[1]}{path}"

    def start(self) -> "FakeStorage":
        fake = self
        self._tmp = tempfile.TemporaryDirectory()
        self.ca_file, key_file = self_signed(Path(self._tmp.name))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fake.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "FakeStorage":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = parse_qs(url.query)
        headers = {k.lower(): v for k, v in h.headers.items()}
        self.requests.append(StorageRequest(url.path, query, headers))
        if "authorization" in headers or "cookie" in headers or "token" in query:
            body = (b"<?xml version=\"1.0\"?><Error><Code>InvalidArgument</Code><Message>Authorization header "
                    b"or token not allowed with a presigned URL</Message></Error>")
            return self._send(h, self.status, body, {"Content-Type": "application/xml"})
        data = self.files.get(url.path)
        if data is None:
            return self._send(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"})
        rng = re.match(r"bytes=(\d+)-$", headers.get("range", ""))
        if rng:
            start = int(rng.group(1))
            return self._send(h, 206, data[start:], {"Content-Type": "application/octet-stream",
                                                     "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        self._send(h, 200, data, {"Content-Type": "application/octet-stream"})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
