"""Import LoRA items live from the Civitai REST API (``GET /api/v1/models``).

Pages are followed by ``metadata.nextPage`` (or ``nextCursor``). Each page's cards are
committed together with the address of the next page, so an interrupted run resumes there.
429 responses wait for ``Retry-After``; 5xx and dropped connections back off exponentially.
The API token is sent only as an ``Authorization`` header, only to the configured origin
(scheme, host and port of ``base_url``), and never appears in messages: a next page or a
redirect that points at another origin is not followed, whatever the server says.
"""
from __future__ import annotations

import email.utils
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import httpx
from tqdm import tqdm

from catalog.importers import without_token
from catalog.importers.civitai_items import cards_from_item, item_label
from catalog.store import CatalogError, CatalogStore, ImportReport

MAX_WAIT_S = 300.0  # longest single wait, whatever Retry-After asks for
MAX_REDIRECTS = 5  # redirects followed per page (within the configured origin)


def import_civitai_api(store: CatalogStore, *, base_url: str = "https://civitai.com", token: str = "",
                       base_models: Iterable[str] = ("SD 1.5",), query: str | None = None,
                       limit: int | None = None, restart: bool = False, progress: bool = True,
                       max_retries: int = 5, page_size: int = 100, backoff_s: float = 1.0,
                       client: httpx.Client | None = None,
                       sleep: Callable[[float], None] = time.sleep) -> ImportReport:
    """Import LoRA items page by page; see the module docstring. ``limit`` stops after that
    many items. ``client`` and ``sleep`` are for tests (a client bound to a local server)."""
    if not 1 <= page_size <= 100:
        raise ValueError(f"page_size={page_size} is not allowed; Civitai serves 1..100 items a page")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be at least 1")
    base_url = base_url.rstrip("/")
    origin = _origin(base_url)
    if origin is None:
        raise ValueError(f"base_url={base_url!r} is not an http(s) address such as https://civitai.com")
    base_models = tuple(base_models)
    params: dict[str, Any] = {"types": "LORA", "baseModels": list(base_models), "limit": page_size,
                              "sort": "Most Downloaded"}
    if query:
        params["query"] = query
    key = f"civitai-api:{base_url}|{','.join(base_models)}|{query or ''}"
    report = ImportReport()
    state = None if restart else store.get_state(key)
    url, page_params = f"{base_url}/api/v1/models", params
    done = 0
    if isinstance(state, dict) and state.get("next") and _origin(str(state["next"])) == origin:
        url, page_params, done = state["next"], {}, int(state.get("items", 0))
        report.notices.append(f"resuming after {done} items imported by an interrupted run")
    api = _Api(client or httpx.Client(timeout=60.0), origin, token, max_retries, backoff_s, sleep)
    try:
        with tqdm(total=limit, unit="item", desc="civitai api", disable=not progress, file=sys.stderr) as bar:
            bar.update(done)
            while url:
                page = api.get_page(url, page_params)
                items = page.get("items")
                if not isinstance(items, list):
                    raise CatalogError(f"unexpected reply from {_public(url)}: no 'items' list")
                if limit is not None:
                    items = items[: limit - done]
                url, page_params = _next_page(page, url, params)
                done += len(items)
                finished = not url or (limit is not None and done >= limit)
                next_state: dict[str, Any] = {"next": None, "complete": True} if finished else \
                    {"next": url, "items": done}
                if not finished and _origin(url) != origin:
                    report.notices.append(
                        f"stopped after {done} items: the page names its next page on another host "
                        f"({_shown_origin(url)}); not followed, the API token goes only to "
                        f"{_shown_origin(base_url)}")
                    finished, next_state = True, {"next": None, "items": done, "complete": False}
                _commit_page(store, key, items, report, next_state)
                bar.update(len(items))
                if finished:
                    break
    finally:
        if client is None:
            api.http.close()
    report.notices.insert(0, f"read {done} items from {base_url}")
    return report


def _commit_page(store: CatalogStore, key: str, items: list, report: ImportReport,
                 next_state: dict) -> None:
    """Upsert one page's cards and record where to go next, in one transaction."""
    with store.transaction() as tx:
        for item in items:
            cards, messages = cards_from_item(item)
            if not cards:
                label = item_label(item)
                report.skip(label, "; ".join(m.removeprefix(f"{label}: ") for m in messages)
                            or "no usable versions")
                continue
            report.notices.extend(messages)
            for card in cards:
                store.upsert_counted(card, report, f"{item_label(item)} version {card.civitai_version_id}", tx)
        store.set_state(key, next_state, tx)


def _next_page(page: dict, url: str, params: dict) -> tuple[str | None, dict]:
    """The next page's address (a relative ``nextPage`` is read against ``url``) and query."""
    meta = page.get("metadata") if isinstance(page.get("metadata"), dict) else {}
    if isinstance(meta.get("nextPage"), str) and meta["nextPage"]:
        try:
            return str(httpx.URL(url).join(meta["nextPage"])), {}
        except httpx.InvalidURL:
            return meta["nextPage"], {}  # not followed: it has no origin (see _origin)
    if meta.get("nextCursor") not in (None, ""):
        return str(httpx.URL(url).copy_with(query=None)), params | {"cursor": str(meta["nextCursor"])}
    return None, {}


@dataclass
class _Api:
    """Fetches pages: the token goes only to ``origin``, and failures are retried."""
    http: httpx.Client
    origin: tuple[str, str, int]
    token: str
    max_retries: int
    backoff_s: float
    sleep: Callable[[float], None]

    def get_page(self, url: str, params: dict) -> dict:
        """GET one page as JSON, retrying 429, 5xx and dropped connections; redirects are
        followed only within the origin."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        problem, wait, failures, redirects = "", 0.0, 0, 0
        while failures <= self.max_retries:
            if failures:
                self.sleep(wait)
            try:
                resp = self.http.get(url, params=params or None, headers=headers, follow_redirects=False)
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
                wait, failures = _backoff(failures, self.backoff_s), failures + 1
                continue
            if resp.is_redirect:  # followed here, not by httpx: only within the origin
                url, params, redirects = self._redirect(resp, url, redirects), {}, redirects + 1
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                problem = f"HTTP {resp.status_code}"
                wait = _retry_after(resp) if resp.status_code == 429 else None
                wait, failures = (_backoff(failures, self.backoff_s) if wait is None else wait), failures + 1
                continue
            if resp.status_code >= 400:
                hint = " (check the API token)" if resp.status_code in (401, 403) else ""
                raise CatalogError(f"Civitai API refused {_public(url)}: HTTP {resp.status_code}{hint}: "
                                   f"{without_token(resp.text, self.token)[:200]}")
            return _page_json(resp, url)
        raise CatalogError(f"gave up on {_public(url)} after {self.max_retries + 1} attempts, last: {problem}; "
                           f"progress is saved, run the import again to resume")

    def _redirect(self, resp: httpx.Response, url: str, redirects: int) -> str:
        """Where a redirect points, if it may be followed (same origin, not too many)."""
        try:
            target = str(resp.url.join(resp.headers.get("Location", "")))
        except httpx.InvalidURL:
            target = ""
        if _origin(target) != self.origin:
            raise CatalogError(f"Civitai API redirected {_public(url)} to another host "
                               f"({_shown_origin(target)}); not followed: the API token goes only to "
                               f"{_shown_origin(url)}. Use that host as the base URL if it really is the API")
        if redirects >= MAX_REDIRECTS:
            raise CatalogError(f"Civitai API redirected {_public(url)} more than {MAX_REDIRECTS} times; stopped")
        return target


def _page_json(resp: httpx.Response, url: str) -> dict:
    try:
        data = resp.json()
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise CatalogError(f"Civitai API sent a reply that is not JSON (or nested too deeply) from "
                           f"{_public(url)}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"Civitai API sent {type(data).__name__} instead of a page from {_public(url)}")
    return data


def _backoff(attempt: int, base: float) -> float:
    return min(MAX_WAIT_S, base * 2 ** attempt)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdecimal():
        return min(MAX_WAIT_S, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(MAX_WAIT_S, max(0.0, when.timestamp() - time.time()))


def _public(url: str) -> str:
    """The URL without its query (the query may carry a token a user pasted into it)."""
    return str(httpx.URL(url).copy_with(query=None))


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, default ports filled in; None for anything else.
    The token is bound to the origin of the base URL."""
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    default = {"http": 80, "https": 443}.get(u.scheme)
    if default is None or not u.host:
        return None
    return u.scheme, u.host, u.port or default


def _shown_origin(url: str) -> str:
    """scheme://host:port of ``url`` for a message (never its path, query or user info)."""
    origin = _origin(url)
    return f"{origin[0]}://{origin[1]}:{origin[2]}" if origin else repr(url[:80])
