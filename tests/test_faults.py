"""Faults: kill -9 of the app, the chroma server going away, a bad LLM endpoint, bad downloads.

Real processes (``python app.py``, ``chroma run``) and local fake services on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.fakes.chroma_server import start_chroma
from tests.fakes.local_http import LocalServer
from PIL import Image

from catalog.card import AdapterCard, AdapterFile
from catalog.settings import Settings
from catalog.store import CatalogStore
from ground.atomic_files import is_temp
from tests.fakes.app_process import start_app
from tests.fakes.openai_server import FakeOpenAI, FakeResponse
from tests.fakes.web_catalog import CARDS, free_port, write_catalog


# ---- kill -9 ---------------------------------------------------------------------------------------
def _wait_processing(job, seconds: float = 60.0) -> None:
    from gradio_client.utils import Status
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and job.status().code not in (Status.PROCESSING, Status.PROGRESS,
                                                                     Status.FINISHED):
        time.sleep(0.05)


def _audit_files(home: Path) -> list[str]:
    """Every file under a final name is whole: PNGs decode, JSON parses, tensors and arrays load."""
    import numpy as np
    from safetensors import safe_open

    checked = []
    for path in sorted(home.rglob("*")):
        if not path.is_file() or is_temp(path) or path.suffix == ".part" or "chroma" in path.parts \
                or "gradio-tmp" in path.parts:
            continue
        if path.suffix == ".png":
            with Image.open(path) as im:
                im.load()
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            with safe_open(str(path), "np") as f:
                list(f.keys())
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                [z[k] for k in z.files]
        else:
            continue
        checked.append(path.name)
    return checked


def _catalog_state(home: Path) -> tuple[str, dict[str, str]]:
    db = sqlite3.connect(home / "catalog" / "catalog.sqlite3")
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        notes = {r[0]: json.loads(r[1]).get("notes", "") for r in db.execute("SELECT id, curation_json FROM cards")}
    finally:
        db.close()
    return ok, notes


def _edit_stream(client, committed: dict[str, str], stop: threading.Event, tag: str) -> None:
    """Save curator notes card after card; record each edit the app confirmed."""
    n = 0
    while not stop.is_set():
        card_id, _name, category, tags, triggers, desc = CARDS[n % len(CARDS)]
        note = f"{tag}-{n}"
        try:
            client.predict(card_id, desc, category, ", ".join(tags), ", ".join(triggers), 0.8, False, False, False,
                           note, api_name="/catalog_save")
        except Exception:  # the app was killed under this request: not confirmed, not required
            return
        committed[card_id] = note
        n += 1


def test_kill_9_during_generation_and_catalog_edits_loses_nothing(tmp_path):
    from gradio_client import Client

    home = tmp_path / "home"
    for round_no in range(2):
        app = start_app(home)
        try:
            client = Client(app.url, verbose=False)
            if round_no == 1:  # the retrieval index is built and saved, so edits re-index it
                client.predict("a corgi", 10, "offline", "", 3, api_name="/select")
            committed: dict[str, str] = {}
            stop = threading.Event()
            edits = threading.Thread(target=_edit_stream, args=(Client(app.url, verbose=False), committed, stop,
                                                                f"r{round_no}"), daemon=True)
            edits.start()
            job = client.submit("a corgi astronaut on the moon", "", None, 8, 7.0, round_no, 4, "one_hot_loras",
                                "", 64, 64, api_name="/generate")
            _wait_processing(job)
            marker = home / "cache" / "preview-model" / "stylus-preview.json"
            deadline = time.monotonic() + 90
            while (len(committed) < 3 or not marker.exists()) and edits.is_alive() and time.monotonic() < deadline:
                time.sleep(0.05)  # the pipeline is built: the kill lands in denoising or saving
            app.kill9()  # mid-generation (round 0: also loading the pipeline), mid-edit stream
            stop.set()
            edits.join(timeout=30)
        finally:
            app.stop()
        ok, notes = _catalog_state(home)
        assert ok == "ok"
        assert committed, "no edit was confirmed before the kill"
        for card_id, note in committed.items():  # every confirmed edit survived (or a later one)
            assert notes[card_id].startswith(f"r{round_no}-") and \
                int(notes[card_id].split("-")[1]) >= int(note.split("-")[1]), (card_id, note, notes[card_id])
        audited = _audit_files(home)
        assert round_no == 0 or {"facts.json", "manifest.json", "prompts.npz"} <= set(audited), audited
    restarted = start_app(home)  # the app comes back on what the kills left
    try:
        result = Client(restarted.url, verbose=False).predict("a corgi astronaut on the moon", 10, "offline", "",
                                                             3, api_name="/select")
        assert result["candidates"], result
    finally:
        restarted.stop()
    assert CatalogStore(home / "catalog").get("test-corgi").curation.notes.startswith("r1-")


# ---- the chroma server goes away --------------------------------------------------------------------
def test_chroma_server_stop_degrades_to_lexical_and_recovers(tmp_path):
    from components.retriever import Retriever
    from tests.retrieval_helpers import HashEmbedder

    write_catalog(tmp_path / "catalog")
    store = CatalogStore(tmp_path / "catalog")
    port = free_port()
    server = start_chroma(tmp_path / "chroma", port)
    try:
        settings = Settings(home=tmp_path / "home", catalog_dir=tmp_path / "catalog", chroma_mode="server",
                            chroma_port=port)
        retriever = Retriever(settings, store, embedder=HashEmbedder())
        tags = "astronaut, moon, space"  # a tag-style prompt: the whole-prompt vector goes through chroma
        sentence = "an astronaut on the moon"  # a sentence: its concepts meet the card vectors in memory
        before = retriever.retrieve(tags)
        assert not before.notices and any(c.scores["dense"] > 0 for c in before.candidates)
        by_concept = [c.id for c in retriever.retrieve(sentence).candidates]
        server.terminate()
        server.wait(timeout=20)
        down = retriever.retrieve(tags)
        assert [c.id for c in down.candidates][:2] == [c.id for c in before.candidates][:2]
        assert all(c.scores["dense"] == 0 for c in down.candidates)
        assert any("chroma server" in n and "lexical" in n for n in down.notices), down.notices
        assert [c.id for c in retriever.retrieve(sentence).candidates] == by_concept  # read once, kept
        server = start_chroma(tmp_path / "chroma", port)
        again = retriever.retrieve(tags)
        assert not again.notices and any(c.scores["dense"] > 0 for c in again.candidates)
    finally:
        server.terminate()
        server.wait(timeout=20)
        store.close()


# ---- the LLM endpoint is down, slow or talks nonsense ---------------------------------------------
@pytest.mark.parametrize("fault", ["down", "slow", "garbage", "broken-json-body", "error-status"])
def test_llm_endpoint_faults_fall_back_to_the_offline_composer(tmp_path, fault):
    from components.engine import StylusEngine

    write_catalog(tmp_path / "h" / "catalog")
    with FakeOpenAI() as server:
        base = server.base_url
        responses = {"slow": FakeResponse(content='{"topics": []}', delay=5.0),
                     "garbage": FakeResponse(content="Sure! Here are some adapters you might like."),
                     "broken-json-body": FakeResponse(raw=b'{"choices": [ {"message": '),
                     "error-status": FakeResponse(status=503, body={"error": {"message": "overloaded"}})}
        server.default = responses.get(fault)
        if fault == "down":
            base = f"http://127.0.0.1:{free_port()}/v1"
        engine = StylusEngine(Settings(home=tmp_path / "h", composer="llm", llm_model="openai/fake",
                                       llm_api_base=base, llm_api_key="sk-fault-test", llm_timeout=1.0))
        comp = engine.select("a corgi astronaut on the moon").composition
    assert comp.composer == "offline (fallback from llm)"
    assert "failed" in comp.notices[0] and "used the offline composer instead" in comp.notices[0]
    assert comp.adapter_ids(), "the offline composer still composes"


# ---- an adapter download is cut off or does not match its hash -------------------------------------
@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """The preview weights saved as a model folder: loaded as a *real* model, so cards download."""
    import torch
    torch.set_num_threads(1)
    from components.generator.preview_model import ensure_preview_model
    return ensure_preview_model(tmp_path_factory.mktemp("model"))


class _LoraServer(LocalServer):
    """/good: a LoRA for the tiny model; /cut: the same, connection dropped half-way."""

    def __init__(self, payload: bytes) -> None:

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.path.startswith("/cut"):
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(payload)

        super().__init__(Handler)


@pytest.mark.parametrize("fault", ["hash-mismatch", "interrupted"])
def test_bad_download_is_not_used_not_kept_and_the_request_goes_on(tmp_path, real_model, fault):
    from components.engine import StylusEngine
    from components.generator.adapters import cache_path
    from components.types import Composition, GenerationRequest, Topic, TopicAdapter
    from tests.fakes.tiny_loras import write_kohya

    payload = write_kohya(tmp_path / "src.safetensors", seed=7).read_bytes()
    server = _LoraServer(payload)
    try:
        good_sha = hashlib.sha256(payload).hexdigest()
        sha = "0" * 64 if fault == "hash-mismatch" else good_sha
        path = "/good" if fault == "hash-mismatch" else "/cut"
        card = AdapterCard(id="dl-fault", source="civitai", name="Downloaded", base_model="SD 1.5",
                           files=[AdapterFile(name="x.safetensors", sha256=sha, primary=True,
                                              download_url=server.url(path))])
        settings = Settings(home=tmp_path / "h", model=str(real_model), device="cpu", download_hosts=["127.0.0.1"])
        engine = StylusEngine(settings)
        engine.store.upsert(card)
        comp = Composition(prompt="a cat", topics=[Topic(keywords=["cat"], adapters=[
            TopicAdapter(card_id=card.id, name=card.name, weight=0.8)])])
        result = engine.generate(GenerationRequest(prompt="a cat", steps=2, width=64, height=64, num_images=2,
                                                   composition=comp))
    finally:
        server.close()
    assert not result.preview_model and len(result.images) == 2  # the request went on
    reason = "SHA256 mismatch" if fault == "hash-mismatch" else "download failed"
    assert any(card.id in n and reason in n and "skipped" in n for n in result.notices), result.notices
    assert all("Lora hashes" not in img.parameters for img in result.images)  # not used
    final = cache_path(settings, card)
    assert not final.exists()  # not kept under its name; an interrupted one may wait as .part for a resume
    leftovers = [p.name for p in final.parent.glob("*")] if final.parent.exists() else []
    assert leftovers in ([], [final.name + ".part"]) and (fault == "interrupted" or leftovers == [])


# ---- index files: one file per BM25 index, written atomically --------------------------------------
def test_bm25_index_is_one_atomic_file_and_concurrent_saves_stay_consistent(tmp_path):
    from components.index.lexical import SparseBM25

    def index(words: list[str]) -> SparseBM25:
        idx = SparseBM25()
        idx.replace(set(), [(f"card-{i}", [w, "shared"]) for i, w in enumerate(words)])
        return idx

    small, large = index(["moon", "corgi"]), index([f"word{i}" for i in range(300)])
    threads = [threading.Thread(target=idx.save, args=(tmp_path, "prompts")) for idx in (small, large) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.npz"]  # no vocabulary file to fall behind
    loaded = SparseBM25.load(tmp_path, "prompts")
    expected = small if len(loaded.vocab) == len(small.vocab) else large  # the last rename wins, whole
    assert loaded.vocab == expected.vocab and list(loaded.owners) == list(expected.owners)
    assert (loaded.scores(["shared"]) == expected.scores(["shared"])).all()


# ---- catalog database: several processes creating it at once ----------------------------------------
def _open_catalog_after(catalog_dir: str, barrier) -> str:
    barrier.wait()
    try:
        with CatalogStore(catalog_dir) as store:
            return str(len(store))
    except Exception as exc:  # returned, so the test shows every process's message
        return f"{type(exc).__name__}: {exc}"


def test_processes_opening_a_new_catalog_at_once_all_succeed(tmp_path):
    """Switching a new database to WAL raced: one of several processes got "database is locked"."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results: list[str] = []
    with ctx.Manager() as manager, ctx.Pool(6) as pool:
        for round_ in range(8):
            barrier = manager.Barrier(6)
            results += pool.starmap(_open_catalog_after, [(str(tmp_path / f"c{round_}"), barrier)] * 6)
    assert results == ["0"] * len(results), [r for r in results if r != "0"]
    with sqlite3.connect(tmp_path / "c0" / "catalog.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
