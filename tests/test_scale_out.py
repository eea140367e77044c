"""Scale-out (issue 7): two app processes, one `chroma run` server, one catalog directory.

Each process is a real StylusEngine in its own python subprocess (tests/fakes/engine_worker.py)
with STYLUS_CHROMA_MODE=server and the same STYLUS_CATALOG_DIR. Both start at once on an empty
catalog (so they race to seed the starter catalog and to write the shared index files), then must
give the same results, see each other's edits (on the next query, through SQLite's data_version,
and after an explicit re-index), and leave an index on disk that a third, fresh process reads
consistently.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.chroma_server import chroma_server as run_chroma

from tests.fakes.engine_worker import EngineWorker
from tests.fakes.web_catalog import free_port

QUERIES = ["watercolor painting of a lake", "cyberpunk city at night, neon lights",
           "anime girl in a school uniform", "oil painting portrait of an old man"]


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory):
    with run_chroma(tmp_path_factory.mktemp("chroma"), free_port()) as port:
        yield port


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory, chroma_port):
    root = tmp_path_factory.mktemp("scale-out")
    return {"STYLUS_CATALOG_DIR": str(root / "shared-catalog"), "STYLUS_CHROMA_MODE": "server",
            "STYLUS_CHROMA_HOST": "127.0.0.1", "STYLUS_CHROMA_PORT": str(chroma_port),
            "STYLUS_TORCH_THREADS": "1"}, root


def start_workers(env: dict[str, str], root: Path, names: list[str]) -> list[EngineWorker]:
    """Start all at once (they race on the shared catalog and index), then wait until each is ready."""
    workers = [EngineWorker({**env, "STYLUS_HOME": str(root / f"home-{n}")}, root / f"{n}.log") for n in names]
    try:
        for w in workers:
            w.ready()
    except BaseException:
        for w in workers:
            w.close()
        raise
    return workers


@pytest.fixture(scope="module")
def two_apps(shared_env):
    env, root = shared_env
    workers = start_workers(env, root, ["a", "b"])
    yield workers
    for w in workers:
        w.close()


def results(worker: EngineWorker, prompt: str, top_k: int = 20) -> list[tuple[str, float]]:
    r = worker.call("retrieve", prompt=prompt, top_k=top_k)
    return list(zip(r["ids"], r["scores"]))


def test_two_processes_give_the_same_results(two_apps):
    a, b = two_apps
    for q in QUERIES:
        got_a = results(a, q)
        assert got_a, f"no candidates for {q!r}: the shared catalog was not seeded/indexed"
        assert results(b, q) == got_a, q


def test_an_edit_in_one_is_seen_by_the_other_after_reindex(two_apps, shared_env):
    a, b = two_apps
    query = QUERIES[0]
    top = results(a, query)[0][0]
    a.call("edit", id=top, changes={"blocked": True})
    assert top not in [i for i, _ in results(a, query)]
    # B follows the shared catalog on its next query (it notices A's commit) ...
    assert top not in [i for i, _ in results(b, query)]
    # ... so an explicit re-index in B finds nothing left to do
    assert "0 added, 0 updated, 0 removed" in b.call("reindex")["summary"]

    # a description edit in B with a word no card has: A finds that card by it after re-index
    target = results(b, QUERIES[1])[3][0]
    b.call("edit", id=target, changes={"description": "zebraquill marker for the scale-out test"})
    assert [i for i, _ in results(b, "zebraquill")][:1] == [target]
    a.call("reindex")  # the wording: seen after re-index (A would also follow by itself)
    found = a.call("retrieve", prompt="zebraquill", top_k=5)
    assert found["ids"][:1] == [target]
    assert "zebraquill" in found["descriptions"][0]
    for q in [*QUERIES, "zebraquill"]:
        assert results(a, q) == results(b, q), q

    # the index files both processes wrote are whole and agree with the catalog: a new process
    # reads them (no re-indexing needed) and answers like the running ones
    env, root = shared_env
    (c,) = start_workers(env, root, ["c"])
    try:
        assert "0 added, 0 updated, 0 removed" in c.call("reindex")["summary"]
        for q in [*QUERIES, "zebraquill"]:
            assert results(c, q) == results(a, q), q
    finally:
        c.close()
