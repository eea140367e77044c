"""The retrieval index of one catalog: lexical (two sparse BM25 indexes) + dense (chromadb).

Lives in ``<catalog_dir>/index/``: ``manifest.json`` (embedding model, catalog state, counts),
``facts.json`` (per-card filter facts and the catalog hash each card was indexed at),
``prompts.npz``/``cards.npz`` (+ vocabularies) and, in embedded mode, ``chroma/``.

``update()`` is incremental: only cards whose catalog hash (source + refined + curation)
changed are re-read, re-tokenised and re-embedded; deleted and blocked cards leave the index.
A card whose dense text has a shipped vector (shipped.py: the starter catalog's, same model,
same text) takes it instead of being embedded. An index built with another embedding model is
refused, never mixed.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from catalog.search import CardQuery, search_cards
from catalog.settings import Settings
from catalog.starter import STARTER_VECTORS_PATH
from ground.atomic_files import write_text
from components.encoder import Embedder
from components.index.documents import INDEX_FORMAT, CardFacts, card_documents
from components.index.lexical import SparseBM25
from components.index.shipped import ShippedVectors, load_shipped
from components.index.vectors import IndexMismatchError, VectorStore, collection_name, drop_collection, make_client

QUERY_CACHE = 256  # query embeddings kept (LRU)
BATCH = 512  # cards read, tokenised and embedded per step (bounded memory, steady progress bar)


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    embedding_model: str = ""
    embedded: int = 0  # dense texts sent to the embedder
    shipped: int = 0  # cards that took a shipped vector instead
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reuse = f"; {self.shipped} shipped vectors, {self.embedded} texts embedded" if self.shipped else ""
        return (f"index: {self.added} added, {self.updated} updated, {self.removed} removed, "
                f"{self.unchanged} unchanged in {self.seconds:.1f} s ({self.embedding_model}{reuse})")


@dataclass(frozen=True)
class RankedCard:
    """One line of a ranking without the cards loaded (``StylusEngine.rank``): the card's id, its
    Civitai model id (None for other sources) and its fused retrieval score."""
    id: str
    civitai_model_id: int | None
    score: float


Progress = Callable[[int, int], None]  # (cards done, cards to index) while an update runs


def catalog_state(hashes: dict[str, str]) -> str:
    blob = "\n".join(f"{k}:{v}" for k, v in sorted(hashes.items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CardIndex:
    def __init__(self, settings: Settings, embedder: Embedder, allow_other_model: bool = False,
                 shipped_path: Path | None = None):
        """``allow_other_model``: open an index of another model only to :meth:`rebuild` it.
        ``shipped_path``: vectors to take instead of embedding (default: the starter catalog's)."""
        self.settings = settings
        self.embedder = embedder
        self.shipped_path = STARTER_VECTORS_PATH if shipped_path is None else shipped_path
        self._shipped: ShippedVectors | None = None  # read on the first update that embeds
        self._shipped_read = False
        self.dir = Path(settings.catalog_dir) / "index"
        self.collection = collection_name(settings.catalog_dir)
        self.manifest: dict = self._read_json("manifest.json", {})
        if not allow_other_model:
            self._check_model()
        raw_facts = self._read_json("facts.json", {})
        self.facts: dict[str, CardFacts] = {k: CardFacts(**v["facts"]) for k, v in raw_facts.items()}
        self.indexed_hash: dict[str, str] = {k: v["hash"] for k, v in raw_facts.items()}
        self._facts_text: dict[str, str] = {}  # facts.json entry per card (see _facts_json)
        if not self.manifest:
            self.indexed_hash = {k: "" for k in self.indexed_hash}  # unknown/old format: re-index all
        self.prompts = SparseBM25.load(self.dir, "prompts")
        self.cards = SparseBM25.load(self.dir, "cards")
        self._vectors: VectorStore | None = None
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()  # recent query embeddings
        self._query_lock = threading.Lock()
        self._matrix: tuple[tuple[str, ...], np.ndarray] | None = None  # (ids, vectors) in memory

    # ---- state ------------------------------------------------------------------------
    def _read_json(self, name: str, default):
        path = self.dir / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else default

    def _write_json(self, name: str, data) -> None:
        write_text(self.dir / name, json.dumps(data, ensure_ascii=False))  # unique temp name, then rename

    def _check_model(self) -> None:
        built_with = self.manifest.get("embedding_model")
        if built_with and built_with != self.embedder.name:
            raise IndexMismatchError(
                f"the index in {self.dir} was built with embedding model {built_with!r}, but settings ask for "
                f"{self.embedder.name!r}; rebuild it with `python -m stylus_ui catalog index --rebuild` "
                f"or set STYLUS_EMBEDDING_MODEL={built_with}")
        if self.manifest and self.manifest.get("format") != INDEX_FORMAT:
            self.manifest = {}  # older document format: everything is re-indexed below

    @property
    def vectors(self) -> VectorStore:
        if self._vectors is None:
            client = make_client(self.settings, self.dir / "chroma")
            self._vectors = VectorStore(client, self.collection, self.embedder.name)
        return self._vectors

    def __len__(self) -> int:
        return len(self.facts)

    # ---- building ---------------------------------------------------------------------
    def rebuild(self, store, progress: bool = False, on_progress: Progress | None = None) -> IndexReport:
        """Forget everything (also vectors of another model) and index the catalog again."""
        client = make_client(self.settings, self.dir / "chroma")
        drop_collection(client, self.collection)
        self._vectors = None
        for path in self.dir.glob("*"):
            if path.is_file():
                path.unlink()
        self.manifest, self.facts, self.indexed_hash, self._facts_text = {}, {}, {}, {}
        self.prompts, self.cards, self._vectors = SparseBM25(), SparseBM25(), None
        return self.update(store, progress=progress, on_progress=on_progress)

    def update(self, store, progress: bool = False, on_progress: Progress | None = None) -> IndexReport:
        """``progress``: a progress bar on stderr; ``on_progress(done, total)``: called before the
        first batch and after each (a start-up status line shows it)."""
        start = time.perf_counter()
        report = IndexReport(embedding_model=self.embedder.name)
        hashes = store.hashes()
        blocked = {c.id for c in search_cards(store, CardQuery(status="blocked", limit=None))} if hashes else set()
        wanted = {k: v for k, v in hashes.items() if k not in blocked}
        changed = [k for k, v in wanted.items() if self.indexed_hash.get(k) != v]
        removed = [k for k in self.indexed_hash if k not in wanted]
        report.unchanged = len(wanted) - len(changed)
        if self.vectors.count() == 0 and self.indexed_hash and not changed:
            changed = list(wanted)  # the server lost its vectors: embed again
        bar = None
        if progress and changed:
            from tqdm import tqdm
            bar = tqdm(total=len(changed), desc="index", unit="card")
        self._remove(removed)
        report.removed = len(removed)
        self._forget_lexical([k for k in changed if k in self.indexed_hash])
        encoded: dict[str, list] = {"prompts": [], "cards": []}
        if changed:
            self._load_shipped(report)
        if on_progress is not None:
            on_progress(0, len(changed))
        try:
            for i in range(0, len(changed), BATCH):
                ids = changed[i:i + BATCH]
                cards = store.get_many(ids)
                for card_id in ids:
                    if card_id in self.indexed_hash:
                        report.updated += 1
                    else:
                        report.added += 1
                self._add([cards[k] for k in ids if k in cards], wanted, encoded, report)
                if bar is not None:
                    bar.update(len(ids))
                if on_progress is not None:
                    on_progress(min(i + BATCH, len(changed)), len(changed))
        finally:  # the lexical documents of every card added so far join in one copy
            self.prompts.append(encoded["prompts"])
            self.cards.append(encoded["cards"])
            if bar is not None:
                bar.close()
        if changed or removed or not self.manifest:
            self._save(wanted, time.perf_counter() - start)
        report.seconds = time.perf_counter() - start
        return report

    def _remove(self, ids: list[str]) -> None:
        if not ids:
            return
        self._forget_lexical(ids)
        self.vectors.delete(ids)
        self._matrix = None
        for k in ids:
            self.facts.pop(k, None)
            self.indexed_hash.pop(k, None)
            self._facts_text.pop(k, None)

    def _forget_lexical(self, ids: list[str]) -> None:
        self.prompts.remove(set(ids))
        self.cards.remove(set(ids))

    def _load_shipped(self, report: IndexReport) -> None:
        """Read the shipped vectors once, if they fit this index (model, format); a file that does
        not fit is said in the report, never used."""
        if not self._shipped_read:
            self._shipped, notice = load_shipped(self.shipped_path, self.embedder.name)
            self._shipped_read = True
            if notice:
                report.notices.append(notice)

    def _add(self, cards: list, hashes: dict[str, str], encoded: dict[str, list], report: IndexReport) -> None:
        """Embed (or take the shipped vectors of) and store the vectors of ``cards``; their lexical
        documents go to ``encoded`` (appended once per update: appending per batch copied the
        whole matrix each time)."""
        docs = [card_documents(c) for c in cards]
        self._matrix = None
        encoded["prompts"].append(self.prompts.encode([(d.facts.id, t) for d in docs for t in d.prompt_terms]))
        encoded["cards"].append(self.cards.encode([(d.facts.id, d.card_terms) for d in docs]))
        found = [self._shipped.lookup(d.facts.id, d.dense_text) if self._shipped else None for d in docs]
        texts = list(dict.fromkeys(d.dense_text for d, v in zip(docs, found) if v is None))  # versions of one model share a text
        embedded = self.embedder.embed(texts) if texts else None
        report.embedded += len(texts)
        report.shipped += sum(v is not None for v in found)
        row = {t: i for i, t in enumerate(texts)}
        vectors = np.stack([v if v is not None else embedded[row[d.dense_text]] for d, v in zip(docs, found)]) \
            if docs else np.zeros((0, 0), dtype=np.float32)
        metadatas = [{"index_hash": d.index_hash, "base_model": d.facts.base_model} for d in docs]
        self.vectors.upsert([d.facts.id for d in docs], vectors, metadatas)
        for d in docs:
            self.facts[d.facts.id] = d.facts
            self.indexed_hash[d.facts.id] = hashes[d.facts.id]
            self._facts_text.pop(d.facts.id, None)

    def _facts_json(self) -> str:
        """facts.json text; each card's entry is serialised once and kept until the card changes."""
        parts = []
        for k, f in self.facts.items():
            part = self._facts_text.get(k)
            if part is None:
                part = self._facts_text[k] = json.dumps(
                    {k: {"hash": self.indexed_hash[k], "facts": f.to_dict()}}, ensure_ascii=False)[1:-1]
            parts.append(part)
        return "{" + ", ".join(parts) + "}"

    def _save(self, hashes: dict[str, str], seconds: float) -> None:
        self.prompts.save(self.dir, "prompts")
        self.cards.save(self.dir, "cards")
        write_text(self.dir / "facts.json", self._facts_json())
        self.manifest = {
            "format": INDEX_FORMAT, "embedding_model": self.embedder.name,
            "chroma_mode": self.settings.chroma_mode, "collection": self.collection,
            "catalog_state": catalog_state({k: hashes[k] for k in self.indexed_hash}),
            "cards": len(self.facts), "prompt_documents": len(self.prompts),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "last_update_seconds": round(seconds, 3),
        }
        self._write_json("manifest.json", self.manifest)

    # ---- helpers for the retriever -------------------------------------------------------
    def forget_queries(self) -> None:
        """Drop the cached query embeddings (benchmarks time cold queries)."""
        with self._query_lock:
            self._query_vectors.clear()

    def vector_matrix(self, ids: list[str]) -> np.ndarray:
        """``(len(ids), dim)`` card vectors in ``ids`` order (zero rows for missing ones), read from
        the vector store once and kept until the indexed cards change (concept scoring compares a
        prompt's few concepts with every card at once: one matrix product, no store round trip)."""
        key = tuple(ids)
        cached = self._matrix
        if cached is not None and cached[0] == key:
            return cached[1]
        found = self.vectors.get(list(ids))
        dim = len(next(iter(found.values()))) if found else 0
        matrix = np.zeros((len(ids), dim), dtype=np.float32)
        for row, card_id in enumerate(ids):
            v = found.get(card_id)
            if v is not None:
                matrix[row] = v
        self._matrix = (key, matrix)
        return matrix

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Embeddings of short query texts through the same LRU cache as whole prompts."""
        out, missing = [None] * len(texts), []
        with self._query_lock:
            for n, t in enumerate(texts):
                v = self._query_vectors.get(t)
                if v is None:
                    missing.append(n)
                else:
                    self._query_vectors.move_to_end(t)
                    out[n] = v
        if missing:
            vectors = self.embedder.embed([texts[n] for n in missing])
            with self._query_lock:
                for n, v in zip(missing, vectors):
                    out[n] = np.asarray(v)
                    self._query_vectors[texts[n]] = out[n]
                while len(self._query_vectors) > QUERY_CACHE:
                    self._query_vectors.popitem(last=False)
        return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)

    def dense_scores(self, text: str, n: int) -> list[tuple[str, float]]:
        if not text.strip() or len(self) == 0:
            return []
        # a prompt asked again (retrieve, compose, variants...) is embedded once
        return self.vectors.query(self.embed_texts([text])[0], n)
