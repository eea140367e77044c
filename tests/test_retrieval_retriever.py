"""Retriever: hybrid ranking with evidence, filters, bad input; MiniLM for real, embedded chroma."""
from __future__ import annotations

import pytest

from catalog.settings import Settings
from components.refiner.offline import refine_store
from components.retriever import Filters, Fusion, Retriever
from components.types import StylusError
from tests.retrieval_helpers import small_catalog


@pytest.fixture
def retriever(store, tmp_path, minilm):
    for c in small_catalog():
        store.upsert(c)
    refine_store(store)
    return Retriever(Settings(home=tmp_path / "home", catalog_dir=store.dir), store, embedder=minilm)


def ids(result):
    return [c.id for c in result.candidates]


def test_hybrid_ranks_the_matching_adapter_first_with_evidence(retriever):
    res = retriever.retrieve("1girl in cyber samurai armor holding a katana, rain")
    assert ids(res)[0] == "civitai-2"
    top = res.candidates[0]
    assert "samurai armor" in top.evidence["examples"] and top.scores["prompt_max"] > 0
    assert top.rank == 1 and top.score == pytest.approx(max(c.score for c in res.candidates))


def test_one_card_per_civitai_model(retriever):
    res = retriever.retrieve("watercolor lighthouse")
    assert ids(res).count("civitai-1") + ids(res).count("civitai-8") == 1
    both = retriever.retrieve("watercolor lighthouse", filters=Filters(one_per_model=False))
    assert {"civitai-1", "civitai-8"} <= set(ids(both))


def test_filters_base_model_nsfw_unloadable(retriever):
    got = set(ids(retriever.retrieve("retro diner, neon sign, pinup poster, paper lanterns")))
    assert "civitai-4" in got
    assert not {"civitai-5", "civitai-6", "civitai-7"} & got  # SDXL, NSFW, not an adapter (other)
    loose = Filters(base_model=None, allow_nsfw=True, loadable_only=False)
    got = set(ids(retriever.retrieve("retro diner, neon sign, pinup poster, paper lanterns", filters=loose)))
    assert {"civitai-5", "civitai-6", "civitai-7"} <= got


def test_characters_only_when_the_prompt_names_one(retriever):
    assert "civitai-3" not in ids(retriever.retrieve("twintails, aqua hair, singing on a stage"))
    assert "civitai-3" in ids(retriever.retrieve("miku singing on a stage"))
    assert "civitai-3" in ids(retriever.retrieve("twintails, aqua hair, stage", filters=Filters(characters="all")))
    assert "civitai-3" not in ids(retriever.retrieve("miku on a stage", filters=Filters(characters="none")))
    with pytest.raises(StylusError, match="'some'.*named, all, none"):
        Filters(characters="some")


def test_blocked_card_is_never_retrieved(retriever, store):
    store.edit("civitai-2", editor="test", blocked=True)
    assert "1 removed" in retriever.refresh()
    assert "civitai-2" not in ids(retriever.retrieve("cyber samurai armor"))


@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt_gives_no_candidates_and_says_why(retriever, prompt):
    res = retriever.retrieve(prompt)
    assert res.candidates == [] and "empty" in res.notices[0]


def test_very_long_and_non_latin_prompts(retriever):
    res = retriever.retrieve("samurai armor, " * 700)  # 10,500 characters
    assert ids(res)[0] == "civitai-2" and "10,500 characters" in res.notices[0]
    assert retriever.retrieve("水彩画の灯台、海辺").candidates is not None  # no crash, any result
    assert retriever.retrieve("🙂🙂🙂").candidates is not None


def test_bad_arguments_are_named(retriever):
    with pytest.raises(StylusError, match="top_k=0"):
        retriever.retrieve("fox", top_k=0)
    with pytest.raises(StylusError, match="must be text"):
        retriever.retrieve(None)


def test_lexical_only_and_dense_only_rankings(retriever):
    lexical = retriever.rank("samurai armor neon", 5, fusion=Fusion.lexical_only())
    dense = retriever.rank("samurai armor neon", 5, fusion=Fusion.dense_only())
    assert retriever.ids[lexical[0][0]] == "civitai-2" and dense
    assert all(s["dense"] == 0 for _, _, s in lexical)


def test_prompt_terms_keep_the_tag_order_of_a_prompt():
    from components.prompt_text import is_sequence_term, prompt_terms, terms

    got = prompt_terms("masterpiece, best quality, (school uniform:1.2), <lora:x:0.8> library")
    assert set(terms("masterpiece, best quality, school uniform, library")) < set(got)
    assert "#best quality>#school uniform" in got
    assert "#masterpiece>#best quality>#school uniform" in got
    assert "^#masterpiece>#best quality>#school uniform" in got
    assert "#school uniform>#masterpiece" not in got
    assert all(is_sequence_term(t) for t in set(got) - set(terms("masterpiece, best quality, school uniform, library")))


def test_example_templates_leave_out_the_adapters_own_trigger_words():
    from components.index.documents import card_documents
    from tests.retrieval_helpers import card

    doc = card_documents(card("civitai-9", "Salome", model_id=9, triggers=["hmsalome"],
                              prompts=["masterpiece, best quality, hmsalome, drill hair, red dress"]))
    got = set(doc.prompt_terms[0])
    assert "hmsalome" in got  # a user who knows the trigger word still matches it
    assert "#best quality>#drill hair" in got and "^#masterpiece>#best quality>#drill hair" in got
    assert not any("hmsalome" in t for t in got if ">" in t)


def _order_and_creator_catalog(store):
    from tests.retrieval_helpers import card

    same_words = ["blue sky, red scarf, old bridge, winter, snow", "red scarf, winter, old bridge, snow, blue sky"]
    cards = [
        card("civitai-101", "Bridge Winter A", model_id=101, prompts=[same_words[0]]),
        card("civitai-102", "Bridge Winter B", model_id=102, prompts=[same_words[1]]),
        card("civitai-103", "Unrelated Desert", model_id=103, prompts=["desert, camel, dunes, sunset"]),
        card("civitai-104", "Quiet Lake Sketch", model_id=104, prompts=["lake, sketch"]),
        card("civitai-105", "Pencil Town", model_id=105, prompts=["pencil drawing, town square"]),
    ]
    for c in cards:
        c.creator = "maker_b" if c.id in ("civitai-102", "civitai-104") else "maker_" + c.id
    for c in cards:
        store.upsert(c)


def test_tag_order_and_creator_decide_between_equal_word_matches(store, tmp_path, minilm):
    _order_and_creator_catalog(store)
    r = Retriever(Settings(home=tmp_path / "home", catalog_dir=store.dir), store, embedder=minilm)
    # both cards hold the same words; the query keeps the order of B's example
    ranked = [c.id for c in r.retrieve("red scarf, winter, old bridge, snow, blue sky", top_k=5).candidates]
    assert ranked[:2] == ["civitai-102", "civitai-101"]
    # nothing in the lake sketch's examples matches, but the query keeps the template (tag order)
    # of its creator's other adapter
    query = "winter, old bridge, campfire"
    found = {c.id: c for c in r.retrieve(query, top_k=5).candidates}
    lake = found["civitai-104"].scores
    assert lake["prompt_max"] == 0 and lake["creator"] > 0
    assert found["civitai-104"].rank < found["civitai-103"].rank  # the desert card has dense only
    alone = {r.ids[i]: score for i, score, _ in r.rank(query, 5, fusion=Fusion(creator=0.0))}
    assert alone.get("civitai-104", 0.0) < found["civitai-104"].score
    # a natural caption has no template: the same words give the creator's other card nothing
    caption = {c.id: c for c in r.retrieve("an old bridge in winter", top_k=5).candidates}
    assert "civitai-104" not in caption or caption["civitai-104"].scores["creator"] == 0
    assert r.rank("an old bridge in winter", 5, fusion=Fusion.whole_prompt())  # ranked by words alone
    assert all(s["creator"] == 0 for _, _, s in r.rank("an old bridge in winter", 5, fusion=Fusion.whole_prompt()))
    evidence = r.retrieve("red scarf, winter, old bridge", top_k=1).candidates[0].evidence
    assert not any(">" in t or t.startswith("^") for terms in evidence.values() for t in terms)
