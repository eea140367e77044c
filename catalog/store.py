"""The catalog on disk: one SQLite database (WAL, full sync) in the catalog directory.

Each upsert is a transaction, so a crash (even kill -9) leaves every committed card in
place and nothing half-written. Importers record their progress in ``import_state`` and
resume from it. Source, refined and curation parts live in separate columns: a re-import
replaces the source part only.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

from ground.errors import StylusError

from .card import AdapterCard, Curation, Refined

DB_NAME = "catalog.sqlite3"
SCHEMA_VERSION = 1
UpsertStatus = Literal["added", "updated", "unchanged"]
OPEN_TIMEOUT_S = 30.0  # how long an open waits for other processes opening the same catalog

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    civitai_model_id INTEGER,
    name TEXT NOT NULL,
    base_model TEXT NOT NULL,
    adapter_type TEXT NOT NULL,
    nsfw INTEGER NOT NULL,
    real_person INTEGER NOT NULL,
    blocked INTEGER NOT NULL DEFAULT 0,
    download_count INTEGER NOT NULL DEFAULT 0,
    content_hash TEXT NOT NULL,
    source_json TEXT NOT NULL,
    refined_json TEXT NOT NULL DEFAULT '{}',
    curation_json TEXT NOT NULL DEFAULT '{}',
    imported_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cards_model ON cards(civitai_model_id);
CREATE INDEX IF NOT EXISTS cards_base ON cards(base_model);
CREATE TABLE IF NOT EXISTS import_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL, autov2 TEXT NOT NULL
);
"""


class CatalogError(StylusError):
    """A catalog operation failed (unknown id, unreadable catalog, invalid edit)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ImportReport:
    """What an import did; ``skipped`` holds (item, reason) pairs."""
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def count(self, status: UpsertStatus) -> None:
        setattr(self, status, getattr(self, status) + 1)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append((item, reason))

    def summary(self) -> str:
        return (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
                f"skipped {len(self.skipped)}")

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "skipped": [{"item": i, "reason": r} for i, r in self.skipped],
                "notices": self.notices}


def _connect(path: Path) -> sqlite3.Connection:
    """Open (and on first use create) the database; several processes may do this at once.

    Switching a new database to WAL takes an exclusive lock and SQLite answers a concurrent
    switch with "database is locked" at once, without its busy timeout, so the whole open is
    retried until ``OPEN_TIMEOUT_S``.
    """
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    delay = 0.01
    while True:
        db = None
        try:
            db = sqlite3.connect(path, check_same_thread=False, timeout=OPEN_TIMEOUT_S,
                                 isolation_level=None)
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return db
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise CatalogError(f"catalog database {path} cannot be opened: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class CatalogStore:
    """Cards in ``<catalog_dir>/catalog.sqlite3``. Safe to share between threads."""

    def __init__(self, catalog_dir: str | Path):
        self.dir = Path(catalog_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self._lock = threading.RLock()
        self._db = _connect(self.path)
        self._screen_cache: tuple[str, dict[str, int]] | None = None  # (rows fingerprint, counts)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "CatalogStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- reads -------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM cards").fetchone()[0]

    def __contains__(self, card_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM cards WHERE id=?", (card_id,)).fetchone() is not None

    def get(self, card_id: str) -> AdapterCard:
        card = self.find(card_id)
        if card is None:
            raise CatalogError(f"no adapter card with id {card_id!r} in catalog {self.dir}")
        return card

    def find(self, card_id: str) -> AdapterCard | None:
        with self._lock:
            row = self._db.execute(
                "SELECT source_json, refined_json, curation_json FROM cards WHERE id=?", (card_id,)
            ).fetchone()
        return _card_from_row(row) if row else None

    def get_many(self, ids: list[str]) -> dict[str, AdapterCard]:
        out: dict[str, AdapterCard] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT id, source_json, refined_json, curation_json FROM cards WHERE id IN ({marks})",
                    chunk).fetchall()
            out.update({r[0]: _card_from_row(r[1:]) for r in rows})
        return out

    def iter_cards(self, where: str = "", params: tuple = (), order: str = "id") -> Iterator[AdapterCard]:
        """All cards (optionally filtered by a SQL ``where`` over the indexed columns)."""
        sql = "SELECT source_json, refined_json, curation_json FROM cards"
        if where:
            sql += " WHERE " + where
        sql += f" ORDER BY {order}"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        for row in rows:
            yield _card_from_row(row)

    def ids_for_model(self, civitai_model_id: int) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT id FROM cards WHERE civitai_model_id=? ORDER BY id", (civitai_model_id,))]

    def data_version(self) -> int:
        """A number that changes whenever another connection (e.g. another app process sharing
        this catalog) has committed since the last call; this store's own commits leave it as is."""
        with self._lock:
            return self._db.execute("PRAGMA data_version").fetchone()[0]

    def hashes(self) -> dict[str, str]:
        """card id -> hash of everything retrieval sees (source + refined + curation)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, content_hash, refined_json, curation_json FROM cards").fetchall()
        import hashlib
        return {r[0]: hashlib.sha1("|".join(r[1:]).encode()).hexdigest()[:20] for r in rows}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            q = self._db.execute
            total = q("SELECT COUNT(*) FROM cards").fetchone()[0]
            by = lambda col: dict(q(f"SELECT {col}, COUNT(*) FROM cards GROUP BY {col} ORDER BY COUNT(*) DESC").fetchall())  # noqa: E731
            models = q("SELECT COUNT(DISTINCT civitai_model_id) FROM cards WHERE civitai_model_id IS NOT NULL").fetchone()[0]
            sd15_models = q("SELECT COUNT(DISTINCT civitai_model_id) FROM cards WHERE base_model='SD 1.5' AND civitai_model_id IS NOT NULL").fetchone()[0]
            flags = {
                "nsfw": q("SELECT COUNT(*) FROM cards WHERE nsfw=1").fetchone()[0],
                "real_person": q("SELECT COUNT(*) FROM cards WHERE real_person=1").fetchone()[0],
                "blocked": q("SELECT COUNT(*) FROM cards WHERE blocked=1").fetchone()[0],
                "refined": q("SELECT COUNT(*) FROM cards WHERE refined_json != '{}'").fetchone()[0],
            }
        return {"cards": total, "civitai_models": models, "civitai_models_sd15": sd15_models,
                "by_base_model": by("base_model"), "by_adapter_type": by("adapter_type"),
                "by_source": by("source"), "flags": flags, "content_screen": self.screen_stats()}

    def screen_stats(self) -> dict[str, int]:
        """What the content screen (catalog/safety.py, curation included) rates beyond the source's
        flag: ``explicit`` cards the source did not flag nsfw, and ``suggestive`` cards. Reading every
        card takes about a second per 10K cards, so the counts are kept until a row changes."""
        import hashlib
        digest = hashlib.sha1()
        with self._lock:
            for row in self._db.execute(
                    "SELECT id, content_hash, refined_json, curation_json FROM cards ORDER BY id"):
                digest.update("\x00".join(row).encode("utf-8"))
        key = digest.hexdigest()
        if self._screen_cache is not None and self._screen_cache[0] == key:
            return dict(self._screen_cache[1])
        counts = {"explicit": 0, "suggestive": 0}
        for card in self.iter_cards():
            rating = card.effective_rating()
            if rating == "suggestive" or (rating == "explicit" and not card.nsfw):
                counts[rating] += 1
        self._screen_cache = (key, counts)
        return dict(counts)

    # ---- writes ------------------------------------------------------------------
    def upsert(self, card: AdapterCard, conn: sqlite3.Connection | None = None) -> UpsertStatus:
        """Insert or update the source part of ``card``; refined and curation are kept.

        Pass ``conn`` from :meth:`transaction` to group several upserts in one commit. A card
        SQLite cannot hold raises :class:`CatalogError` and writes nothing (the transaction
        stays usable for the other cards).
        """
        if conn is None:
            with self.transaction() as tx:
                return self.upsert(card, tx)
        try:
            return self._upsert(card, conn)
        except OverflowError:  # checked before anything is written
            raise CatalogError(f"card {card.id!r} cannot be stored: a number in it is outside SQLite's "
                               f"64-bit integers") from None
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start:exc.end]
            raise CatalogError(f"card {card.id!r} cannot be stored: its text holds {bad!r}, which is not "
                               f"valid Unicode (a lone UTF-16 surrogate)") from None

    def upsert_counted(self, card: AdapterCard, report: ImportReport, item: str,
                       conn: sqlite3.Connection | None = None) -> None:
        """Upsert ``card`` and count it in ``report``; a card the catalog cannot hold is skipped
        there as ``item`` with the reason, and the import goes on."""
        try:
            report.count(self.upsert(card, conn))
        except CatalogError as exc:
            report.skip(item, str(exc))

    def _upsert(self, card: AdapterCard, conn: sqlite3.Connection) -> UpsertStatus:
        row = conn.execute("SELECT content_hash, source_json FROM cards WHERE id=?", (card.id,)).fetchone()
        if row is not None:
            card = _keep_local_facts(card, json.loads(row[1]))
        h = card.content_hash()
        if row is not None and row[0] == h:
            return "unchanged"
        ts = now_iso()
        src = json.dumps(card.source_dict(), ensure_ascii=False)
        cols = (card.source, card.civitai_model_id, card.name, card.base_model, card.adapter_type,
                int(card.nsfw), int(card.real_person), card.download_count, h, src)
        if row is None:
            conn.execute(
                "INSERT INTO cards (id, source, civitai_model_id, name, base_model, adapter_type, nsfw,"
                " real_person, download_count, content_hash, source_json, refined_json, curation_json,"
                " imported_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (card.id, *cols, _dump(card.refined), _dump(card.curation), ts, ts))
            return "added"
        conn.execute(
            "UPDATE cards SET source=?, civitai_model_id=?, name=?, base_model=?, adapter_type=?,"
            " nsfw=?, real_person=?, download_count=?, content_hash=?, source_json=?, updated_at=?"
            " WHERE id=?", (*cols, ts, card.id))
        return "updated"

    def set_refined(self, card_id: str, refined: Refined, conn: sqlite3.Connection | None = None) -> None:
        if conn is None:
            with self.transaction() as tx:
                return self.set_refined(card_id, refined, tx)
        cur = conn.execute("UPDATE cards SET refined_json=? WHERE id=?", (_dump(refined), card_id))
        if cur.rowcount == 0:
            raise CatalogError(f"no adapter card with id {card_id!r} to refine")

    def edit(self, card_id: str, editor: str = "", **changes: Any) -> AdapterCard:
        """Apply curator edits (fields of :class:`Curation`) atomically; returns the new card."""
        unknown = sorted(set(changes) - set(Curation.model_fields) - {"edited_by", "edited_at"})
        if unknown:
            raise CatalogError(f"cannot edit {', '.join(unknown)}; editable fields: "
                               f"{', '.join(k for k in Curation.model_fields if k not in ('edited_by', 'edited_at'))}")
        with self.transaction() as tx:
            row = tx.execute("SELECT curation_json FROM cards WHERE id=?", (card_id,)).fetchone()
            if row is None:
                raise CatalogError(f"no adapter card with id {card_id!r} in catalog {self.dir}")
            data = json.loads(row[0]) | changes | {"edited_by": editor, "edited_at": now_iso()}
            try:
                cur = Curation.model_validate(data)
            except ValueError as exc:
                raise CatalogError(f"invalid edit of {card_id}: {_first_error(exc)}") from None
            # the nsfw column follows the curator's switch, and the source's flag again once it is cleared
            tx.execute("UPDATE cards SET curation_json=?, blocked=?, nsfw=CASE WHEN ? IS NULL THEN"
                       " coalesce(json_extract(source_json, '$.nsfw'), nsfw) ELSE ? END, updated_at=? WHERE id=?",
                       (_dump(cur), int(cur.blocked), cur.nsfw, int(bool(cur.nsfw)), now_iso(), card_id))
        return self.get(card_id)

    def delete(self, card_id: str) -> bool:
        with self.transaction() as tx:
            return tx.execute("DELETE FROM cards WHERE id=?", (card_id,)).rowcount > 0

    # ---- import progress and file hash cache ---------------------------------------
    def get_state(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM import_state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_state(self, key: str, value: Any, conn: sqlite3.Connection | None = None) -> None:
        db = conn or self._db
        with self._lock:
            db.execute("INSERT OR REPLACE INTO import_state VALUES (?,?,?)", (key, json.dumps(value), now_iso()))

    def cached_file_hash(self, path: Path) -> tuple[str, str] | None:
        st = path.stat()
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, sha256, autov2 FROM file_hashes WHERE path=?",
                                   (str(path.resolve()),)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2], row[3]
        return None

    def store_file_hash(self, path: Path, sha256: str, autov2: str) -> None:
        st = path.stat()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?,?)",
                             (str(path.resolve()), st.st_size, st.st_mtime_ns, sha256, autov2))


def _keep_local_facts(card: AdapterCard, old: dict) -> AdapterCard:
    """A re-import from a remote source keeps what a folder import learnt from the local file
    (its path and the adapter type detected from its keys)."""
    if card.local_path or not old.get("local_path"):
        return card
    return card.model_copy(update={"local_path": old["local_path"],
                                   "adapter_type": old.get("adapter_type", card.adapter_type)})


def _dump(model: Any) -> str:
    data = model.model_dump(mode="json", exclude_defaults=True)
    return json.dumps(data, ensure_ascii=False) if data else "{}"


def _card_from_row(row: tuple[str, str, str]) -> AdapterCard:
    data = json.loads(row[0])
    data["refined"] = json.loads(row[1])
    data["curation"] = json.loads(row[2])
    return AdapterCard.model_validate(data)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
    return str(exc)
