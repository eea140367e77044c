"""Selection by concept on natural prompts: the real retriever (MiniLM + chromadb) and composer on a
small hand-made catalog of real-shaped cards. Behaviour only: which adapters are picked, and why."""
from __future__ import annotations

import pytest

from catalog.card import Curation
from components.composer import compose
from components.refiner.offline import refine_store
from tests.retrieval_helpers import card, retriever_over, select


def natural_catalog():
    girl = ["1girl, solo, long hair, smile, looking at viewer", "1girl, standing, dress, outdoors"]
    return [
        card("civitai-101", "Studio Ghibli Style LoRA", model_id=101,
             tags=["anime", "landscapes", "studio ghibli", "ghibli", "style"], triggers=["ghibli style"],
             prompts=["ghibli style, a village by the sea, summer clouds", "ghibli style, forest path, sunlight"]),
        card("civitai-102", "Looks like vagina", model_id=102, tags=["concept", "flower"],
             triggers=["looks like"], prompts=["flower that looks like a castle"]),
        card("civitai-103", "smoke_looks_like", model_id=103, tags=["concept", "smoke"],
             triggers=["smoke looks like"], prompts=["smoke that looks like a dragon, castle"]),
        card("civitai-104", "Saturation Slider", model_id=104, tags=["tool", "slider"],
             prompts=["a castle, vivid colors", "a castle that looks like a painting"]),
        card("civitai-105", "Castle Girl | Original Character", model_id=105,
             tags=["character", "girl", "castle"], triggers=["castle girl"], prompts=girl),
        card("civitai-106", "Watercolor Wash", model_id=106, tags=["style", "watercolor"],
             triggers=["watercolor"], prompts=["watercolor, a fox in a meadow", "watercolor, lighthouse"]),
        card("civitai-107", "MG_CORGI (animal)", model_id=107, tags=["animal", "dog", "corgi"], triggers=["corgi"],
             prompts=["a corgi sitting on grass", "corgi puppy, studio photo"]),
        card("civitai-108", "Moon Girl", model_id=108, tags=["girl", "moon", "woman"], prompts=girl),
        card("civitai-109", "Shower", model_id=109, tags=["nude", "nudity", "shower"],
             prompts=["1girl, shower, wet hair"]),
        card("civitai-110", "Rainy Street", model_id=110, tags=["background", "rain", "city"],
             triggers=["rainy street"], prompts=["rainy street at night, neon signs, reflections"]),
    ]


@pytest.fixture
def retriever(tmp_path, minilm):
    r, store = retriever_over(natural_catalog(), tmp_path, minilm)
    yield r
    store.close()


def test_ghibli_style_is_picked_for_a_castle_that_looks_like_studio_ghibli(retriever):
    ids, comp, res = select(retriever, "A castle that looks like Studio Ghibli")
    assert ids == ["civitai-101"]
    topic = comp.topics[0]
    assert topic.keywords == ["Studio Ghibli"] and "studio" in topic.adapters[0].reason.lower()
    # the retriever ranks it first; "looks like" is no evidence for anything
    assert res.candidates[0].id == "civitai-101"
    for cand in res.candidates:
        assert "looks like" not in [t for terms in cand.evidence.values() for t in terms]
    # the castle concept gets no adapter (the castle adapters bring a girl or a slider), and says why
    assert "castle" in comp.unassigned and "castle" in comp.scores["unassigned"]


def test_no_pick_when_the_only_word_matches_are_character_or_girl_adapters(retriever):
    ids, comp, _ = select(retriever, "a castle on a hill under the moon")
    assert ids == []
    why = comp.scores["unassigned"]
    assert set(why) >= {"castle", "moon"}
    assert "woman" in why["moon"] or "character" in why["castle"] or "person" in why["castle"]


def test_an_explicit_adapter_is_never_selected_for_a_harmless_prompt(retriever):
    res = retriever.retrieve("a cozy ramen stall at night in the rain, neon signs", top_k=150)
    assert "civitai-109" not in [c.id for c in res.candidates]  # tagged nude: screened out
    ids = compose("a cozy ramen stall at night in the rain, neon signs", res.candidates).adapter_ids()
    assert "civitai-109" not in ids


def test_two_concepts_each_get_their_adapter(retriever):
    ids, comp, _ = select(retriever, "a corgi astronaut on the moon, watercolor")
    assert set(ids) == {"civitai-107", "civitai-106"}
    assert "civitai-108" not in ids  # "moon" matches a girl adapter: foreign to this prompt


def test_a_curator_rating_and_purpose_change_selection(retriever):
    store = retriever.store
    store.edit("civitai-106", rating="explicit")
    retriever.refresh()
    ids, _, _ = select(retriever, "a corgi on the moon, watercolor")
    assert "civitai-106" not in ids and "civitai-107" in ids
    store.edit("civitai-106", rating="sfw")
    store.edit("civitai-107", purpose={"concepts": ["corgi"], "kind": "subject", "brings": ["woman"]})
    retriever.refresh()
    ids, _, _ = select(retriever, "a corgi on the moon, watercolor")
    assert ids == ["civitai-106"]
    assert isinstance(store.get("civitai-107").curation, Curation)


def test_tag_style_prompts_keep_the_whole_prompt_ranking(retriever):
    res = retriever.retrieve("masterpiece, best quality, watercolor, a fox in a meadow", top_k=5)
    assert res.candidates[0].id == "civitai-106"  # its own example prompt, with boilerplate
    comp = compose("masterpiece, best quality, watercolor, a fox in a meadow", res.candidates)
    assert comp.adapter_ids() == ["civitai-106"]


def test_a_tag_list_gets_the_adapter_whose_template_it_copies_and_nothing_incidental(retriever):
    # a creator's template (an example prompt of the Ghibli style, its trigger words left out, with
    # boilerplate): no concept of it asks for the style, but the prompt copies its examples
    prompt = "masterpiece, best quality, a village by the sea, summer clouds"
    ids, comp, res = select(retriever, prompt)
    assert res.candidates[0].id == "civitai-101" and ids == ["civitai-101"]
    assert "template" in comp.topics[0].adapters[0].reason
    assert any("Studio Ghibli Style LoRA" in n for n in comp.notices)
    # a tag list of the user's own, whose words only the girl adapters' example prompts share:
    # composed by concept, so nothing (the tag rules picked by shared words)
    ids, comp, _ = select(retriever, "masterpiece, best quality, 1girl, solo, smile, castle, moon")
    assert "civitai-105" not in ids and "civitai-108" not in ids, comp.scores["unassigned"]


def test_made_up_name_tokens_and_derived_words_match_their_concept():
    from components.concepts import ConceptIndex, Concept, compound_parts
    assert compound_parts("spaceshipai") == ("spaceship",)
    assert "horse" in compound_parts("edobhorse")
    assert compound_parts("castle") == ()  # a real word is no compound

    class Facts:  # the index facts of two cards, as the retriever passes them
        def __init__(self, name, concepts):
            self.name_concepts, self.concepts, self.brings, self.kind = [name], concepts, [], "style"
    index = ConceptIndex.build([Facts("oldegyptai", ["style"]), Facts("spaceshipai", ["concept"])])
    assert index.known_form("egyptian") == "egypt"
    assert index.known_form("pharaoh") == "pharaoh"  # unknown forms stay as they are
    hits = index.lexical(Concept("Egyptian style", ("egyptian",), True))
    assert list(hits) == [0] and hits[0][2]  # found in the name
    assert list(index.lexical(Concept("spaceship", ("spaceship",), False))) == [1]


def test_a_franchise_word_names_the_character_whose_name_it_is_not_the_series_cast(tmp_path, minilm):
    """"gundam" is in many character names ("<someone> | Gundam SEED"): there it names the series,
    not the person, and lets none of them through the character filter; but it is the subject of
    "Gundam RX78", which the prompt names, so that one is retrieved and picked."""
    girl = ["1girl, solo, pilot suit, long hair, smile", "1girl, standing, uniform, hangar"]
    cast = [card(f"civitai-{300 + n}", f"{first} {last} | Mobile Suit Gundam SEED", model_id=300 + n,
                 tags=["character", "anime", "girl"], triggers=[f"{first.lower()} {last.lower()}"], prompts=girl)
            for n, (first, last) in enumerate([("Lacus", "Clyne"), ("Murrue", "Ramius"), ("Meer", "Campbell"),
                                               ("Stella", "Loussier"), ("Lunamaria", "Hawke"), ("Cagalli", "Athha"),
                                               ("Natarle", "Badgiruel"), ("Flay", "Allster"), ("Miriallia", "Haw"),
                                               ("Fllay", "Alster"), ("Shiho", "Hahnenfuss"), ("Erica", "Simmons"),
                                               ("Aisha", "Waltfeld"), ("Meyrin", "Hawke")])]
    mecha = card("civitai-399", "Gundam RX78", model_id=399, tags=["character", "mecha", "robots", "gundam"],
                 triggers=["rx78"], prompts=["a giant gundam rx78 robot with a shield, battlefield, ruins, sparks",
                                             "gundam rx78 robot in space, earth in the background"])
    r, store = retriever_over([*cast, mecha], tmp_path, minilm)
    refine_store(store)  # the offline refiner files them as characters
    r.refresh()
    try:
        prompt = "A gundam stands tall with its sword raised in a ruined city."
        ids, comp, res = select(r, prompt)
        assert ids == ["civitai-399"], comp.scores.get("unassigned")
        assert [c.id for c in res.candidates if c.id != "civitai-399"] == []
        # a prompt that names a person of the cast still gets that person, not the mecha
        named = [c.id for c in r.retrieve("lacus clyne singing on a stage", top_k=150).candidates]
        assert "civitai-300" in named and "civitai-399" not in named
    finally:
        store.close()


def test_a_sfw_selection_retrieves_a_suggestive_adapter_only_for_a_prompt_that_asks_for_one(tmp_path, minilm):
    beach = card("civitai-201", "Beach Background", model_id=201, tags=["background", "beach", "sea"],
                 prompts=["beach, sea, summer sky, palm trees", "a girl on a sandy beach, sunset"])
    swimsuit = card("civitai-202", "Summer Swimsuit", model_id=202, tags=["clothing", "swimsuit", "beach"],
                    prompts=["1girl, swimsuit, beach, summer", "1girl, white swimsuit, sea"])
    r, store = retriever_over([beach, swimsuit], tmp_path, minilm)
    try:
        assert swimsuit.effective_rating() == "suggestive"
        ids = lambda prompt, **kw: [c.id for c in r.retrieve(prompt, top_k=150, **kw).candidates]  # noqa: E731
        assert ids("1girl, beach, summer, blue sky") == ["civitai-201"]  # suggestive: not even retrieved
        assert ids("a girl at the beach in summer") == ["civitai-201"]
        assert "civitai-202" in ids("1girl, swimsuit, beach, summer")  # the prompt asks for it
        from components.retriever import Filters
        assert "civitai-202" in ids("1girl, beach, summer", filters=Filters(allow_nsfw=True))
    finally:
        store.close()


def test_in_a_sentence_an_adapter_related_to_a_concept_ranks_above_ones_that_only_share_other_words(tmp_path, minilm):
    """The retrieved list of a sentence: the adapters related to one of its concepts (here a
    lighthouse adapter that is about postcards as well, so not picked) come before adapters whose
    example prompts share only the sentence's other words; unless the sentence copies one
    adapter's example prompts, which then keeps its place."""
    said = "shining brightly and glowing softly, seen yesterday evening, standing proudly"
    lighthouse = card("civitai-501", "Lighthouse Postcards | Vintage", model_id=501,
                      tags=["lighthouse", "postcard", "vintage"],
                      prompts=["vintage postcard of a lighthouse, sepia, coast", "postcard, lighthouse at dusk"])
    film = card("civitai-502", "Film Look", model_id=502, tags=["concept"],
                prompts=[f"a street {said}", f"a room {said}"])
    tint = card("civitai-503", "Retro Tint", model_id=503, tags=["concept"],
                prompts=[f"a shop {said}", f"a car {said}"])
    prompt = f"a lighthouse {said}"
    r, store = retriever_over([lighthouse, film, tint], tmp_path, minilm)
    refine_store(store)
    r.refresh()
    try:
        res = r.retrieve(prompt, top_k=10)
        assert [c.id for c in res.candidates][0] == "civitai-501", [(c.card.name, c.score) for c in res.candidates]
        assert not any(row["fits"] for row in res.candidates[0].concepts)  # related, not fitting
        assert select(r, prompt)[0] == []
    finally:
        store.close()
    # one adapter's example prompts alone match the sentence: it copies them, and that adapter leads
    r, store = retriever_over([lighthouse, film], tmp_path / "copied", minilm)
    refine_store(store)
    r.refresh()
    try:
        assert [c.id for c in r.retrieve(prompt, top_k=10).candidates][0] == "civitai-502"
    finally:
        store.close()
