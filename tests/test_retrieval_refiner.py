"""Offline refiner: weights, trigger words, categories and keywords on real-shaped cards."""
from __future__ import annotations

from components.refiner.offline import (REFINER_NAME, PhraseStats, category, description_triggers, keywords, needs_refine,
                                        recommended_weight, refine_card, refine_store)
from tests.retrieval_helpers import card, small_catalog


def test_weight_range_in_author_text_gives_the_midpoint():
    c = card("civitai-1", "X", model_id=1, description="Recommended weight between 0.6~0.8 for best results.")
    assert recommended_weight(c) == (0.7, "author-text")
    c = card("civitai-1", "X", model_id=1, description="Use a LoRA strength of 0.65.")
    assert recommended_weight(c) == (0.65, "author-text")
    c = card("civitai-1", "X", model_id=1, description="Prompt: <lora:x_style:0.55>, 1girl")
    assert recommended_weight(c) == (0.55, "author-text")


def test_weight_falls_back_to_example_median_then_default():
    c = card("civitai-1", "X", model_id=1, prompts=["a <lora:x:0.5>", "b <lora:x:0.9>", "c <lora:x:0.7>"],
             weights=[0.5, 0.9, 0.7])
    assert recommended_weight(c) == (0.7, "example-median")
    assert recommended_weight(card("civitai-1", "X", model_id=1)) == (0.8, "default")
    # junk numbers ("weight 100%", "steps 30") are not weights
    c = card("civitai-1", "X", model_id=1, description="Trained with 30 steps, weight 100 percent")
    assert recommended_weight(c) == (0.8, "default")


def test_trigger_words_found_in_description_text():
    c = card("civitai-4", "Diner", model_id=4, description="Trigger word: retrodiner. Works at any weight.")
    assert description_triggers(c) == ["retrodiner"]
    c = card("civitai-9", "Girl", model_id=9, description="Trigger words are 'fashi-girl' and \"red scarf\".")
    assert description_triggers(c) == ["fashi-girl", "red scarf"]
    c = card("civitai-9", "Girl", model_id=9, triggers=["fashi-girl"], description="trigger word: fashi-girl")
    assert description_triggers(c) == []  # already a trained word
    c = card("civitai-9", "Girl", model_id=9, description="No trigger needed, it just works.")
    assert description_triggers(c) == []


def test_categories_from_tags_then_name():
    cat = {c.id: category(c) for c in small_catalog()}
    assert cat["civitai-1"] == "style" and cat["civitai-2"] == "clothing" and cat["civitai-3"] == "character"
    assert cat["civitai-4"] == "background" and cat["civitai-6"] == "pose"
    assert category(card("civitai-9", "Red Sports Car", model_id=9)) == "vehicle"
    assert category(card("civitai-9", "Zzz", model_id=9)) == "other"


def test_keywords_ignore_boilerplate_and_lora_tags():
    cards = small_catalog()
    filler = [card(f"civitai-{100 + i}", f"Filler {i}", model_id=100 + i,
                   prompts=[f"masterpiece, best quality, thing {i}"]) for i in range(60)]
    stats = PhraseStats.from_cards(cards + filler)
    kws = keywords(cards[1], stats)
    assert "masterpiece" not in kws and "best quality" not in kws
    assert "cyber samurai armor" in kws or "samurai armor" in kws
    assert not any("lora" in k or "0.8" in k for k in kws)


def test_refined_card_is_the_projects_own_text_and_is_stored(store):
    cards = small_catalog()
    for c in cards:
        store.upsert(c)
    report = refine_store(store)
    assert report.refined == len(cards)
    got = store.get("civitai-1")
    assert got.refined.refiner == REFINER_NAME and got.refined.recommended_weight == 0.7
    assert got.refined.source_hash == got.content_hash() and not needs_refine(got)
    assert "Soft watercolor look" not in got.refined.description  # never the author's sentences
    assert got.refined.description.startswith("Style LoRA for SD 1.5: Watercolor Wash Style.")
    assert refine_store(store).refined == 0  # nothing changed: nothing redone
    r = refine_card(store.get("civitai-4"), PhraseStats.from_cards(cards))
    assert r.trigger_words == ["retrodiner"] and r.category == "background"
