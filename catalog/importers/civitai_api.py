"""Import LoRA items live from the Civitai REST API (``GET /api/v1/models``).

Pages are followed by ``metadata.nextPage`` (or ``nextCursor``). Each page's cards are
committed together with the address of the next page, so an interrupted run resumes there.
429 responses wait for ``Retry-After``; 5xx and dropped connections back off exponentially.
The API token is sent only as an ``Authorization`` header and never appears in messages.
"""
from __future__ import annotations

import email.utils
import sys
import time
from typing import Any, Callable, Iterable

import httpx
from tqdm import tqdm

from catalog.importers.civitai_items import cards_from_item, item_label
from catalog.store import CatalogError, CatalogStore, ImportReport

MAX_WAIT_S = 300.0  # longest single wait, whatever Retry-After asks for


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
    if isinstance(state, dict) and state.get("next"):
        url, page_params, done = state["next"], {}, int(state.get("items", 0))
        report.notices.append(f"resuming after {done} items imported by an interrupted run")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = client or httpx.Client(timeout=60.0, follow_redirects=True)
    try:
        with tqdm(total=limit, unit="item", desc="civitai api", disable=not progress, file=sys.stderr) as bar:
            bar.update(done)
            while url:
                page = _get_page(http, url, page_params, headers, max_retries, backoff_s, sleep)
                items = page.get("items")
                if not isinstance(items, list):
                    raise CatalogError(f"unexpected reply from {_public(url)}: no 'items' list")
                if limit is not None:
                    items = items[: limit - done]
                url, page_params = _next_page(page, url, params)
                done += len(items)
                finished = not url or (limit is not None and done >= limit)
                _commit_page(store, key, items, report, None if finished else {"next": url, "items": done})
                bar.update(len(items))
                if finished:
                    break
    finally:
        if client is None:
            http.close()
    report.notices.insert(0, f"read {done} items from {base_url}")
    return report


def _commit_page(store: CatalogStore, key: str, items: list, report: ImportReport,
                 next_state: dict | None) -> None:
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
                report.count(store.upsert(card, tx))
        store.set_state(key, next_state or {"next": None, "complete": True}, tx)


def _next_page(page: dict, url: str, params: dict) -> tuple[str | None, dict]:
    meta = page.get("metadata") if isinstance(page.get("metadata"), dict) else {}
    if isinstance(meta.get("nextPage"), str) and meta["nextPage"]:
        return meta["nextPage"], {}
    if meta.get("nextCursor") not in (None, ""):
        return str(httpx.URL(url).copy_with(query=None)), params | {"cursor": meta["nextCursor"]}
    return None, {}


def _get_page(http: httpx.Client, url: str, params: dict, headers: dict, max_retries: int,
              backoff_s: float, sleep: Callable[[float], None]) -> dict:
    """GET one page as JSON, retrying 429, 5xx and dropped connections."""
    problem, wait = "", 0.0
    for attempt in range(max_retries + 1):
        if attempt:
            sleep(wait)
        try:
            resp = http.get(url, params=params or None, headers=headers)
        except httpx.TransportError as exc:
            problem = f"connection failed ({type(exc).__name__})"
            wait = _backoff(attempt, backoff_s)
            continue
        if resp.status_code == 429 or resp.status_code >= 500:
            problem = f"HTTP {resp.status_code}"
            wait = _retry_after(resp) if resp.status_code == 429 else None
            wait = _backoff(attempt, backoff_s) if wait is None else wait
            continue
        if resp.status_code >= 400:
            hint = " (check the API token)" if resp.status_code in (401, 403) else ""
            raise CatalogError(f"Civitai API refused {_public(url)}: HTTP {resp.status_code}{hint}: "
                               f"{resp.text[:200]}")
        try:
            data = resp.json()
        except ValueError:
            raise CatalogError(f"Civitai API sent a reply that is not JSON from {_public(url)}") from None
        if not isinstance(data, dict):
            raise CatalogError(f"Civitai API sent {type(data).__name__} instead of a page from {_public(url)}")
        return data
    raise CatalogError(f"gave up on {_public(url)} after {max_retries + 1} attempts, last: {problem}; "
                       f"progress is saved, run the import again to resume")


def _backoff(attempt: int, base: float) -> float:
    return min(MAX_WAIT_S, base * 2 ** attempt)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(MAX_WAIT_S, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(MAX_WAIT_S, max(0.0, when.timestamp() - time.time()))


def _public(url: str) -> str:
    """The URL without its query (the query may carry a token a user pasted into it)."""
    return str(httpx.URL(url).copy_with(query=None))
