"""Selection by concept among adapters that all fit: what their example prompts show (people or
things) orders them for a prompt without people, and a style named for a thing as well draws that
thing. The real retriever (MiniLM + chromadb) and composer on hand-made, real-shaped cards;
behaviour only."""
from __future__ import annotations

import pytest

from components import concepts
from components.concepts import shows_person
from components.prompt_text import prompt_terms
from tests.retrieval_helpers import card, retriever_over, select


def looks_catalog():
    return [
        # two gouache styles that fit "gouache" alike; one was shown on girls, one on things
        card("civitai-301", "Gouache Style", model_id=301, tags=["gouache", "style"],
             prompts=["masterpiece, 1girl, solo, smile, gouache", "a woman in a sun hat, gouache",
                      "1boy, armor, gouache"]),
        card("civitai-302", "Gouache Painting", model_id=302, tags=["gouache", "painting", "style"],
             prompts=["gouache, a lighthouse on a cliff, no humans", "gouache, a bowl of pears",
                      "gouache, a harbor at dusk"]),
        # "map" names things in this catalog (three map adapters), "pen" names no adapter but a look
        card("civitai-303", "Dungeon Map", model_id=303, tags=["map", "object"],
             prompts=["top-down dungeon map, grid", "dungeon map, torches"]),
        card("civitai-304", "Treasure Map", model_id=304, tags=["map", "object"],
             prompts=["old treasure map, parchment", "treasure map, red cross"]),
        card("civitai-305", "Kingdom Map", model_id=305, tags=["map", "object"],
             prompts=["fantasy kingdom map, rivers", "kingdom map, mountains"]),
        card("civitai-306", "Map Sketch", model_id=306, tags=["sketch", "style"],
             prompts=["map sketch, a coastline", "map sketch, a valley"]),
        card("civitai-307", "Pen Sketch", model_id=307, tags=["sketch", "style"],
             prompts=["pen sketch, a bridge", "pen sketch, a tree"]),
        # a style that holds only "abstract" of "abstract painting", shown on people only
        card("civitai-308", "Abstractia", model_id=308, tags=["abstract", "neon", "style"],
             prompts=["1girl, solo, abstract, neon glow", "a woman in a red coat, abstract background",
                      "portrait of a man, abstract, neon"]),
    ]


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, minilm):
    r, store = retriever_over(looks_catalog(), tmp_path_factory.mktemp("looks"), minilm)
    yield r
    store.close()


def test_an_example_prompt_shows_a_person_unless_it_says_nobody_is_there():
    assert shows_person(prompt_terms("masterpiece, 1girl, solo, city street"))
    assert shows_person(prompt_terms("a farmer mending a fence at dawn"))
    assert not shows_person(prompt_terms("no humans, tree, mountain, fog"))
    assert not shows_person(prompt_terms("a bowl of pears on a table"))


def test_the_share_of_examples_with_people_is_read_from_the_index(retriever):
    people = retriever.concept_index.people
    pos = {cid: i for i, cid in enumerate(retriever.ids)}
    assert people[pos["civitai-301"]] == pytest.approx(1.0)
    assert people[pos["civitai-302"]] == pytest.approx(0.0)


def test_for_a_prompt_without_people_the_adapter_shown_on_things_comes_first(retriever):
    ids, comp, res = select(retriever, "a gouache of a lighthouse")
    assert "civitai-302" in ids and "civitai-301" not in ids
    # the other one still fits: a soft signal, never a refusal
    other = next(c for c in res.candidates if c.id == "civitai-301")
    assert other.fitting_concepts()


def test_with_a_person_in_the_prompt_the_examples_people_do_not_count(retriever):
    res = retriever.retrieve("a gouache of a farmer", top_k=150)
    res_things = retriever.retrieve("a gouache of a lighthouse", top_k=150)
    score = lambda r, cid: max(x["score"] for c in r.candidates if c.id == cid for x in c.concepts if x["fits"])  # noqa: E731
    assert score(res, "civitai-301") - score(res_things, "civitai-301") == pytest.approx(
        concepts.PEOPLE_SHARE_PENALTY, abs=0.02)


def test_a_style_named_for_a_thing_as_well_draws_that_thing(retriever):
    ids, comp, res = select(retriever, "a sketch of a lighthouse")
    assert "civitai-307" in ids and "civitai-306" not in ids
    why = next(x["why"] for c in res.candidates if c.id == "civitai-306" for x in c.concepts if x["concept"] == "sketch")
    assert "about map as well" in why


def test_a_part_fit_shown_only_on_people_is_not_picked_for_a_prompt_without_people(retriever):
    ids, comp, res = select(retriever, "an abstract painting of a lighthouse")
    assert "civitai-308" not in ids
    why = [x["why"] for c in res.candidates if c.id == "civitai-308" for x in c.concepts]
    assert any("show people where the prompt has none" in w for w in why)
    assert res.candidates[0].id == "civitai-308"  # still ranked first: it is relevant, only not picked
    # with a person in the prompt the same adapter fits the part it holds
    res = retriever.retrieve("an abstract painting of a farmer", top_k=150)
    assert any(c.id == "civitai-308" and c.fitting_concepts() for c in res.candidates)


def test_a_tag_that_says_nobody_is_there_brings_no_person():
    from components.refiner.purpose import extract_purpose
    scenery = card("civitai-309", "Ruins And Light", model_id=309, tags=["no humans", "ruins", "scenery"],
                   prompts=["ruins, light rays, no humans", "ancient ruins, moss"])
    assert "person" not in extract_purpose(scenery).brings
    people = card("civitai-310", "Ruins Explorer", model_id=310, tags=["humans", "ruins"],
                  prompts=["an explorer in ruins", "ruins, a woman with a torch"])
    assert "person" in extract_purpose(people).brings


def test_a_prompt_that_says_nobody_is_there_asks_for_no_person():
    from components.concepts import PromptContext, foreign
    for prompt in ("no humans, mecha, robot, ruined city", "no_humans, scenery", "a quiet street without people"):
        ctx = PromptContext.of(prompt)
        assert not ctx.person and foreign(["person"], ctx) == ["a person"], prompt
    assert PromptContext.of("two people riding an elephant").person
    assert PromptContext.of("a man in a square, no people around him").person
