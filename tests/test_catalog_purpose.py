"""A card's purpose and content rating in the Catalog tab (shown, edited, saved) and the content
screen's counts in `catalog stats`."""
from __future__ import annotations

import json

import pytest

from catalog.card import AdapterCard, Purpose
from tests.fakes.web_catalog import XSS_DESCRIPTION, card, write_catalog


@pytest.fixture
def engine(tmp_path):
    from catalog.settings import Settings
    from components.engine import StylusEngine

    home = tmp_path / "stylus"
    write_catalog(home / "catalog")
    return StylusEngine(Settings(home=home))


def test_purpose_and_rating_edits_persist_through_the_engine(engine):
    from catalog.settings import Settings
    from catalog.store import CatalogError
    from components.engine import StylusEngine
    from components.refiner.purpose import purpose_of
    from components.types import StylusError

    c = engine.catalog.edit("test-knight", purpose={"concepts": ["plate armor", "knight"], "kind": "clothing",
                                                 "brings": ["man"]}, rating="suggestive")
    assert c.effective_rating() == "suggestive" and c.rating_reasons() == ["rated suggestive by a curator"]
    again = StylusEngine(Settings(home=engine.settings.home)).catalog.card("test-knight")
    assert purpose_of(again).concepts == ["plate armor", "knight"] and purpose_of(again).brings == ["man"]
    assert again.curation.rating == "suggestive" and not again.effective_nsfw()
    with pytest.raises(CatalogError, match="purpose kind 'sparkly'"):
        engine.catalog.edit("test-knight", purpose={"concepts": ["x"], "kind": "sparkly"})
    with pytest.raises(CatalogError, match="rating 'spicy'"):
        engine.catalog.edit("test-knight", rating="spicy")
    with pytest.raises(StylusError):
        engine.catalog.card("")


def test_catalog_tab_shows_and_saves_purpose_and_rating(engine):
    from components.refiner.purpose import purpose_of
    from stylus_ui.web.catalog_tab import FORM_KEYS, SCREEN, on_open, on_save

    detail, *form = on_open(engine, "test-knight")
    values = dict(zip(FORM_KEYS, form))
    computed = purpose_of(engine.catalog.card("test-knight"))
    assert values["concepts"] == ", ".join(computed.concepts) and values["kind"] == computed.kind
    assert values["rating"] == SCREEN and values["brings"] == list(computed.brings)
    assert "content rating: <b>sfw</b>" in detail and "purpose:" in detail

    # saving the form as opened changes neither purpose nor rating
    *_, status = on_save(engine, "test-knight", *form)
    assert "purpose" not in status and "rating" not in status
    assert engine.catalog.card("test-knight").curation.purpose is None

    values.update(concepts="silver armor, knight,  ", kind="clothing", brings=["man", "person"], rating="explicit")
    detail, *form, status = on_save(engine, "test-knight", *[values[k] for k in FORM_KEYS])
    c = engine.catalog.card("test-knight")
    assert c.curation.purpose.concepts == ["silver armor", "knight"] and c.curation.purpose.kind == "clothing"
    assert set(c.curation.purpose.brings) == {"man", "person"}
    assert c.effective_rating() == "explicit" and c.effective_nsfw()
    assert "purpose" in status and "rating" in status
    assert "content rating: <b>explicit</b> (rated explicit by a curator)" in detail
    assert dict(zip(FORM_KEYS, form))["nsfw"] is True

    # an older client sends the first nine fields only: purpose and rating stay as they are
    old = [values[k] for k in FORM_KEYS[:9]]
    old[FORM_KEYS.index("nsfw")] = True
    on_save(engine, "test-knight", *old)
    c = engine.catalog.card("test-knight")
    assert c.curation.purpose.concepts == ["silver armor", "knight"] and c.curation.rating == "explicit"

    # the older checkbox still works: unchecked means sfw by a curator
    old[FORM_KEYS.index("nsfw")] = False
    on_save(engine, "test-knight", *old)
    assert engine.catalog.card("test-knight").effective_rating() == "sfw"

    # "(screen)" hands the rating back to the content screen
    values["rating"] = SCREEN
    on_save(engine, "test-knight", *[values[k] for k in FORM_KEYS])
    c = engine.catalog.card("test-knight")
    assert c.curation.rating is None and c.curation.nsfw is None and c.effective_rating() == "sfw"


def test_card_detail_escapes_purpose_and_rating_reasons():
    from stylus_ui.web import render

    evil = '<script>alert(1)</script>'
    c = card("x1", f"{evil} nude", "style", [evil, "nsfw"], [evil], XSS_DESCRIPTION)
    c.curation.purpose = Purpose(concepts=[evil], kind="style", brings=["sexual"])
    html = render.card_detail_html(c)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "content rating: <b>explicit</b>" in html and "brings: sexual" in html


def _write(catalog_dir, cards: list[AdapterCard]) -> None:
    from catalog.store import CatalogStore
    with CatalogStore(catalog_dir) as store:
        for c in cards:
            store.upsert(c)


def _card(i: int, tags: list[str], nsfw: bool = False) -> AdapterCard:
    return AdapterCard(id=f"c-{i}", source="manual", name=f"Adapter {i}", base_model="SD 1.5",
                       adapter_type="LoRA", tags=tags, nsfw=nsfw)


def test_catalog_stats_reports_what_the_content_screen_adds(tmp_path, capsys, monkeypatch):
    from catalog.store import CatalogStore
    from stylus_ui.cli import main

    monkeypatch.setenv("STYLUS_HOME", str(tmp_path / "home"))
    path = tmp_path / "catalog"
    _write(path, [_card(1, ["style", "nsfw"]),  # explicit by its tags, not flagged by the source
                  _card(2, ["nsfw"], nsfw=True),  # flagged by the source: not counted
                  _card(3, ["bikini", "beach"]),  # suggestive
                  _card(4, ["watercolor"])])
    assert main(["catalog", "stats", "--catalog", str(path)]) == 0
    out = capsys.readouterr().out
    assert "content screen: 1 explicit (not flagged by the source), 1 suggestive" in out
    assert "nsfw                 1" in out  # the source's flag, as before

    with CatalogStore(path) as store:  # a curator's rating counts, and the cached counts follow edits
        assert store.stats()["content_screen"] == {"explicit": 1, "suggestive": 1}
        store.edit("c-1", rating="sfw")
        store.edit("c-4", rating="suggestive")
        assert store.stats()["content_screen"] == {"explicit": 0, "suggestive": 2}
        store.edit("c-1", nsfw=True)
        assert store.stats()["flags"]["nsfw"] == 2
        store.edit("c-1", nsfw=None)  # cleared: the column follows the source's flag again
        assert store.stats()["flags"]["nsfw"] == 1
    assert main(["catalog", "stats", "--json", "--catalog", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["content_screen"] == {"explicit": 0, "suggestive": 2}


def test_catalog_tab_summary_shows_the_screen_counts(engine):
    from stylus_ui.web.catalog_tab import initial_values

    engine.catalog.edit("test-corgi", rating="explicit")
    _base, rows, summary = initial_values(engine)
    assert rows and "content screen: 1 explicit (not flagged by the source)" in summary


def test_catalog_save_endpoints_old_and_new(app_url):
    """/catalog_save keeps its nine fields (scripts and tests call it so); /catalog_save_all takes the
    whole form."""
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    row = ("test-moon", "A grey lunar landscape.", "background", "moon, lunar", "moonscape", 0.8, False, False, False)
    out = client.predict(*row, "n1", "lunar landscape, craters", "place", [], "sfw", api_name="/catalog_save_all")
    assert "purpose" in out[-1] and "rating" in out[-1] and "rated sfw by a curator" in out[0]
    out = client.predict(*row, "n2", api_name="/catalog_save")
    assert len(out) == 11 and "purpose" not in out[-1] and "rating" not in out[-1]
    detail, *form, _status = client.predict(*row, "n3", "lunar landscape, craters", "place", [], "sfw",
                                            api_name="/catalog_save_all")
    assert form[-4:] == ["lunar landscape, craters", "place", [], "sfw"] and "craters" in detail
