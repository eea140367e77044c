"""Selection by concept beyond shared words: word forms ("Egyptian" / "Egypt"), categories ("pizza"
is food), what a whole name says ("Maps - Harbor town" is about a town too), and what a style or a
medium brings. The real retriever (MiniLM + chromadb) and composer on hand-made, real-shaped cards;
behaviour only."""
from __future__ import annotations

import pytest

from components.composer.segment import segment
from components.concepts import concepts_of, expand, media_of, word_forms, with_stems
from components.lexicon import artist_movements, category_of
from components.prompt_text import lexer_words
from components.refiner.purpose import extract_purpose, names_medium
from tests.retrieval_helpers import card, retriever_over, select


def knowledge_catalog():
    return [
        card("civitai-201", "Food Photo XL", model_id=201, tags=["food", "photography", "objects"],
             prompts=["a bowl of ramen on a wooden table, food photography", "a burger, studio light, food photo"]),
        card("civitai-202", "AncientEgyptAI", model_id=202, tags=["style", "egypt"],
             prompts=["ancientegyptai, a temple wall", "ancientegyptai, a cat"]),
        card("civitai-203", "IconForge_sword_Lora", model_id=203, tags=["style", "sword"],
             prompts=["game icon, sword, white background", "game icon, sword, glowing"]),
        card("civitai-204", "Board Game Maps #3 - Harbor town", model_id=204, tags=["map", "town", "assets"],
             prompts=["top-down map, harbor town, docks", "top-down map, harbor town, market"]),
        card("civitai-205", "Rope Binding Art", model_id=205, tags=["clothing"],
             prompts=["rope binding art, ropes", "rope binding art, red rope"]),
        card("civitai-206", "Surreal Dreamscape", model_id=206, tags=["style", "surreal", "dreamlike"],
             prompts=["surreal dreamscape, melting clocks", "surreal dreamscape, floating islands"]),
        card("civitai-207", "Better Watercolor - In the style of Jane Doe", model_id=207,
             tags=["style", "watercolor", "painting"], prompts=["watercolor, a harbor", "watercolor, a fox"]),
    ]


@pytest.fixture
def retriever(tmp_path, minilm):
    r, store = retriever_over(knowledge_catalog(), tmp_path, minilm)
    yield r
    store.close()


def test_a_food_adapter_serves_a_dish_the_prompt_names(retriever):
    ids, comp, _ = select(retriever, "this is a slice of pizza on a yellow plate")
    assert ids == ["civitai-201"]
    topic = comp.topics[0]
    assert topic.keywords == ["pizza"] and "'pizza' as food" in topic.adapters[0].reason


def test_a_photography_adapter_is_not_picked_for_a_painting(retriever):
    ids, comp, _ = select(retriever, "a painting of a slice of pizza")
    assert "civitai-201" not in ids
    assert "photography where the prompt asks for painting or drawing" in comp.scores["unassigned"]["pizza"]


def test_derived_word_forms_match(retriever):
    ids, _, _ = select(retriever, "a vase in the style of Egyptian hieroglyphics")
    assert ids == ["civitai-202"]
    ids, _, _ = select(retriever, "a surrealist painting of a clock tower")
    assert "civitai-206" in ids


def test_a_style_adapter_is_foreign_to_an_object_concept(retriever):
    ids, comp, _ = select(retriever, "a knight holding a long sword")
    assert "civitai-203" not in ids
    assert "style the prompt does not ask for" in comp.scores["unassigned"]["long sword"]


def test_every_piece_of_the_name_counts_as_what_it_brings(retriever):
    ids, comp, _ = select(retriever, "a map of Australia")
    assert ids == []
    assert "harbor" in comp.scores["unassigned"]["map"] and "town" in comp.scores["unassigned"]["map"]


def test_an_outfit_named_art_is_no_medium_and_brings_a_person(retriever):
    purpose = extract_purpose(retriever.store.get("civitai-205"))
    assert purpose.kind == "clothing" and "person" in purpose.brings
    ids, _, _ = select(retriever, "a boxing ring with ropes and a bell")
    assert "civitai-205" not in ids


def test_a_style_named_for_where_it_comes_from_still_fits(retriever):
    ids, _, _ = select(retriever, "a watercolor painting of a lighthouse at dusk")
    assert ids == ["civitai-207"]  # "in the style of Jane Doe" names the style's source, not more things


def test_one_adapter_serves_one_concept_and_the_other_says_so(retriever):
    ids, comp, _ = select(retriever, "a bowl of ramen with a boiled egg, food photography")
    assert ids == ["civitai-201"] and comp.topics[0].keywords == ["food photography"]
    assert comp.scores["unassigned"]["boiled egg"] == "its fitting adapter serves 'food photography' already"


def test_word_forms_and_stems():
    assert word_forms("egyptian") == {"egyptian", "egypt"}
    assert word_forms("surrealism") & word_forms("surrealist") == {"surreal"}
    assert "real" not in word_forms("realistic")  # too common a word to join forms
    assert word_forms("castle") == {"castle"}
    assert with_stems(("egyptian", "vase")) == {"egyptian", "egypt", "vase"}


def test_categories_from_the_shipped_lexicon():
    assert category_of(("pizza",)) == "food"
    assert category_of(("vegetable", "pizza")) == "food"
    assert category_of(("hot", "dog")) == "food"  # the longest known ending decides
    assert category_of(("dog",)) is None  # animals are left out: their catalog adapters are styles
    assert category_of(("castle",)) is None


def test_media_and_medium_phrases():
    assert names_medium(["stained", "glass", "window"]) and names_medium(["oil", "painting"])
    assert not names_medium(["rope", "art"]) and not names_medium(["paper", "mario"])
    assert media_of(["food", "photography"]) == {"photography"}
    assert media_of(["oil", "painting"]) == {"painting or drawing"}
    assert media_of(["castle"]) == frozenset()


def test_a_style_named_for_an_artist_draws_the_artists_movement(tmp_path, minilm):
    """WordNet's gloss of an artist names their movement (shipped lexicon): a style adapter named
    for Pollock, whose card never says "abstract", serves "an abstract painting"; a character who
    shares a painter's surname gets no movement."""
    drip = card("civitai-211", "Pollock/NewYorkSchool", model_id=211, tags=["art", "style", "painting"],
                prompts=["colorful, floating paint, white background", "colorful, chaos, industrial, daylight"])
    person = card("civitai-212", "Stella | Original Character", model_id=212, tags=["character", "girl"],
                  prompts=["1girl, stella, smile, school uniform"])
    fish = card("civitai-213", "Pollock Fish Market", model_id=213, tags=["fish", "market", "objects"],
                prompts=["a pollock on ice, fish market", "fresh pollock, seafood stall"])
    assert artist_movements(["pollock"]) == {"pollock": ("abstract expressionism",)}
    assert artist_movements(lexer_words("Rubens - Style")) == {"ruben": ("baroque",)}  # the lexer's form
    assert "abstract expressionism" in extract_purpose(drip).concepts
    assert extract_purpose(person).kind == "character" and "minimalist" not in extract_purpose(person).concepts
    assert "abstract expressionism" not in extract_purpose(fish).concepts  # a subject, not a style
    r, store = retriever_over([drip, person, fish], tmp_path, minilm)
    try:
        ids, comp, _ = select(r, "an abstract painting of a lighthouse")
        assert ids == ["civitai-211"], comp.scores["unassigned"]
        assert select(r, "a lighthouse at the harbor")[0] == []
    finally:
        store.close()


def test_words_run_together_in_a_name_are_read_apart(tmp_path, minilm):
    """"EdobHorse": MiniLM reads the run-together name as word pieces that miss "horse"; read apart,
    the card is close enough to "horses" to confirm what its tags say."""
    from components.index.documents import dense_text
    horse = card("civitai-221", "EdobHorse", model_id=221, tags=["animals", "photorealistic", "equine", "horse"],
                 prompts=["a white horse galloping on a beach", "a brown horse in a stable"])
    assert dense_text(horse).startswith("Edob Horse.")
    r, store = retriever_over([horse], tmp_path, minilm)
    try:
        ids, comp, _ = select(r, "Horses pulling a carriage on the moon's surface")
        assert ids == ["civitai-221"], comp.scores["unassigned"]
    finally:
        store.close()


def test_a_prompt_naming_an_artist_asks_for_the_artists_movement(tmp_path, minilm):
    """"in the style of Dali": no adapter is named for Dali, but a surrealism style is the nearest
    thing the catalog holds (WordNet: Dali was a surrealist). A surname that is a commoner word
    ("Pollock", a fish; "Davis") asks for no movement unless it is asked for as a style or comes
    with a first name ("Jackson Pollock")."""
    surreal = card("civitai-231", "Surreal Harmony LoRA", model_id=231, tags=["surrealism", "style"],
                   prompts=["melting clocks in a desert, dreamlike", "a floating island, surreal sky"])
    cubist = card("civitai-232", "Cubism Style", model_id=232, tags=["cubism", "style", "painting"],
                  prompts=["a cubist portrait of a man", "cubism, still life with guitar"])
    car = card("civitai-233", "Sports Car Photography", model_id=233, tags=["photography", "car", "vehicle"],
               prompts=["a red sports car on a mountain road", "sports car, studio lighting"])
    drip = card("civitai-235", "Abstract Expressionism LoRA", model_id=235,
                tags=["abstract expressionism", "style", "painting"],
                prompts=["abstract expressionism, drips and splatters", "abstract expressionism, a harbor"])
    # the painter's first and full names are no other subject of the style's name
    monet = card("civitai-234", "Claude Monet/Oscar-Claude Monet style", model_id=234, tags=["style", "style lora"],
                 prompts=["painting (medium), lake, castle", "painting (medium), village"])
    assert [c.text for _, c in expand(concepts_of(segment("a car in the style of Dali")))][-1] == "surrealist"
    r, store = retriever_over([surreal, cubist, car, monet, drip], tmp_path, minilm)
    try:
        ids, comp, res = select(r, "a painting of a mountain road in the style of Dali")
        assert ids == ["civitai-231"], comp.scores["unassigned"]
        assert "dali" in comp.topics[0].adapters[0].reason.lower()
        assert res.candidates[0].id == "civitai-231"
        assert select(r, "a painting of a mountain road")[0] == []
        assert select(r, "a harbor at dawn by Jackson Pollock")[0] == ["civitai-235"]
        # a surname that is also a fish, or a common name, is no painter outside a style
        assert select(r, "a plate of grilled pollock with lemon")[0] == []
        assert select(r, "a portrait of Davis at his desk")[0] == []
        assert select(r, "a portrait of a man, in the style of Davis")[0] == ["civitai-232"]
        assert select(r, "water lilies by Claude Monet")[0] == ["civitai-234"]
        assert select(r, "a harbor in the style of Monet")[0] == ["civitai-234"]
    finally:
        store.close()


def test_an_adapter_holding_more_of_a_concept_is_picked_before_one_holding_less(tmp_path, minilm):
    """"dutch baroque painting": a baroque *painting* style holds two of its words, an ornament
    style named "baroque" one; the first is picked, and ranked first, whatever the scores say."""
    ornament = card("civitai-241", "BaroqueAI", model_id=241, tags=["style"], triggers=["baroqueAI"],
                    prompts=["baroqueAI, coffee machine", "baroqueAI, car", "baroqueAI, landscape with cities"])
    painter = card("civitai-242", "Rubens - Style", model_id=242, tags=["style", "paintings", "painting"])
    r, store = retriever_over([ornament, painter], tmp_path, minilm)
    try:
        ids, comp, res = select(r, "a dutch baroque painting of a horse in a field")
        assert ids == ["civitai-242"], comp.scores
        assert res.candidates[0].id == "civitai-242"
        fits = {c.id: set(c.fitting_concepts()) for c in res.candidates}
        assert fits["civitai-241"] == fits["civitai-242"] == {"dutch baroque painting"}  # both fit
    finally:
        store.close()


def test_a_style_asked_for_by_its_rare_name_is_picked_as_its_creator_made_it(tmp_path, minilm):
    """A style the prompt names by a rare word ("Van Gogh", "ukiyo-e") is what the user asked for:
    the girl its creator tagged it with does not keep it out, and MiniLM, which makes little of
    either text, need not confirm a name that holds the whole concept. A common look word
    ("oil painting") asks for no particular adapter: the girl still keeps that one out."""
    gogh = card("civitai-251", "Fake Van Gogh Style", model_id=251,
                tags=["girl", "digital art", "oil painting", "style", "artstyle", "lora"],
                prompts=["masterpiece, best quality, 1girl, starry sky", "masterpiece, 1girl, solo, cloud, sky"])
    hasui = card("civitai-252", "[浮世絵/Ukiyo-e] 川瀬巴水 画风 Kawase Hasui Painting Style LoRA", model_id=252,
                 tags=["drawing", "vintage", "japan", "style", "painting"], triggers=["ukiyo-e"],
                 prompts=["ukiyo-e, a mountain path lit by lanterns on a snowy day",
                          "ukiyo-e, wooden fishing boats in a bay at sunset"])
    r, store = retriever_over([gogh, hasui], tmp_path, minilm)
    try:
        ids, comp, _ = select(r, "a starry night over a village in the style of Van Gogh")
        assert ids == ["civitai-251"], comp.scores["unassigned"]
        assert select(r, "an oil painting of a village at night")[0] == []
        ids, comp, _ = select(r, "a lighthouse on a cliff, ukiyo-e")
        assert ids == ["civitai-252"], comp.scores["unassigned"]
    finally:
        store.close()
