"""The engine's index and refiner methods (what ``retrieve --queries``, ``catalog index`` and
``catalog refine`` call): ranking only, building the index, refining offline or through a model.

A small hand-made catalog, the real bundled MiniLM, chromadb and SQLite; the model of the VLM
refiner is a local OpenAI-compatible server (tests/fakes/openai_server.py).
"""
from __future__ import annotations

import json

import pytest

from catalog.settings import Settings
from catalog.store import CatalogStore
from components.engine import StylusEngine
from ground.errors import StylusError
from tests.fakes.openai_server import FakeOpenAI, FakeResponse
from tests.retrieval_helpers import card, small_catalog

QUERIES = ["cyber samurai armor, katana", "   ", "watercolor lighthouse", "hatsune miku on a stage"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings whose catalog holds the eight hand-made cards (no starter seeding: it is not empty)."""
    settings = Settings(home=tmp_path / "stylus")
    with CatalogStore(settings.catalog_dir) as store:
        for c in small_catalog():
            store.upsert(c)
    return settings


def test_rank_gives_the_ids_model_ids_and_scores_retrieve_finds(settings):
    engine = StylusEngine(settings)
    rankings = engine.rank(QUERIES, top_k=3, characters="all")
    assert len(rankings) == len(QUERIES) and rankings[1] == []  # a blank line ranks nothing
    assert rankings[0][0].id == "civitai-2"
    for query, ranked in zip(QUERIES, rankings):
        if not query.strip():
            continue
        found = engine.retrieve(query, top_k=3, characters="all").candidates
        assert ranked, query
        assert [r.id for r in ranked] == [c.id for c in found]
        assert [r.civitai_model_id for r in ranked] == [c.card.civitai_model_id for c in found]
        assert [round(r.score, 4) for r in ranked] == [c.score for c in found]


def test_rank_passes_the_character_policy_and_checks_its_options(settings):
    engine = StylusEngine(settings)
    with pytest.raises(StylusError, match="top_k 0 is not allowed; use 1 to 500"):
        engine.rank(QUERIES, top_k=0)
    with pytest.raises(StylusError, match="characters 'some' is not one of named, all, none"):
        engine.rank(QUERIES, characters="some")
    assert "retriever" not in vars(engine), "checked before the index is opened"
    engine.catalog.edit("civitai-3", editor="test", character=True)  # a curator marks the character
    query = ["hatsune miku, twintails, aqua hair"]
    assert "civitai-3" in [r.id for r in engine.rank(query, characters="all")[0]]
    assert "civitai-3" not in [r.id for r in engine.rank(query, characters="none")[0]]


def test_build_index_refines_then_indexes_and_rebuild_embeds_every_card_again(settings):
    engine = StylusEngine(settings)
    first = engine.build_index()
    assert first[0].startswith("offline refiner: 8 refined, 0 unchanged")
    assert first[1].startswith("index: 8 added, 0 updated, 0 removed, 0 unchanged")
    assert all(engine.catalog.card(c.id).refined.refiner.startswith("offline") for c in small_catalog())
    again = engine.build_index()  # nothing changed: nothing refined, nothing embedded
    assert len(again) == 1 and again[0].startswith("index: 0 added, 0 updated, 0 removed, 8 unchanged")
    rebuilt = engine.build_index(rebuild=True, refine=False)
    assert len(rebuilt) == 1 and rebuilt[0].startswith("index: 8 added, 0 updated, 0 removed, 0 unchanged")
    manifest = json.loads((settings.catalog_dir / "index" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["cards"] == 8
    # a new engine finds the rebuilt index complete: opening it changes nothing
    assert StylusEngine(settings).index_changes() == ""


def test_build_index_moves_a_retriever_in_use_along(settings):
    engine = StylusEngine(settings)
    assert "index: 8 added" in engine.index_changes()  # the first open indexed the catalog
    query = ["origami crane, folded paper birds"]
    assert "civitai-9" not in [r.id for r in engine.rank(query, characters="all")[0]]
    # written through the engine's own connection (as its imports do): SQLite's data_version does not
    # move for it, so only build_index brings the retriever in use up to date
    engine.store.upsert(card("civitai-9", "Origami Paper Crane", model_id=9, tags=["concept", "origami"],
                             prompts=["origami crane, folded paper, white background"]))
    lines = engine.build_index(refine=False)
    assert lines[0].startswith("index: 1 added, 0 updated, 0 removed, 8 unchanged")
    assert engine.rank(query, characters="all")[0][0].id == "civitai-9"


def test_refine_offline_writes_the_refined_fields_most_downloaded_first(settings):
    engine = StylusEngine(settings)
    with pytest.raises(StylusError, match="limit 0 is not allowed; use at least 1 card"):
        engine.refine(limit=0)
    with CatalogStore(settings.catalog_dir) as store:
        for n, card_id in enumerate(["civitai-7", "civitai-4"]):
            c = store.get(card_id)
            store.upsert(c.model_copy(update={"download_count": 10_000 - n}))
    report = engine.refine(limit=2)
    assert (report.refined, report.unchanged) == (2, 6)
    refined = {c.id: c.refined for c in engine.catalog.search(limit=None)}
    assert sorted(k for k, r in refined.items() if r.refiner) == ["civitai-4", "civitai-7"]
    diner = refined["civitai-4"]
    assert diner.refiner.startswith("offline") and diner.description and diner.category
    assert (engine.refine().refined, engine.refine().refined) == (6, 0)


MODEL = "openai/fake-vlm"
ANSWER = {"description": "A scene rendered in the adapter's look.", "category": "style",
          "recommended_weight": 0.7, "trigger_words": []}


def test_refine_with_a_model_asks_about_active_cards_most_downloaded_first(settings, tmp_path):
    with CatalogStore(settings.catalog_dir) as store:
        for n, card_id in enumerate(["civitai-6", "civitai-2", "civitai-4"]):
            c = store.get(card_id)
            store.upsert(c.model_copy(update={"download_count": 10_000 - n}))
        store.edit("civitai-6", editor="test", blocked=True)  # the most downloaded, but blocked
    engine = StylusEngine(settings)
    with FakeOpenAI(default=FakeResponse(content=json.dumps(ANSWER))) as server:
        report = engine.refine(vlm=MODEL, limit=2, concurrency=2, max_retries=0, api_base=server.base_url,
                               api_key="sk-engine-test-4242")
        assert server.received[0].headers.get("Authorization") == "Bearer sk-engine-test-4242"
    assert (report.refined, report.failed) == (2, [])
    by_model = sorted(c.id for c in engine.catalog.search(limit=None) if c.refined.refiner == f"vlm:{MODEL}")
    assert by_model == ["civitai-2", "civitai-4"]
    from ground.redact import redact
    assert "sk-engine-test-4242" not in redact("key sk-engine-test-4242 in a provider message")
