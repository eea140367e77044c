"""One writer at a time for the retrieval index files of a catalog, across processes.

Several app processes may share one catalog directory (and one chroma server). Each keeps its
own in-memory index and writes ``<catalog_dir>/index/*`` (manifest, facts, BM25 matrices,
vocabularies) when it updates. Those files only make sense together: a reader that took
``prompts.npz`` from one writer and ``prompts.vocab.json`` from another would score the wrong
terms without any error. So loading and updating the index happen under this lock (an OS file
lock on ``<catalog_dir>/index/.lock``, via the ``filelock`` package; it also excludes other
threads of the same process).
"""
from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from .types import StylusError

LOCK_NAME = ".lock"
WAIT_SECONDS = 900.0  # a first index build of a 100K catalog takes minutes on a small CPU


class IndexLockTimeout(StylusError):
    """Another process held the index lock for too long."""


class index_lock:
    """``with index_lock(catalog_dir): ...`` -- hold the catalog's index lock inside the block."""

    def __init__(self, catalog_dir: str | Path, timeout: float = WAIT_SECONDS):
        folder = Path(catalog_dir) / "index"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_NAME
        self.timeout = timeout
        self._lock = FileLock(str(self.path), timeout=timeout)

    def __enter__(self) -> "index_lock":
        try:
            self._lock.acquire()
        except Timeout:
            raise IndexLockTimeout(
                f"the retrieval index lock {self.path} was held by another process for over "
                f"{self.timeout:.0f} s; is an index build still running? (stop it, or wait)") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
