"""Every offline-composer rule on small hand-made candidate sets."""
import pytest

from components.composer import ComposeOptions, compose
from components.types import StylusError
from tests.composer_helpers import cand, card


def chosen(comp):
    return comp.adapter_ids()


def decision(comp, cid):
    return next(c for c in comp.scores["candidates"] if c["id"] == cid)


def test_assigns_adapters_to_their_topics_and_reports_unassigned():
    cands = [cand(card("bus", "Tour Bus", tags=["vehicle"])), cand(card("city", "Cyber City"), 0.9)]
    comp = compose("A white tour bus on a street in a city.", cands)
    assert chosen(comp) == ["bus", "city"]
    assert comp.topics[0].keywords == ["tour bus"]  # the segmenter follows the paper: colour apart
    assert "street" in comp.unassigned
    assert comp.composer == "offline" and comp.seconds >= 0
    assert all(t.adapters[0].reason for t in comp.topics)


def test_rejects_adapter_broader_than_topic():
    general = card("food", "General Food", category="food", tags=["food"])
    comp = compose("a hot dog on a plate", [cand(general, examples=["hot dog"])])
    assert chosen(comp) == []
    assert "broader" in decision(comp, "food")["reason"]


def test_rejects_foreign_concepts():
    comp = compose("a dog in a park", [cand(card("car", "Sports Car"))])
    assert chosen(comp) == [] and "foreign" in decision(comp, "car")["reason"]


def test_rejects_foreign_narrowing():
    shiba = card("shiba", "Shiba Inu Husky Dog")
    comp = compose("a dog in a park", [cand(shiba)])
    assert chosen(comp) == [] and "narrower" in decision(comp, "shiba")["reason"]


def test_character_only_when_named():
    miku = card("miku", "Hatsune Miku", category="character", tags=["girl", "character"], triggers=["miku"])
    assert chosen(compose("1girl, twintails, girl singing", [cand(miku)])) == []
    assert "does not name" in decision(compose("1girl, girl singing", [cand(miku)]), "miku")["reason"]
    assert chosen(compose("hatsune miku singing, girl", [cand(miku)])) == ["miku"]


def test_character_policy_all_and_none():
    miku = card("miku", "Hatsune Miku Character", category="character", tags=["girl", "character"],
                triggers=["miku"])
    described = [cand(miku, examples=["twintails", "aqua hair"])]
    # all: a character the prompt describes without naming is grounded like any adapter (not
    # "broader than" its topic because its name carries the label "Character")
    comp = compose("1girl, twintails, aqua hair", described, ComposeOptions(characters="all"))
    assert chosen(comp) == ["miku"]
    assert chosen(compose("a red car", [cand(miku)], ComposeOptions(characters="all"))) == []  # still grounded
    comp = compose("hatsune miku, twintails", described, ComposeOptions(characters="none"))
    assert chosen(comp) == [] and "turned off" in decision(comp, "miku")["reason"]
    with pytest.raises(StylusError, match="characters='some'"):
        compose("1girl", described, ComposeOptions(characters="some"))


def test_at_most_two_styles():
    styles = [cand(card(f"s{i}", f"Watercolor Style {n}", category="style"), 1 - i / 10)
              for i, n in enumerate(["Soft", "Wet", "Bright"])]
    comp = compose("a watercolor painting of a fox", styles, ComposeOptions(max_adapters=5, top_k=5))
    assert chosen(comp) == ["s0", "s1"]
    assert "style" in decision(comp, "s2")["reason"]


def test_adapter_spanning_keywords_merges_them():
    hat = card("hat", "Knitted Hat and Scarf")
    comp = compose("a girl with a knitted hat and a scarf", [cand(hat)])
    assert comp.topics[0].keywords == ["knitted hat", "scarf"]


def test_limits_per_topic_and_total_and_no_duplicates():
    cands = [cand(card(f"d{i}", f"Dog {i}"), 1 - i / 100) for i in range(5)]
    cands.append(cands[0])
    comp = compose("a dog", cands, ComposeOptions(top_k=2, max_adapters=3))
    assert chosen(comp) == ["d0", "d1"]
    comp = compose("a dog and a cat", cands + [cand(card("c", "Cat"), 0.5)], ComposeOptions(top_k=3, max_adapters=3))
    assert len(chosen(comp)) == 3 and len(set(chosen(comp))) == 3


def test_scores_are_exposed_for_every_candidate():
    cands = [cand(card("a", "Red Sofa")), cand(card("b", "Spaceship"), 0.2)]
    comp = compose("a cat on a red sofa", cands)
    rows = {r["id"]: r for r in comp.scores["candidates"]}
    assert rows["a"]["decision"] == "chosen" and rows["a"]["match"]["red sofa"] > 0
    assert rows["b"]["decision"] == "rejected"


def test_retrieval_evidence_grounds_an_adapter():
    style = card("ink", "Sumi-e", category="style")
    comp = compose("mountains, ink wash painting", [cand(style, examples=["ink wash"])])
    assert chosen(comp) == ["ink"]


def test_low_scores_are_dropped():
    cands = [cand(card("a", "Red Sofa"), 1.0), cand(card("b", "Cat Ears"), 0.05)]
    assert chosen(compose("a cat on a red sofa", cands)) == ["a"]


@pytest.mark.parametrize("prompt", ["", "masterpiece, best quality, 8k"])
def test_empty_and_boilerplate_prompts(prompt):
    comp = compose(prompt, [cand(card("a", "Dog"))])
    assert comp.topics == [] and comp.notices


def test_no_candidates():
    comp = compose("a dog", [])
    assert comp.topics == [] and comp.unassigned == ["dog"]
    assert any("no candidate" in n for n in comp.notices)


def test_very_long_prompt_is_cut_with_notice():
    comp = compose("a dog on a beach " * 700, [cand(card("a", "Dog"))])
    assert chosen(comp) == ["a"] and any("characters" in n for n in comp.notices)


def test_bad_options_and_composer_name():
    with pytest.raises(StylusError, match="top_k=-1"):
        compose("a dog", [], ComposeOptions(top_k=-1))
    with pytest.raises(StylusError, match="offline, llm"):
        compose("a dog", [], composer="magic")
    with pytest.raises(StylusError, match="prompt must be text"):
        compose(None, [])


def test_naming_a_series_or_a_generic_trigger_does_not_name_a_character():
    annie = card("annie", "Annie from League of Legends", category="character",
                 tags=["league of legends"], triggers=["annie \\(league of legends\\)", "dress"])
    lisa = card("lisa", "Lisa Genshin Impact | Character Lora", category="character", tags=["genshin impact"])
    assert chosen(compose("league of legends, 1girl, dress", [cand(annie)])) == []
    assert chosen(compose("annie, league of legends, dress", [cand(annie)])) == ["annie"]
    assert chosen(compose("genshin impact, 1girl, library", [cand(lisa, examples=["library"])])) == []
    assert chosen(compose("lisa, genshin impact, library", [cand(lisa, examples=["library"])])) == ["lisa"]


def test_run_together_and_underscore_triggers_name_a_character():
    ahsoka = card("ahsoka", "Ahsoka Tano (Clone Wars)", category="character", triggers=["ahsokatano"])
    kanata = card("kanata", "Amane Kanata 天音かなた / Hololive", category="character", triggers=["amane_kanata"])
    assert chosen(compose("ahsokatano, lightsaber", [cand(ahsoka, examples=["lightsaber"])])) == ["ahsoka"]
    assert chosen(compose("amane kanata, wings, halo", [cand(kanata, examples=["wings"])])) == ["kanata"]
