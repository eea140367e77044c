"""Start-up (issue 14): the starter catalog's shipped vectors, stale vectors, and a select issued
while the background warm-up builds the index.

Real parts: the shipped ``catalog/starter_vectors.bin.gz``, the real MiniLM embedder (its
``texts_embedded`` counter), real chromadb, the real engine and a real ``python app.py``.
"""
from __future__ import annotations

import gzip
import json
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from catalog.settings import Settings
from catalog.starter import STARTER_VECTORS_PATH, load_starter_cards, open_catalog
from catalog.store import CatalogStore
from components.encoder import make_embedder
from components.index.card_index import CardIndex
from components.index.documents import INDEX_FORMAT, dense_text
from components.retriever import Retriever
from tests.retrieval_helpers import HashEmbedder, small_catalog
from tools.starter_vectors import write_shipped

STARTER_COUNT = len(load_starter_cards())
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def quiet(_message: str) -> None:
    """open_catalog's notice of the seeded starter (not needed in a test's output)."""


def starter_store(tmp_path) -> tuple[Settings, CatalogStore]:
    settings = Settings(home=tmp_path / "home")
    return settings, open_catalog(settings, notify=quiet)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---- the shipped starter vectors ----------------------------------------------------------
def test_starter_index_embeds_nothing_and_its_vectors_are_minilms(tmp_path):
    assert STARTER_VECTORS_PATH.is_file(), "regenerate with: python -m tools.starter_vectors"
    settings, store = starter_store(tmp_path)
    embedder = make_embedder(settings)
    retriever = Retriever(settings, store, embedder=embedder)
    report = retriever.last_report
    assert report.added == len(store) == STARTER_COUNT
    # every starter card took its shipped vector: the embedder was never called for a card
    assert (report.shipped, report.embedded, embedder.texts_embedded) == (STARTER_COUNT, 0, 0), report.notices
    assert report.notices == []
    # ...and those vectors are what MiniLM gives for the cards' texts today (not a stale file)
    ids = sorted(retriever.index.facts)[::200]
    cards = store.get_many(ids)
    fresh = embedder.embed([dense_text(cards[i]) for i in ids])
    assert embedder.texts_embedded == len(ids)
    assert cosine_rows(retriever.index.vector_matrix(ids), fresh).min() > 0.999
    result = retriever.retrieve("a castle on a hill at dusk, watercolor", top_k=10)
    assert result.candidates
    store.close()


def test_an_edited_starter_card_is_embedded_again_not_given_its_old_vector(tmp_path):
    settings, store = starter_store(tmp_path)
    first, second = sorted(store.hashes())[:2]
    old_text = dense_text(store.get(first))
    store.edit(first, editor="test", tags=["zebra crossing", "city street"])
    new_text = dense_text(store.get(first))
    assert new_text != old_text
    embedder = make_embedder(settings)
    retriever = Retriever(settings, store, embedder=embedder)
    assert (retriever.last_report.embedded, retriever.last_report.shipped) == (1, STARTER_COUNT - 1)
    assert embedder.texts_embedded == 1
    old, new = embedder.embed([old_text, new_text])
    stored = retriever.index.vector_matrix([first])[0]
    assert float(stored @ new) > 0.999 and float(stored @ old) < 0.99
    # an edit after the build: the incremental update embeds that card alone
    store.edit(second, editor="test", tags=["lighthouse", "stormy sea"])
    retriever.refresh()
    assert (retriever.last_report.updated, retriever.last_report.embedded, retriever.last_report.shipped) == (1, 1, 0)
    stored = retriever.index.vector_matrix([second])[0]
    assert float(stored @ embedder.embed([dense_text(store.get(second))])[0]) > 0.999
    store.close()


# ---- a shipped file that does not fit is never used ------------------------------------------
def small_store(tmp_path) -> tuple[Settings, CatalogStore]:
    settings = Settings(home=tmp_path / "home")
    store = CatalogStore(settings.catalog_dir)
    with store.transaction() as tx:
        for c in small_catalog():
            store.upsert(c, tx)
    return settings, store


def rewrite_header(path, **changes) -> None:
    with gzip.open(path, "rb") as fh:
        header, body = json.loads(fh.readline()), fh.read()
    with gzip.open(path, "wb") as fh:
        fh.write(json.dumps(header | changes).encode() + b"\n" + body)


def test_shipped_vectors_of_another_model_or_index_format_are_ignored_with_a_notice(tmp_path):
    settings, store = small_store(tmp_path)
    cards = list(store.iter_cards())
    fits = tmp_path / "fits.bin.gz"
    write_shipped(cards, HashEmbedder(), fits)
    report = CardIndex(settings, HashEmbedder(), shipped_path=fits).update(store)
    assert (report.shipped, report.embedded, report.notices) == (len(cards), 0, [])

    other_model = tmp_path / "other-model.bin.gz"
    write_shipped(cards, HashEmbedder("another-model"), other_model)
    old_format = tmp_path / "old-format.bin.gz"
    write_shipped(cards, HashEmbedder(), old_format)
    rewrite_header(old_format, index_format=INDEX_FORMAT - 1)
    for path, says in ((other_model, "'another-model'"), (old_format, f"index format {INDEX_FORMAT - 1}")):
        fresh = Settings(home=tmp_path / f"home-{path.name}")
        with CatalogStore(fresh.catalog_dir) as copy:
            with copy.transaction() as tx:
                for c in cards:
                    copy.upsert(c, tx)
            report = CardIndex(fresh, HashEmbedder(), shipped_path=path).update(copy)
        assert (report.shipped, report.embedded) == (0, len(cards))
        assert len(report.notices) == 1 and says in report.notices[0] and path.name in report.notices[0]
    store.close()


def test_a_card_whose_text_changed_since_the_file_was_written_misses_it(tmp_path):
    settings, store = small_store(tmp_path)
    cards = list(store.iter_cards())
    shipped = tmp_path / "vectors.bin.gz"
    write_shipped(cards, HashEmbedder(), shipped)
    store.edit(cards[0].id, editor="test", tags=["zebra", "crossing"])
    index = CardIndex(settings, HashEmbedder(), shipped_path=shipped)
    report = index.update(store)
    assert (report.shipped, report.embedded) == (len(cards) - 1, 1)
    want = HashEmbedder().embed([dense_text(store.get(cards[0].id))])[0]
    assert np.allclose(index.vector_matrix([cards[0].id])[0], want, atol=1e-6)
    store.close()


# ---- the background warm-up ------------------------------------------------------------------
def test_a_select_issued_while_the_warm_up_builds_the_index_waits_for_the_whole_index(tmp_path):
    from components.engine import StylusEngine

    engine = StylusEngine(Settings(home=tmp_path / "home"))
    prompt = "a corgi astronaut on the moon, watercolor"
    seen: list[tuple[int, int, str]] = []
    answers: dict[str, object] = {}

    def select_now() -> None:
        try:
            answers["result"] = engine.select(prompt)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            answers["error"] = exc

    selecting = threading.Thread(target=select_now)

    def on_progress(done: int, total: int) -> None:
        seen.append((done, total, engine.startup.phase))
        if len(seen) == 1:  # the build has begun and indexed nothing yet: select now
            selecting.start()
            wait_until_blocked_in_once(selecting)

    engine.start_warm_up(on_progress=on_progress).join()
    selecting.join()
    assert "error" not in answers, answers.get("error")
    assert engine.startup.phase == "ready" and engine.startup.line() == ""
    assert seen[0] == (0, STARTER_COUNT, "indexing") and seen[-1] == (STARTER_COUNT, STARTER_COUNT, "indexing")
    during, after = answers["result"], engine.select(prompt)
    assert len(engine.retriever.index) == STARTER_COUNT
    assert during.retrieval.candidates, "the select made during the build found nothing"
    assert [(c.card.id, round(c.score, 6)) for c in during.retrieval.candidates] == \
        [(c.card.id, round(c.score, 6)) for c in after.retrieval.candidates]


def wait_until_blocked_in_once(thread: threading.Thread) -> None:
    """Until ``thread``, inside the engine's ``retrieve``, waits for the retriever being built (its
    innermost frame takes the part's lock: ``_once``, or Python 3.11's cached_property lock)."""
    deadline = time.monotonic() + 120  # a hang guard, not a measurement
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        if frame is not None and frame.f_code.co_name in ("_once", "__get__"):
            outer = frame
            while outer is not None and not (outer.f_code.co_name == "retrieve"
                                             and outer.f_code.co_filename.endswith("engine.py")):
                outer = outer.f_back
            if outer is not None:
                return
        time.sleep(0.01)
    pytest.fail("the select never reached the engine's wait for the index")


def test_the_app_builds_the_starter_index_after_launch_from_shipped_vectors(tmp_path):
    """``python app.py`` on a fresh home: the page answers, the warm-up indexes the starter
    from its shipped vectors (0 texts embedded) and a select answers from the whole index."""
    from gradio_client import Client

    from tests.fakes.app_process import start_app

    app = start_app(tmp_path / "home", catalog=False)
    try:
        client = Client(app.url, verbose=False)
        result = client.predict(prompt="a castle on a hill at dusk, watercolor", api_name="/select")
        assert result["candidates"]
        deadline = time.monotonic() + 120  # a hang guard: the warm-up logs once its own select is done
        while "ready for selects" not in app.output() and time.monotonic() < deadline and app.proc.poll() is None:
            time.sleep(0.2)
        out = app.output()
        assert f"seeded with {STARTER_COUNT:,} starter adapters" in out
        ready = re.search(r"ready for selects in [\d.]+ s \(index: (\d+) added.*?(\d+) shipped vectors, (\d+) texts embedded", out)
        assert ready, out[-3000:]
        assert [int(g) for g in ready.groups()] == [STARTER_COUNT, STARTER_COUNT, 0]
        client.close()
    finally:
        app.stop()


@pytest.mark.browser
def test_the_page_says_when_the_start_up_index_could_not_be_built(page, tmp_path):
    """The start-up status line in a real browser: a chroma server that is not there (a free
    port) makes the warm-up fail; the page says so, with the reason, instead of waiting silently."""
    from playwright.sync_api import expect

    from tests.fakes.app_process import start_app
    from tests.fakes.web_catalog import free_port

    port = free_port()
    app = start_app(tmp_path / "home", extra_env={"STYLUS_CHROMA_MODE": "server", "STYLUS_CHROMA_PORT": str(port)})
    try:
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.goto(app.url)
        status = page.locator("#startup-status")
        expect(status).to_contain_text("could not be prepared at start-up", timeout=120_000)
        expect(status).to_contain_text(f"chroma server at 127.0.0.1:{port} is not reachable")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "startup-status-failed.png"))
    finally:
        app.stop()
