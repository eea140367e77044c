"""Card vectors shipped with the repository, so that indexing the starter catalog embeds nothing.

``catalog/starter_vectors.bin.gz`` holds one float16 vector per starter card, keyed by the card
id *and* a hash of the dense text that was embedded (``documents.dense_text``). The header
records the embedding model and ``INDEX_FORMAT``: a file of another model or format is ignored
(with a notice), and a card whose dense text changed (an edit, a new refiner) misses the lookup
and is embedded again. A shipped vector is never used for text it was not computed from.

Format (byte-reproducible: gzip without a timestamp): one JSON header line
``{"embedding_model", "index_format", "dim", "dtype": "float16", "rows": [[id, text_hash], ...]}``
then ``len(rows) * dim`` little-endian float16 values. This module reads it; the build tool
tools/starter_vectors.py writes it (with the constants below). Regenerate it with::

    python -m tools.starter_vectors            # from catalog/starter_catalog.jsonl.gz
(``python -m tools.build_starter DUMP`` writes it too, after the starter catalog).
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.index.documents import INDEX_FORMAT

DTYPE = "<f2"  # float16: half the size; cosine changes by ~1e-3, far below ranking differences
DTYPE_NAME = "float16"  # what the header's "dtype" says


def text_hash(text: str) -> str:
    """What identifies an embedded text in the shipped file."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class ShippedVectors:
    """Vectors of one embedding model, looked up by (card id, dense text)."""
    embedding_model: str
    vectors: dict[tuple[str, str], np.ndarray]  # (card id, text hash) -> float32 unit vector

    def lookup(self, card_id: str, text: str) -> np.ndarray | None:
        return self.vectors.get((card_id, text_hash(text)))


def load_shipped(path: Path, embedding_model: str) -> tuple[ShippedVectors | None, str]:
    """The shipped vectors at ``path`` if they were made by ``embedding_model`` for this
    ``INDEX_FORMAT``; else ``None`` and a notice saying why (empty when there is no file)."""
    if not path.is_file():
        return None, ""
    try:
        with gzip.open(path, "rb") as fh:
            header = json.loads(fh.readline())
            raw = fh.read()
    except (OSError, EOFError, ValueError) as exc:
        return None, f"shipped vectors {path.name} cannot be read ({exc}); every card is embedded"
    if header.get("embedding_model") != embedding_model or header.get("index_format") != INDEX_FORMAT:
        return None, (f"shipped vectors {path.name} are for {header.get('embedding_model')!r}, index format "
                      f"{header.get('index_format')}; this index uses {embedding_model!r}, format {INDEX_FORMAT}: "
                      f"every card is embedded (regenerate with: python -m tools.starter_vectors)")
    rows, dim = header.get("rows") or [], int(header.get("dim") or 0)
    if header.get("dtype") != DTYPE_NAME or len(raw) != len(rows) * dim * 2:
        return None, f"shipped vectors {path.name} are damaged (size does not match the header); every card is embedded"
    matrix = np.frombuffer(raw, dtype=DTYPE).reshape(len(rows), dim).astype(np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)  # unit length again after float16
    return ShippedVectors(embedding_model, {(r[0], r[1]): matrix[i] for i, r in enumerate(rows)}), ""


if __name__ == "__main__":  # the builder moved to tools/ (issue 15)
    raise SystemExit("moved: python -m tools.starter_vectors")
