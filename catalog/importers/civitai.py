"""Import a Civitai API dump: a JSON array or JSONL of ``/api/v1/models`` items, optionally gzip.

Cards are committed in batches together with the position reached, so a run that is
killed resumes where the last commit left off; a finished run clears that position, and a
second run over the same file reports every card unchanged.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import IO, Any, Iterator

from tqdm import tqdm

from catalog.importers.civitai_items import cards_from_item, item_label
from catalog.store import CatalogError, CatalogStore, ImportReport

__all__ = ["cards_from_item", "import_civitai_file"]

BATCH_CARDS = 200  # cards per transaction: a crash loses at most this much work


def import_civitai_file(store: CatalogStore, path: str | Path, progress: bool = True,
                        batch_size: int = BATCH_CARDS) -> ImportReport:
    """Import every model version of every item in ``path``; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Civitai dump {path} does not exist or is not a file")
    report = ImportReport()
    identity = _identity(path)
    key = f"civitai-file:{identity['path']}"
    start = _resume_point(store.get_state(key), identity)
    if start:
        report.notices.append(f"resuming {path.name} after record {start}: an earlier run was "
                              f"interrupted there (records before it are already in the catalog)")
    batch = _Batch(store, key, identity, report, batch_size)
    seen: dict[str, int] = {}
    items = 0
    with path.open("rb") as raw, tqdm(total=identity["size"], unit="B", unit_scale=True,
                                       desc=f"import {path.name}", disable=not progress,
                                       file=sys.stderr) as bar:
        for number, item in _records(raw, report, start, bar):
            items += 1
            _add_item(item, number, seen, batch, report)
            batch.reached(number)
        batch.flush(complete=True)
    report.notices.insert(0, f"read {items:,} items from {path.name}" +
                          (f" (after record {start})" if start else ""))
    return report


class _Batch:
    """Cards waiting to be committed, with the last record whose cards are all in here."""

    def __init__(self, store: CatalogStore, key: str, identity: dict, report: ImportReport, size: int):
        self.store, self.key, self.identity, self.report, self.size = store, key, identity, report, size
        self.cards: list = []
        self.record = 0

    def add(self, cards: list) -> None:
        self.cards.extend(cards)

    def reached(self, record: int) -> None:
        self.record = record
        if len(self.cards) >= self.size:
            self.flush()

    def flush(self, complete: bool = False) -> None:
        with self.store.transaction() as tx:
            for card in self.cards:
                self.store.upsert_counted(card, self.report, _card_label(card), tx)
            state = self.identity | {"record": 0 if complete else self.record, "complete": complete}
            self.store.set_state(self.key, state, tx)
        self.cards = []


def _card_label(card: Any) -> str:
    return f"civitai item {card.civitai_model_id} version {card.civitai_version_id}"


def _add_item(item: Any, number: int, seen: dict[str, int], batch: _Batch, report: ImportReport) -> None:
    cards, messages = cards_from_item(item)
    where = f"record {number}"
    if not cards:
        label = item_label(item)
        report.skip(f"{label} ({where})", "; ".join(m.removeprefix(f"{label}: ") for m in messages)
                    or "no usable versions")
        return
    report.notices.extend(f"{m} ({where})" for m in messages)
    fresh = []
    for card in cards:
        if card.id in seen:
            report.notices.append(f"{item_label(item)} ({where}): version {card.civitai_version_id} "
                                  f"already read at record {seen[card.id]}; duplicate ignored")
            continue
        seen[card.id] = number
        fresh.append(card)
    batch.add(fresh)


# ---- reading ------------------------------------------------------------------------------
def _identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _resume_point(state: Any, identity: dict[str, Any]) -> int:
    if not isinstance(state, dict) or state.get("complete"):
        return 0
    same = all(state.get(k) == identity[k] for k in ("size", "mtime_ns"))
    return int(state.get("record", 0)) if same else 0


def _records(raw: IO[bytes], report: ImportReport, start: int, bar: tqdm) -> Iterator[tuple[int, Any]]:
    """(record number, parsed item) after ``start``; JSONL records are line numbers, array
    records are 1-based positions. Broken records are reported and skipped."""
    magic = raw.read(2)
    raw.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw
    try:
        first = _first_byte(stream)
        if first == b"[":
            yield from _array_records(stream, report, start)
            bar.update(bar.total - bar.n)
            return
        done = 0
        for number, line in enumerate(stream, 1):
            if number % 64 == 0 or number <= start:
                bar.update(raw.tell() - done)
                done = raw.tell()
            if number <= start or not line.strip():
                continue
            item = _parse_line(line, number, report)
            if item is not None:
                yield number, item
        bar.update(bar.total - bar.n)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        report.notices.append(f"reading stopped early: {exc} (a truncated or corrupt file?); "
                              f"everything read before that point was imported")


def _first_byte(stream: IO[bytes]) -> bytes:
    head = stream.peek(64)  # BufferedReader and GzipFile both peek without consuming
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def _parse_line(line: bytes, number: int, report: ImportReport) -> Any:
    try:
        text = line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        text = line.decode("utf-8", errors="replace")
        report.notices.append(f"line {number}: bytes that are not UTF-8 (at byte {exc.start}) were "
                              f"replaced with U+FFFD")
    try:
        return json.loads(text.strip())
    except json.JSONDecodeError as exc:
        report.skip(f"line {number}", f"broken JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})")
    except RecursionError:
        report.skip(f"line {number}", "JSON nested too deeply to read (deeper than Python's recursion limit)")
    except ValueError as exc:  # an integer of more than 4,300 digits
        report.skip(f"line {number}", f"JSON that cannot be read: {str(exc)[:120]}")
    return None


def _array_records(stream: IO[bytes], report: ImportReport, start: int) -> Iterator[tuple[int, Any]]:
    data = stream.read()
    text = data.decode("utf-8-sig", errors="replace")
    if "\ufffd" in text and b"\xef\xbf\xbd" not in data:
        report.notices.append("the file holds bytes that are not UTF-8; they were replaced with U+FFFD")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"the JSON array is broken at line {exc.lineno} column {exc.colno}: {exc.msg}; "
                           f"nothing was imported (JSONL files can skip single broken lines)") from None
    except (RecursionError, ValueError) as exc:  # ValueError: an integer of more than 4,300 digits
        why = ("is nested too deeply" if isinstance(exc, RecursionError)
               else f"holds a value that cannot be read ({str(exc)[:120]})")
        raise CatalogError(f"the JSON array {why}; nothing was imported (JSONL files can skip single "
                           f"broken lines)") from None
    for number, item in enumerate(items, 1):
        if number > start:
            yield number, item
