"""Fetch an adapter file into the cache: allowed hosts only, size cap, resume, SHA256 check.

https only; plain http is accepted for loopback hosts that are on the allow-list (a local
mirror, and the tests' local server). Each redirect hop is checked against the allow-list, and
tokens are sent only to the host they belong to. Bytes go to ``<name>.part`` (kept for a later
resume with ``Range`` when the connection drops) and are renamed into place only when complete
and verified; a hash mismatch deletes the file.
"""
from __future__ import annotations

import hashlib
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MAX_REDIRECTS = 5


class DownloadError(RuntimeError):
    """The file could not be fetched or verified; the message says which URL and why."""


@dataclass
class DownloadPolicy:
    hosts: list[str]
    max_mb: int
    civitai_token: str = ""
    hf_token: str = ""
    timeout: float = 30.0  # per network operation (connect, one read)
    deadline: float | None = None  # time.monotonic() by which the whole download must be done

    def read_timeout(self, url: str) -> float:
        """Seconds the next network operation may take: ``timeout``, cut to what is left before
        the deadline; raise once it has passed (a server sending a byte now and then never
        trips a per-read timeout)."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DownloadError(f"{url}: not finished within its time budget (setting "
                                f"STYLUS_DOWNLOAD_TIMEOUT_S or the request's STYLUS_GENERATION_TIMEOUT_S)")
        return min(self.timeout, left)


def host_allowed(url: str, hosts: list[str]) -> str:
    """Return the host if ``url`` may be fetched, else raise naming the host and the allow-list.

    The host is read the way httpx (which makes the request) reads it, so no URL trick
    (``user@host``, backslashes, odd ports) can make the check and the request disagree.
    Sub-domains of a listed name are allowed; an IP address must be listed exactly."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise DownloadError(f"{url!r}: not a valid URL ({exc})") from None
    host = (parsed.host or "").lower().strip("[]")
    if host != (urlsplit(url).hostname or "").lower():
        raise DownloadError(f"{url}: the host is ambiguous ({host!r} vs "
                            f"{urlsplit(url).hostname!r}); refused")
    if parsed.userinfo:
        raise DownloadError(f"{urlsplit(url).hostname}: URLs with user info ('user@host') are refused")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and host in _LOOPBACK):
        raise DownloadError(f"{url}: only https downloads are allowed (got {parsed.scheme or 'no'} scheme)")
    allowed = [h.lower() for h in hosts]
    if not any(host == h or (host.endswith("." + h) and not _is_ip(host)) for h in allowed):
        raise DownloadError(f"{url}: host {host!r} is not in the download allow-list "
                            f"({', '.join(allowed) or 'empty'}; setting STYLUS_DOWNLOAD_HOSTS)")
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _auth_headers(host: str, policy: DownloadPolicy) -> dict[str, str]:
    if policy.civitai_token and (host == "civitai.com" or host.endswith(".civitai.com")):
        return {"Authorization": f"Bearer {policy.civitai_token}"}
    if policy.hf_token and (host == "huggingface.co" or host.endswith(".huggingface.co")):
        return {"Authorization": f"Bearer {policy.hf_token}"}
    return {}


def download(url: str, dest: Path, policy: DownloadPolicy, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); verify ``sha256`` when given."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    limit = policy.max_mb * 1024 * 1024
    with httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False) as client:
        try:
            _fetch(client, url, part, policy, limit)
        except DownloadError:
            if not sha256:  # a resume could splice two different files: keep nothing unverifiable
                part.unlink(missing_ok=True)
            raise
    if sha256:
        actual = _sha256(part)
        if actual != sha256.upper():
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: SHA256 mismatch (expected {sha256.upper()[:16]}..., got "
                                f"{actual[:16]}...); the file was deleted")
    part.replace(dest)
    return dest


def _fetch(client: httpx.Client, url: str, part: Path, policy: DownloadPolicy, limit: int) -> None:
    for _ in range(_MAX_REDIRECTS + 1):
        host = host_allowed(url, policy.hosts)
        have = part.stat().st_size if part.exists() else 0
        headers = _auth_headers(host, policy)
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with client.stream("GET", url, headers=headers, timeout=policy.read_timeout(url)) as resp:
                if resp.is_redirect:
                    url = urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code == 416 and have:  # the part file is already complete
                    return
                if resp.status_code not in (200, 206):
                    raise DownloadError(f"{url}: HTTP {resp.status_code}")
                append = resp.status_code == 206 and have > 0
                _write_body(resp, part, append, limit, url, policy)
                return
        except httpx.HTTPError as exc:
            raise DownloadError(f"{url}: download failed ({type(exc).__name__}: {exc}); "
                                f"{part.stat().st_size if part.exists() else 0} bytes kept for a "
                                f"resume") from exc
    raise DownloadError(f"{url}: more than {_MAX_REDIRECTS} redirects")


def _write_body(resp: httpx.Response, part: Path, append: bool, limit: int, url: str,
                policy: DownloadPolicy) -> None:
    start = part.stat().st_size if append else 0
    total = resp.headers.get("content-length")
    if total is not None and start + int(total) > limit:
        raise DownloadError(f"{url}: file is {(start + int(total)) / 2**20:.0f} MB, above the "
                            f"{limit // 2**20} MB cap (setting STYLUS_DOWNLOAD_MAX_MB)")
    written = start
    with open(part, "ab" if append else "wb") as fh:
        for chunk in resp.iter_bytes():  # as received: a dropped connection keeps what came
            written += len(chunk)
            if written > limit:
                fh.close()
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url}: more than the {limit // 2**20} MB cap "
                                    f"(setting STYLUS_DOWNLOAD_MAX_MB); download stopped")
            fh.write(chunk)
            policy.read_timeout(url)  # past the deadline: stop, keeping what came for a resume
    if total is not None and written - start < int(total):
        raise DownloadError(f"{url}: connection closed after {written} bytes; kept for a resume")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest().upper()
