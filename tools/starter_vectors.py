"""Write the card vectors shipped with the repository (``catalog/starter_vectors.bin.gz``).

    python -m tools.starter_vectors       # from catalog/starter_catalog.jsonl.gz

Embeds the dense text of every starter card with the default embedding model (MiniLM) and writes
the file in the format components/index/shipped.py reads (its docstring describes it; the format
constants come from there). The same cards and model give the same bytes: gzip without a
timestamp. ``python -m tools.build_starter DUMP`` writes it too, after the starter catalog.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from catalog.card import AdapterCard
from catalog.settings import quiet_environment
from catalog.starter import STARTER_VECTORS_PATH, load_starter_cards
from components.encoder import Embedder
from components.index.documents import INDEX_FORMAT, dense_text
from components.index.shipped import DTYPE, DTYPE_NAME, text_hash
from tools.shipped_files import reproducible_gzip


def write_shipped(cards: list[AdapterCard], embedder: Embedder, path: Path) -> str:
    """Embed the dense text of every card with ``embedder`` and write the file; returns a summary."""
    texts = [dense_text(c) for c in cards]
    unique = list(dict.fromkeys(texts))
    vectors = embedder.embed(unique) if unique else np.zeros((0, 0), dtype=np.float32)
    row = {t: i for i, t in enumerate(unique)}
    matrix = np.asarray(vectors, dtype=np.float32)[[row[t] for t in texts]] if texts else vectors
    header = {"embedding_model": embedder.name, "index_format": INDEX_FORMAT, "dim": int(matrix.shape[1]),
              "dtype": DTYPE_NAME, "rows": [[c.id, text_hash(t)] for c, t in zip(cards, texts)]}
    with reproducible_gzip(path) as gz:
        gz.write(json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n")
        gz.write(matrix.astype(DTYPE).tobytes())
    return (f"wrote {len(cards)} vectors ({embedder.name}, {header['dim']}-d {DTYPE_NAME}, index format "
            f"{INDEX_FORMAT}) to {path} ({path.stat().st_size / 1e6:.2f} MB)")


def write_starter_vectors(cards: list[AdapterCard], path: Path | None = None) -> str:
    """The vectors of the starter catalog with the default embedding model (MiniLM), written to
    ``path`` (default: ``catalog/starter_vectors.bin.gz``, where catalog/starter.py reads them)."""
    from components.encoder import MINILM, SentenceTransformerEmbedder

    return write_shipped(cards, SentenceTransformerEmbedder(MINILM, device="cpu"), path or STARTER_VECTORS_PATH)


def main() -> None:
    """Regenerate the shipped vectors from the shipped starter catalog."""
    quiet_environment()  # before the embedding model's libraries are imported
    print(write_starter_vectors(load_starter_cards()))


if __name__ == "__main__":
    main()
