"""Identify a folder of LoRA files without sidecars by their SHA256 on Civitai.

A1111/ComfyUI users keep folders of adapter files and nothing else. ``identify_folder``
hashes each file once (the store's ``file_hashes`` table caches SHA256 by path, size and
mtime), asks Civitai which model version has that hash (``POST
/api/v1/model-versions/by-hash`` with up to 100 hashes, ``GET .../by-hash/{hash}`` for a
single one), fetches each found model once for its tags and description (``GET
/api/v1/models/{id}``: the version reply carries neither), and builds the card the folder
importer builds when a ``.civitai.info`` sidecar holds that version JSON: model, version,
base model, trigger words, tags, example prompts and images, with the local path kept.

A file Civitai does not know, or that could not be looked up (offline, refused), keeps the
card its own header describes, with a notice saying why. Answers (found and not found) are
kept in the store's import state, so a second run, or a run after an interruption, asks
again only about files it has no answer for; ``refresh`` asks again about all of them.
Requests run ``workers`` at a time; 429 waits for ``Retry-After`` and 5xx or a dropped
connection backs off exponentially (as the API importer does). The token goes only to
``base_url`` as an ``Authorization`` header; redirects are not followed.
"""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx
from tqdm import tqdm

from catalog.lora_file import LoraFileError, check_format, file_hashes, read_safetensors_header
from catalog.store import CatalogError, CatalogStore, ImportReport

from . import without_token
from .civitai_api import _backoff, _public, _retry_after
from .folder import card_for_file, check_folder, iter_adapter_files, merge_with_existing

BATCH = 100  # hashes per POST, Civitai's limit
CIVITAI = "https://civitai.com"


@dataclass
class IdentifyReport(ImportReport):
    """An import report plus what identification did in this run."""
    hashed: int = 0  # files whose SHA256 was computed now (the others came from the hash cache)
    requests: int = 0  # HTTP requests sent to Civitai now (retries included)
    identified: int = 0  # files whose card carries a Civitai version
    unknown: int = 0  # files Civitai does not know
    not_looked_up: int = 0  # files without an answer (offline, refused): asked again next run

    def summary(self) -> str:
        return (f"{super().summary()}; identified {self.identified}, unknown to Civitai {self.unknown}, "
                f"not looked up {self.not_looked_up}; hashed {self.hashed} files, {self.requests} requests")

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {k: getattr(self, k) for k in
                                    ("hashed", "requests", "identified", "unknown", "not_looked_up")}


def identify_folder(store: CatalogStore, folder: str | Path, *, base_url: str = CIVITAI, token: str = "",
                    allow_pickle: bool = False, roots: Iterable[str | Path] | None = None,
                    offline: bool = False, refresh: bool = False, workers: int = 4, progress: bool = True,
                    max_retries: int = 5, backoff_s: float = 1.0, client: httpx.Client | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> IdentifyReport:
    """Identify every adapter file under ``folder`` (see the module docstring). ``roots``: the
    folders a server allows (:func:`catalog.importers.folder.allowed_roots`); ``offline``:
    no lookups, header-only cards for files without a saved answer."""
    if not 1 <= workers <= 16:
        raise ValueError(f"workers={workers} is not allowed; use 1 to 16 requests at a time")
    base_url = base_url.rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise ValueError(f"base_url={base_url!r} is not an http(s) address such as {CIVITAI}")
    root = check_folder(folder, roots)
    report = IdentifyReport()
    hashes = _hash_files(store, root, allow_pickle, workers, progress, report)
    answers: dict[str, dict | None] = {}  # SHA256 -> version JSON, or None for "not on Civitai"
    problems: dict[str, str] = {}  # SHA256 -> why there is no answer
    keys = {sha: f"civitai-by-hash:{base_url}:{sha}" for sha in set(hashes.values())}
    ask = []
    for sha, key in keys.items():
        saved = None if refresh else store.get_state(key)
        if isinstance(saved, dict) and "version" in saved:
            answers[sha] = saved["version"]
        else:
            ask.append(sha)
    api = None if offline else _Civitai(client or httpx.Client(timeout=60.0), base_url, token, max_retries,
                                        backoff_s, sleep, report)
    try:
        if ask and api is None:
            problems.update({sha: "offline run" for sha in ask})
        elif ask:
            _look_up(store, api, sorted(ask), keys, answers, problems, workers, progress)
        _add_model_facts(store, api, base_url, answers, workers, refresh, report)
    finally:
        if api is not None and client is None:
            api.http.close()
    _build_cards(store, root, hashes, answers, problems, allow_pickle, report)
    return report


def _hash_files(store: CatalogStore, root: Path, allow_pickle: bool, workers: int, progress: bool,
                report: IdentifyReport) -> dict[Path, str]:
    """path -> SHA256 for every readable adapter file; computed once, then from the cache."""
    files = list(iter_adapter_files(root, report))
    lock = threading.Lock()

    def one(path: Path) -> tuple[Path, str | None]:
        rel = str(path.relative_to(root))
        try:
            if check_format(path, allow_pickle) == "safetensors":
                read_safetensors_header(path)  # a broken file is skipped before it is looked up
            cached = store.cached_file_hash(path)
            if cached is not None:
                return path, cached[0]
            sha, _ = file_hashes(path, store)
            with lock:
                report.hashed += 1
            return path, sha
        except LoraFileError as exc:
            with lock:
                report.skip(rel, str(exc))
        except OSError as exc:
            with lock:
                report.skip(rel, f"cannot be read: {exc}")
        return path, None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(tqdm(pool.map(one, files), total=len(files), desc=f"hash {root.name}", unit="file",
                         disable=not progress, file=sys.stderr))
    return {path: sha for path, sha in done if sha is not None}


def _look_up(store: CatalogStore, api: "_Civitai", ask: list[str], keys: dict[str, str],
             answers: dict[str, dict | None], problems: dict[str, str], workers: int, progress: bool) -> None:
    """Ask Civitai about ``ask`` in batches of 100; each batch's answers are saved at once, so an
    interrupted run keeps them."""
    batches = [ask[i:i + BATCH] for i in range(0, len(ask), BATCH)]

    def one(batch: list[str]) -> tuple[list[str], dict[str, dict | None] | str]:
        try:
            return batch, api.by_hash(batch)
        except CatalogError as exc:
            return batch, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(ask), desc="civitai by-hash", unit="file", disable=not progress, file=sys.stderr) as bar:
        for batch, result in pool.map(one, batches):
            bar.update(len(batch))
            if isinstance(result, str):
                problems.update({sha: result for sha in batch})
                continue
            with store.transaction() as tx:
                for sha in batch:
                    answers[sha] = result.get(sha)
                    store.set_state(keys[sha], {"version": answers[sha]}, tx)


def _add_model_facts(store: CatalogStore, api: "_Civitai | None", base_url: str, answers: dict[str, dict | None],
                     workers: int, refresh: bool, report: IdentifyReport) -> None:
    """Tags and description of each found model (``/api/v1/models/{id}``), fetched once and
    saved; with ``api`` None (offline) only the saved ones."""
    ids = {v.get("modelId") for v in answers.values() if isinstance(v, dict)}
    ids = {i for i in ids if isinstance(i, int) and not isinstance(i, bool) and i > 0}
    facts: dict[int, dict] = {}
    ask = []
    for model_id in sorted(ids):
        saved = None if refresh and api is not None else store.get_state(f"civitai-model:{base_url}:{model_id}")
        if isinstance(saved, dict):
            facts[model_id] = saved
        elif api is not None:
            ask.append(model_id)

    def one(model_id: int) -> tuple[int, dict | str]:
        assert api is not None  # only asked for with an api
        try:
            item = api.get(f"/api/v1/models/{model_id}")
        except CatalogError as exc:
            return model_id, str(exc)
        item = item if isinstance(item, dict) else {}
        return model_id, {"tags": item.get("tags") if isinstance(item.get("tags"), list) else [],
                          "description": item.get("description") if isinstance(item.get("description"), str)
                          else ""}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for model_id, got in pool.map(one, ask):
            if isinstance(got, str):
                report.notices.append(f"civitai model {model_id}: tags and description not fetched ({got})")
                continue
            facts[model_id] = got
            store.set_state(f"civitai-model:{base_url}:{model_id}", got)
    for sha, version in answers.items():
        if isinstance(version, dict) and version.get("modelId") in facts:
            model = version.get("model") if isinstance(version.get("model"), dict) else {}
            answers[sha] = version | {"model": facts[version["modelId"]] | model}


def _build_cards(store: CatalogStore, root: Path, hashes: dict[Path, str], answers: dict[str, dict | None],
                 problems: dict[str, str], allow_pickle: bool, report: IdentifyReport) -> None:
    """One card per file: from its Civitai version when found, else from its header."""
    seen: dict[str, Path] = {}
    for path, sha in hashes.items():
        rel = str(path.relative_to(root))
        version = answers.get(sha)
        try:
            card = card_for_file(store, path, root, allow_pickle, civitai=version)
        except (LoraFileError, OSError, ValueError) as exc:
            report.skip(rel, f"cannot be described: {exc}")
            continue
        if card.id in seen:
            report.skip(rel, f"same adapter as {seen[card.id].relative_to(root)} (card {card.id})")
            continue
        seen[card.id] = path
        if card.civitai_version_id is not None:
            report.identified += 1
        elif sha in problems:
            report.not_looked_up += 1
            card.notices.append(f"not looked up on Civitai ({problems[sha]}); the card describes the file's own "
                                f"header. Run identify again to look it up")
        else:
            report.unknown += 1
            card.notices.append("not found on Civitai by its SHA256; the card describes the file's own header")
        report.notices += [f"{rel}: {n}" for n in card.notices]
        store.upsert_counted(merge_with_existing(store, card), report, rel)


@dataclass
class _Civitai:
    """Requests to the Civitai API at ``base_url``: token only there, retries, counted."""
    http: httpx.Client
    base_url: str
    token: str
    max_retries: int
    backoff_s: float
    sleep: Callable[[float], None]
    report: IdentifyReport
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def by_hash(self, hashes: list[str]) -> dict[str, dict | None]:
        """SHA256 -> version JSON for the hashes Civitai knows (others absent)."""
        if len(hashes) == 1:
            version = self.get(f"/api/v1/model-versions/by-hash/{hashes[0]}")
            return {hashes[0]: version} if isinstance(version, dict) else {}
        found = self.request("POST", "/api/v1/model-versions/by-hash", hashes)
        if not isinstance(found, list):
            raise CatalogError(f"Civitai by-hash answered {type(found).__name__} instead of a list")
        wanted, out = set(hashes), {}
        for version in found:
            for f in (version.get("files") if isinstance(version, dict) else None) or []:
                got = f.get("hashes") if isinstance(f, dict) else None
                sha = str(got.get("SHA256") or "").upper() if isinstance(got, dict) else ""
                if sha in wanted:
                    out[sha] = version
        return out

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON reply; None for 404. Retries 429 (after ``Retry-After``), 5xx and dropped
        connections; raises :class:`CatalogError` (token masked) for anything else."""
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        problem, wait = "", 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(wait)
            with self._lock:
                self.report.requests += 1
            try:
                resp = self.http.request(method, url, json=body, headers=headers, follow_redirects=False)
            except httpx.TransportError as exc:
                problem, wait = f"connection failed ({type(exc).__name__})", _backoff(attempt, self.backoff_s)
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                problem = f"HTTP {resp.status_code}"
                after = _retry_after(resp) if resp.status_code == 429 else None
                wait = _backoff(attempt, self.backoff_s) if after is None else after
                continue
            if resp.status_code == 404:
                return None
            if resp.status_code >= 300:
                hint = " (check the API token, STYLUS_CIVITAI_TOKEN)" if resp.status_code in (401, 403) else ""
                raise CatalogError(f"Civitai answered {_public(url)} with HTTP {resp.status_code}{hint}: "
                                   f"{without_token(resp.text, self.token)[:200]}")
            try:
                return resp.json()
            except (ValueError, RecursionError):
                raise CatalogError(f"Civitai sent a reply that is not JSON from {_public(url)}") from None
        raise CatalogError(f"no answer from {_public(url)} after {self.max_retries + 1} attempts, last: {problem}")
