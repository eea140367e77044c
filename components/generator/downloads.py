"""Fetch an adapter file into the cache: allowed hosts only, size cap, resume, SHA256 check.

https only; plain http is accepted for loopback hosts that are on the allow-list (a local
mirror, and the tests' local server). The first URL must be on the allow-list. A redirect to
a listed host is followed as before; a redirect to another host is followed only when the
caller knows the file's SHA256 (Civitai answers ``/api/download/models/{id}`` with a 307 to a
presigned URL on a storage host such as ``*.r2.cloudflarestorage.com`` or Backblaze B2): the
bytes are verified before use and nothing is kept on a mismatch. Such a hop must be https and
never goes to an IP address or a loopback name unless the first URL was on loopback (a local
mirror).

Tokens are sent only as an ``Authorization`` header and only to the hosts they belong to
(Civitai's token to Civitai, the hub token to Hugging Face); no cookie is ever sent. A storage
host gets a bare request: R2 answers a forwarded ``Authorization`` with 400, B2 with 403.
A 401/403 or an HTML page (a login page) instead of the file is reported as "needs a token"
and nothing is saved. ``civitai.red`` (where Civitai moved NSFW models) is refused unless
``allow_nsfw`` is on (never on a public instance); then it is treated as a Civitai host.
Messages show URLs without their query (a presigned URL's signature is a credential too).

Bytes go to ``<name>.part`` (kept for a later resume with ``Range`` when the connection drops)
and are renamed into place only when complete and verified; a hash mismatch deletes the file.
"""
from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from catalog.lora_file import sha256_file
from ground.errors import StylusError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MAX_REDIRECTS = 5
CIVITAI_HOSTS = ("civitai.com",)  # the Civitai token goes here (and to sub-domains) only
CIVITAI_NSFW_HOSTS = ("civitai.red",)  # Civitai's NSFW domain: only with allow_nsfw
HF_HOSTS = ("huggingface.co",)  # the hub token goes here (and to sub-domains) only
_SHA256 = re.compile(r"[0-9A-Fa-f]{64}")
_HTML = "an HTML page (a login page?) came instead of the file"


class DownloadError(StylusError, RuntimeError):
    """The file could not be fetched or verified; the message says which URL and why."""


@dataclass
class DownloadPolicy:
    hosts: list[str]
    max_mb: int
    civitai_token: str = ""
    hf_token: str = ""
    timeout: float = 30.0  # per network operation (connect, one read)
    deadline: float | None = None  # time.monotonic() by which the whole download must be done
    allow_nsfw: bool = False  # civitai.red URLs are fetched (as a Civitai host) only then
    civitai_hosts: tuple[str, ...] = CIVITAI_HOSTS  # where the Civitai token may go
    hf_hosts: tuple[str, ...] = HF_HOSTS  # where the hub token may go
    verify: ssl.SSLContext | str | bool = True  # TLS trust: certifi, or a mirror's own CA bundle

    def token_hosts(self) -> tuple[str, ...]:
        """Hosts that get the Civitai token: Civitai's own, and civitai.red when NSFW is allowed."""
        return self.civitai_hosts + (CIVITAI_NSFW_HOSTS if self.allow_nsfw else ())

    def read_timeout(self, url: str) -> float:
        """Seconds the next network operation may take: ``timeout``, cut to what is left before
        the deadline; raise once it has passed (a server sending a byte now and then never
        trips a per-read timeout)."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DownloadError(f"{shown(url)}: not finished within its time budget (setting "
                                f"STYLUS_DOWNLOAD_TIMEOUT_S or the request's STYLUS_GENERATION_TIMEOUT_S)")
        return min(self.timeout, left)


def host_allowed(url: str, hosts: list[str]) -> str:
    """Return the host if ``url`` may be fetched, else raise naming the host and the allow-list.

    The host is read the way httpx (which makes the request) reads it, so no URL trick
    (``user@host``, backslashes, odd ports) can make the check and the request disagree.
    Sub-domains of a listed name are allowed; an IP address must be listed exactly."""
    scheme, host = _scheme_host(url)
    if scheme != "https" and not (scheme == "http" and host in _LOOPBACK):
        raise DownloadError(f"{shown(url)}: only https downloads are allowed (got {scheme or 'no'} scheme)")
    allowed = [h.lower() for h in hosts]
    if not _on(host, allowed):
        raise DownloadError(f"{shown(url)}: host {host!r} is not in the download allow-list "
                            f"({', '.join(allowed) or 'empty'}; setting STYLUS_DOWNLOAD_HOSTS)")
    return host


def _scheme_host(url: str) -> tuple[str, str]:
    """(scheme, host) as httpx reads them; raises for invalid, ambiguous or ``user@`` URLs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise DownloadError(f"{shown(url)!r}: not a valid URL ({exc})") from None
    host = (parsed.host or "").lower().strip("[]")
    if host != (urlsplit(url).hostname or "").lower():
        raise DownloadError(f"{shown(url)}: the host is ambiguous ({host!r} vs "
                            f"{urlsplit(url).hostname!r}); refused")
    if parsed.userinfo:
        raise DownloadError(f"{urlsplit(url).hostname}: URLs with user info ('user@host') are refused")
    return parsed.scheme, host


def _on(host: str, names: list[str] | tuple[str, ...]) -> bool:
    """``host`` is one of ``names`` or a sub-domain of one (never by suffix for an IP address)."""
    return any(host == h or (host.endswith("." + h) and not _is_ip(host)) for h in names)


def shown(url: str) -> str:
    """``url`` for a message: without query and fragment (a ``?token=`` a user pasted, or the
    signature of a presigned storage URL, is a credential)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def first_host(url: str, policy: DownloadPolicy) -> str:
    """The host of the URL a download starts at: on the allow-list, or civitai.red with
    ``allow_nsfw`` (refused with the reason otherwise)."""
    scheme, host = _scheme_host(url)
    if _on(host, CIVITAI_NSFW_HOSTS) and not _on(host, policy.hosts):
        if not policy.allow_nsfw:
            raise DownloadError(f"{shown(url)}: {host} is Civitai's domain for NSFW models; downloads from "
                                f"it need setting allow_nsfw=True (STYLUS_ALLOW_NSFW), which a public "
                                f"instance never has")
        if scheme != "https":
            raise DownloadError(f"{shown(url)}: only https downloads are allowed (got {scheme or 'no'} scheme)")
        return host
    return host_allowed(url, policy.hosts)


def redirect_host(target: str, start: str, policy: DownloadPolicy, sha256: str | None) -> str:
    """The host of a redirect ``target`` if it may be followed from a download that began at
    host ``start``: a listed host; or, when ``sha256`` is known, another https host (a storage
    host with a presigned URL), never an IP address or a loopback name unless the download
    began on loopback (a local mirror). Raises with the reason."""
    try:
        return host_allowed(target, policy.hosts)
    except DownloadError as refused:
        scheme, host = _scheme_host(target)
        if scheme != "https":
            raise DownloadError(f"{refused}; a redirect off the allow-list is followed only to https") from None
        if not (sha256 and _SHA256.fullmatch(sha256)):
            raise DownloadError(f"{refused}; a redirect off the allow-list (a storage host) is followed "
                                f"only for a file whose SHA256 the card carries, and this one has none") from None
        if (host in _LOOPBACK or _is_ip(host)) and start not in _LOOPBACK:
            raise DownloadError(f"{shown(target)}: redirect to the address {host!r} refused (off the "
                                f"allow-list only named https hosts, such as a storage host, are followed)") from None
        return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _auth_headers(host: str, policy: DownloadPolicy) -> dict[str, str]:
    """The token that belongs to ``host``, as a header; nothing for any other host."""
    if policy.civitai_token and _on(host, policy.token_hosts()):
        return {"Authorization": f"Bearer {policy.civitai_token}"}
    if policy.hf_token and _on(host, policy.hf_hosts):
        return {"Authorization": f"Bearer {policy.hf_token}"}
    return {}


def _service(host: str, policy: DownloadPolicy) -> str:
    """Whose token ``host`` gets: "civitai", "hf", or "" (nobody's)."""
    if _on(host, policy.token_hosts()):
        return "civitai"
    return "hf" if _on(host, policy.hf_hosts) else ""


def _needs_token(url: str, status: str, service: str, policy: DownloadPolicy) -> DownloadError:
    """A gated file (401/403, or a login page instead of the file): say which token to set."""
    if service == "civitai":
        name, token = "STYLUS_CIVITAI_TOKEN", policy.civitai_token
        where = "a Civitai API key (civitai.com > Account settings > API Keys)"
    elif service == "hf":
        name, token = "STYLUS_HF_TOKEN", policy.hf_token
        where = "a Hugging Face access token with access to the repository"
    else:
        return DownloadError(f"{shown(url)}: {status}: the host refused the download (a gated file, or "
                             f"an expired link); nothing was saved")
    if token:
        return DownloadError(f"{shown(url)}: {status}: the token in {name} was not accepted for this file "
                             f"(check it, or whether the model needs early access); nothing was saved")
    return DownloadError(f"{shown(url)}: {status}: this file needs a token: set {name} to {where}; "
                         f"nothing was saved")


def download(url: str, dest: Path, policy: DownloadPolicy, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); verify ``sha256`` when given."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    limit = policy.max_mb * 1024 * 1024
    with httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False,
                      verify=policy.verify) as client:
        try:
            _fetch(client, url, part, policy, limit, sha256)
        except DownloadError:
            if not sha256:  # a resume could splice two different files: keep nothing unverifiable
                part.unlink(missing_ok=True)
            raise
    if sha256:
        actual = sha256_file(part)
        if actual != sha256.upper():
            part.unlink(missing_ok=True)
            raise DownloadError(f"{shown(url)}: SHA256 mismatch (expected {sha256.upper()[:16]}..., got "
                                f"{actual[:16]}...); the file was deleted")
    part.replace(dest)
    return dest


def download_hf(repo_id: str, filename: str, revision: str, dest: Path, policy: DownloadPolicy,
                cache_dir: Path, sha256: str | None = None) -> Path:
    """Fetch one file of a hub repository with ``huggingface_hub`` (it follows the hub's CDN and
    Xet storage, resumes, and keeps its own cache under ``cache_dir``), then link it to ``dest``.

    The hub endpoint must be on the allow-list; only ``policy.hf_token`` is used (never a
    login saved on the machine); the size cap is checked before any byte of the file comes;
    ``sha256`` is verified and a mismatching file is removed from the hub cache too."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    for name, value in (("file name", filename), ("revision", revision)):
        if not value or value.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", value):
            raise DownloadError(f"{repo_id}: {name} {value!r} is not a path inside the repository; refused")
    url = hf_hub_url(repo_id, filename, revision=revision)
    first_host(url, policy)
    token = policy.hf_token or False
    where = f"{repo_id}/{filename}@{revision}"
    try:
        meta = get_hf_file_metadata(url, token=token, timeout=policy.read_timeout(url))
        limit = policy.max_mb * 1024 * 1024
        if meta.size is not None and meta.size > limit:
            raise DownloadError(f"{where}: file is {meta.size / 2**20:.0f} MB, above the {limit // 2**20} MB "
                                f"cap (setting STYLUS_DOWNLOAD_MAX_MB)")
        local = Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                                     etag_timeout=policy.read_timeout(url)))
    except (OSError, ValueError) as exc:  # HfHubHTTPError is an OSError and an httpx.HTTPError
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise _needs_token(url, f"HTTP {status}", "hf", policy) from None
        raise DownloadError(f"{where}: download from the hub failed ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
    blob = local.resolve()
    if sha256 and sha256_file(blob) != sha256.upper():
        blob.unlink(missing_ok=True)
        local.unlink(missing_ok=True)
        raise DownloadError(f"{where}: SHA256 mismatch (expected {sha256.upper()[:16]}..., got another "
                            f"file); the file was deleted")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:  # the hub cache and the adapter cache share the bytes on one file system
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)
    return dest


def _fetch(client: httpx.Client, url: str, part: Path, policy: DownloadPolicy, limit: int,
           sha256: str | None) -> None:
    start = host = first_host(url, policy)
    for _ in range(_MAX_REDIRECTS + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = _auth_headers(host, policy)
        if have:
            headers["Range"] = f"bytes={have}-"
        client.cookies.clear()  # no cookie a host set ever goes anywhere
        try:
            with client.stream("GET", url, headers=headers, timeout=policy.read_timeout(url)) as resp:
                if resp.is_redirect:
                    url = urljoin(url, resp.headers["location"])
                    host = redirect_host(url, start, policy, sha256)
                    continue
                if resp.status_code == 416 and have:  # the part file is already complete
                    return
                if resp.status_code in (401, 403):
                    raise _needs_token(url, f"HTTP {resp.status_code}", _service(host, policy), policy)
                if resp.status_code not in (200, 206):
                    raise DownloadError(f"{shown(url)}: HTTP {resp.status_code}")
                if resp.headers.get("content-type", "").lower().startswith(("text/html", "application/xhtml")):
                    raise _needs_token(url, _HTML, _service(host, policy), policy)
                append = resp.status_code == 206 and have > 0
                _write_body(resp, part, append, limit, url, policy, host)
                return
        except httpx.HTTPError as exc:
            raise DownloadError(f"{shown(url)}: download failed ({type(exc).__name__}); "
                                f"{part.stat().st_size if part.exists() else 0} bytes kept for a "
                                f"resume") from exc
    raise DownloadError(f"{shown(url)}: more than {_MAX_REDIRECTS} redirects")


def _write_body(resp: httpx.Response, part: Path, append: bool, limit: int, url: str,
                policy: DownloadPolicy, host: str) -> None:
    start = part.stat().st_size if append else 0
    total = resp.headers.get("content-length")
    if total is not None and start + int(total) > limit:
        raise DownloadError(f"{shown(url)}: file is {(start + int(total)) / 2**20:.0f} MB, above the "
                            f"{limit // 2**20} MB cap (setting STYLUS_DOWNLOAD_MAX_MB)")
    written = start
    chunks = resp.iter_bytes()
    first = next(chunks, b"")
    if not append and _looks_like_html(first):  # a login page sent as something else
        raise _needs_token(url, _HTML, _service(host, policy), policy)
    with open(part, "ab" if append else "wb") as fh:
        for chunk in itertools.chain((first,), chunks):  # as received: a dropped connection keeps what came
            written += len(chunk)
            if written > limit:
                fh.close()
                part.unlink(missing_ok=True)
                raise DownloadError(f"{shown(url)}: more than the {limit // 2**20} MB cap "
                                    f"(setting STYLUS_DOWNLOAD_MAX_MB); download stopped")
            fh.write(chunk)
            policy.read_timeout(url)  # past the deadline: stop, keeping what came for a resume
    if total is not None and written - start < int(total):
        raise DownloadError(f"{shown(url)}: connection closed after {written} bytes; kept for a resume")


def _looks_like_html(first: bytes) -> bool:
    """A safetensors file starts with an 8-byte header length, never with ``<``: an HTML page does."""
    head = first[:64].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))
