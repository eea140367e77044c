"""Which prompts are read in the adapters' own vocabulary (tag soup: a creator's template) and
which by concept, with every "brings nothing the prompt lacks" rule: a caption with a few
modifiers and a plain list that names no one are read by concept. The real retriever (MiniLM +
chromadb) and composer on hand-made, real-shaped cards; behaviour only."""
from __future__ import annotations

import pytest

from components.composer.segment import is_tag_soup
from tests.retrieval_helpers import card, retriever_over, select


@pytest.mark.parametrize("prompt", [
    "1girl, school uniform, library",  # booru vocabulary
    "masterpiece, best quality, castle, sunset",  # quality boilerplate: a community template
    "shirt, skirt, smile, ponytail, beach",  # an outfit and a face: someone is in it
    "old man, beard, portrait, charcoal drawing",
    "a girl in a red dress, (masterpiece:1.2), best quality, sunset",  # weights are booru syntax
    "cat, (garden:1.2), flowers, oil painting",
])
def test_tag_soup_written_for_adapters(prompt):
    assert is_tag_soup(prompt)


@pytest.mark.parametrize("prompt", [
    "a cup of coffee on a wooden table, morning light, film photo",  # a caption and modifiers
    "portrait of an old fisherman, oil painting, dramatic lighting",
    "castle, mountains, sunset, watercolor",  # a plain list naming no one
    "cyberpunk city, neon, rain, night",
    "a corgi astronaut on the moon, watercolor",  # two items: a sentence, as before
])
def test_captions_and_plain_lists_are_read_by_concept(prompt):
    assert not is_tag_soup(prompt)


def shapes_catalog():
    return [
        card("civitai-301", "Sunset Hair Reflection", model_id=301, tags=["girl", "hair", "sunset", "scenery"],
             prompts=["1girl, long hair, sunset reflection in hair, scenery", "1girl, sunset, hair, lake"]),
        card("civitai-302", "Soft Watercolor", model_id=302, tags=["style", "watercolor", "painting"],
             prompts=["watercolor, a harbor at dusk", "watercolor, a fox in the snow"]),
        card("civitai-303", "Across The Table", model_id=303, tags=["concept", "girl", "woman", "table"],
             prompts=["1girl, sitting across table, cafe, looking at viewer", "1girl, across table, coffee"]),
        card("civitai-304", "Film Photography", model_id=304, tags=["photography", "film", "analog"],
             prompts=["film photo, a street at night, grain", "film photo, a bowl of fruit, grain"]),
    ]


@pytest.fixture
def retriever(tmp_path, minilm):
    r, store = retriever_over(shapes_catalog(), tmp_path, minilm)
    yield r
    store.close()


def test_a_list_that_names_no_one_gets_its_style_and_no_girl(retriever):
    ids, _, _ = select(retriever, "castle, mountains, sunset, watercolor")
    assert "civitai-302" in ids and "civitai-301" not in ids


def test_a_list_that_names_someone_may_get_an_adapter_that_brings_one(retriever):
    ids, _, _ = select(retriever, "long hair, smile, sunset, lake")
    assert "civitai-301" in ids


def test_a_caption_with_modifiers_gets_no_person_it_did_not_ask_for(retriever):
    ids, _, _ = select(retriever, "a cup of coffee on a wooden table, morning light, film photo")
    assert "civitai-304" in ids and "civitai-303" not in ids
