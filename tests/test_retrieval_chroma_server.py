"""chroma_mode=server for real: a `chroma run` server started by the fixture, HttpClient to it."""
from __future__ import annotations

import socket

import pytest

from tests.fakes.chroma_server import chroma_server as run_chroma

from catalog.settings import Settings
from components.index.card_index import CardIndex
from components.refiner.offline import refine_store
from components.retriever import Retriever
from components.types import StylusError
from tests.retrieval_helpers import HashEmbedder, small_catalog


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    with run_chroma(tmp_path_factory.mktemp("chroma"), _free_port()) as port:
        yield port


def test_server_mode_indexes_and_retrieves(store, tmp_path, chroma_server):
    for c in small_catalog():
        store.upsert(c)
    refine_store(store)
    settings = Settings(home=tmp_path / "home", catalog_dir=store.dir, chroma_mode="server",
                        chroma_port=chroma_server)
    retriever = Retriever(settings, store, embedder=HashEmbedder())
    assert retriever.index.vectors.count() == 8
    assert retriever.retrieve("cyber samurai armor").candidates[0].id == "civitai-2"
    # the server records the model too: another model is refused even without the local manifest
    (retriever.index.dir / "manifest.json").unlink()
    with pytest.raises(StylusError, match="test-hash-32"):
        CardIndex(settings, HashEmbedder("other-model")).update(store)


def test_server_down_is_a_clear_error(store, tmp_path):
    settings = Settings(home=tmp_path / "home", catalog_dir=store.dir, chroma_mode="server", chroma_port=_free_port())
    store.upsert(small_catalog()[0])
    with pytest.raises(StylusError, match="not reachable.*chroma run"):
        CardIndex(settings, HashEmbedder()).update(store)
