"""The starter catalog: seeding a new user catalog, facts-only content, reproducible rebuild."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.importers.civitai import cards_from_item
from catalog.starter import STARTER_PATH, load_starter_cards, open_catalog, seed_if_empty
from tools.build_starter import facts_only, template_refined

REPO = Path(__file__).resolve().parents[1]

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "civitai_items.jsonl"


@pytest.fixture(scope="module")
def starter_cards():
    return load_starter_cards()


def test_first_open_seeds_the_catalog_once(settings):
    said: list[str] = []
    with open_catalog(settings, notify=said.append) as store:
        seeded = len(store)
        assert seeded == len(load_starter_cards()) and said and "seeded with" in said[0]
        card = next(store.iter_cards())
        assert card.refined.description  # refined part travels with the seed
        store.delete(card.id)
    with open_catalog(settings, notify=said.append) as store:
        assert len(store) == seeded - 1 and len(said) == 1  # not seeded again


def test_imports_and_filled_catalogs_are_not_seeded(settings, store):
    with open_catalog(settings, seed=False) as fresh:
        assert len(fresh) == 0
    store.upsert(cards_from_item(json.loads(FIXTURE.read_text().splitlines()[1]))[0][0])
    assert seed_if_empty(store) == 0 and len(store) == 1


def test_shipped_starter_holds_facts_only(starter_cards):
    assert len(starter_cards) >= 1000
    assert len({c.civitai_model_id for c in starter_cards}) == len(starter_cards)  # one card per model
    for card in starter_cards:
        assert card.base_model == "SD 1.5" and not card.nsfw and not card.real_person
        assert card.description_raw == "" and card.description_clean == ""
        assert all(ex.prompt == "" and ex.negative_prompt == "" for ex in card.examples)
        assert card.refined.description and card.files and card.files[0].sha256
    assert STARTER_PATH.stat().st_size < 3_000_000


def test_facts_only_strips_author_text_and_writes_a_template():
    card = cards_from_item(json.loads(FIXTURE.read_text().splitlines()[0]))[0][0]
    out = facts_only(card)
    assert out.description_raw == out.description_clean == ""
    assert [ex.prompt for ex in out.examples] == ["", ""] and out.examples[0].lora_weight == 0.7
    assert out.files == card.files and out.trigger_words == ["wwash style"]
    refined = template_refined(out)
    assert out.refined == refined.model_copy(update={"source_hash": out.content_hash()})
    assert refined.description == ("Watercolor Wash Style: a LoRA adapter for SD 1.5 (style), tagged "
                                   "watercolor, painting; trigger words: wwash style.")
    assert refined.category == "style" and refined.recommended_weight == 0.68


@pytest.mark.shared
def test_rebuild_reproduces_the_shipped_file(shared_data, tmp_path):
    out = tmp_path / "starter.jsonl.gz"
    done = subprocess.run([sys.executable, "-m", "tools.build_starter",
                           str(shared_data / "civitai-loras-2023-07.jsonl.gz"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "descriptions by offline-" in done.stdout
    assert out.read_bytes() == STARTER_PATH.read_bytes(), (
        "the shipped starter is stale: python -m tools.build_starter "
        "../shared/data/civitai-loras-2023-07.jsonl.gz")


@pytest.mark.shared
def test_starter_carries_no_author_sentences(shared_data):
    shipped_by_model = {json.loads(line)["civitai_model_id"]: line for line in
                        gzip.decompress(STARTER_PATH.read_bytes()).decode("utf-8").splitlines()}
    checked = 0
    with gzip.open(shared_data / "civitai-loras-2023-07.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            shipped = shipped_by_model.get(item["id"])
            if shipped is None:
                continue
            cards = cards_from_item(item)[0]
            # trigger words and tags are facts, shipped as a list and in the template text
            facts = "\n".join(json.dumps(c.trigger_words + c.tags, ensure_ascii=False) + ", ".join(c.trigger_words)
                              for c in cards)
            for card in cards:
                texts = card.description_clean.split("\n") + [ex.prompt for ex in card.examples]
                for text in texts:
                    text = json.dumps(text, ensure_ascii=False)[1:-1]
                    if len(text) > 60 and text not in facts:
                        assert text not in shipped, f"author text of item {item['id']} in the starter"
                        checked += 1
    assert checked > 1000
