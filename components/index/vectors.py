"""Card vectors in chromadb: an embedded ``PersistentClient`` by default, a ``chroma run``
server through ``HttpClient`` with ``chroma_mode=server``.

Embeddings are always computed by our own :class:`~components.encoder.Embedder` and passed in,
so chromadb never reaches for its default (downloaded) embedding model. The collection records
the embedding model that filled it and refuses vectors of another.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from catalog.settings import Settings
from ground.errors import StylusError

MAX_BATCH = 5000  # chromadb accepts at most 5,461 records per add


class IndexMismatchError(StylusError):
    """The index was built with another embedding model (or catalog) than the one asked for."""


def collection_name(catalog_dir: Path) -> str:
    digest = hashlib.sha256(str(Path(catalog_dir).resolve()).encode()).hexdigest()[:10]
    return f"stylus-cards-{digest}"


def make_client(settings: Settings, path: Path):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_mode == "server":
        try:
            return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port,
                                       settings=chroma_settings)
        except ValueError as exc:  # chromadb raises ValueError when it cannot connect
            raise StylusError(
                f"chroma server at {settings.chroma_host}:{settings.chroma_port} is not reachable ({exc}); "
                f"start one with `chroma run --path DIR --host {settings.chroma_host} --port {settings.chroma_port}` "
                "or set STYLUS_CHROMA_MODE=embedded") from exc
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class VectorStore:
    def __init__(self, client, name: str, embedding_model: str):
        self.embedding_model = embedding_model
        self.collection = client.get_or_create_collection(
            name, metadata={"embedding_model": embedding_model, "hnsw:space": "cosine"}, embedding_function=None)
        built_with = (self.collection.metadata or {}).get("embedding_model")
        if built_with != embedding_model:
            raise IndexMismatchError(
                f"vector collection {name!r} holds embeddings of {built_with!r}, not {embedding_model!r}; "
                "rebuild it with `python -m stylus_ui catalog index --rebuild` or set "
                f"STYLUS_EMBEDDING_MODEL={built_with}")

    def count(self) -> int:
        return self.collection.count()

    def upsert(self, ids: list[str], vectors: np.ndarray, metadatas: list[dict]) -> None:
        for start in range(0, len(ids), MAX_BATCH):
            end = start + MAX_BATCH
            self.collection.upsert(ids=ids[start:end], embeddings=vectors[start:end].tolist(),
                                   metadatas=metadatas[start:end])

    def delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), MAX_BATCH):
            self.collection.delete(ids=ids[start:start + MAX_BATCH])

    def get(self, ids: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``ids`` (those present), for in-memory scoring of many texts."""
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), MAX_BATCH):
            res = self.collection.get(ids=ids[start:start + MAX_BATCH], include=["embeddings"])
            for i, v in zip(res["ids"], res["embeddings"]):
                out[i] = np.asarray(v, dtype=np.float32)
        return out

    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(card id, cosine similarity) of the ``n`` nearest cards."""
        if n < 1:
            return []
        # no count() first (a round trip per query): chromadb returns fewer than n_results
        # (none from an empty collection) without complaint
        res = self.collection.query(query_embeddings=[vector.tolist()], n_results=n, include=["distances"])
        return [(i, 1.0 - float(d)) for i, d in zip(res["ids"][0], res["distances"][0])]


def drop_collection(client, name: str) -> None:
    existing = {getattr(c, "name", c) for c in client.list_collections()}
    if name in existing:
        client.delete_collection(name)
