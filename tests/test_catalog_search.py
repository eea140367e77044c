"""One catalog search (catalog/search.py) for the Catalog tab, the API and the CLI: a typed query
checked once, the SQL in one place."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.search import CardQuery, search_cards
from catalog.store import CatalogError, CatalogStore
from ground.errors import StylusError
from tests.retrieval_helpers import card

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    s = CatalogStore(tmp_path / "catalog")
    s.upsert(card("civitai-1", "Soft Wash", model_id=1, tags=["watercolor", "style"], downloads=50))
    s.upsert(card("civitai-2", "Neon Alley", model_id=2, tags=["cyberpunk", "city"], downloads=500))
    s.upsert(card("civitai-3", "Ink Fox", model_id=3, tags=["ink", "fox"], triggers=["inkfox"], downloads=5))
    s.edit("civitai-2", blocked=True)
    yield s
    s.close()


@pytest.mark.parametrize("bad, needle", [({"flags": ("sparkly",)}, "sparkly"), ({"status": "hidden"}, "hidden"),
                                         ({"limit": 0}, "limit 0")])
def test_a_bad_query_is_refused_naming_the_value(bad, needle):
    with pytest.raises(CatalogError, match=needle) as info:
        CardQuery(**bad)
    assert isinstance(info.value, StylusError)  # the front ends catch one root


def test_text_matches_tags_and_trigger_words_most_downloaded_first(store):
    assert [c.id for c in search_cards(store, CardQuery(text="WATERCOLOR"))] == ["civitai-1"]
    assert [c.id for c in search_cards(store, CardQuery(text="inkfox"))] == ["civitai-3"]
    assert [c.id for c in search_cards(store, CardQuery())] == ["civitai-2", "civitai-1", "civitai-3"]
    assert [c.id for c in search_cards(store, CardQuery(status="blocked"))] == ["civitai-2"]
    assert [c.id for c in search_cards(store, CardQuery(status="active", limit=1))] == ["civitai-1"]


def test_the_cli_lists_with_the_same_search(store, tmp_path):
    out = subprocess.run([sys.executable, "-m", "stylus_ui", "catalog", "list", "--catalog", str(tmp_path / "catalog"),
                          "--search", "cyberpunk", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [row["id"] for row in json.loads(out.stdout)] == ["civitai-2"]  # found by a tag, not its name
