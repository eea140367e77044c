"""The catalog service (catalog/service.py) both front ends use: search, curation and imports on
a real store, with its policies written once and ``on_change`` after every write, never after a read."""
from __future__ import annotations

import json

import pytest

from catalog.search import CardQuery
from catalog.service import CatalogService
from catalog.settings import Settings
from catalog.store import CatalogError, CatalogStore
from tests.fakes.civitai_server import FakeCivitai
from tests.retrieval_helpers import card
from tests.test_import_robust import item

TOKEN = "civ-service-token-123"


class Changes:
    """Counts ``on_change`` calls (what the engine's index refresh would be asked to do)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def service(tmp_path, changes):
    settings = Settings(home=tmp_path / "stylus", civitai_token=TOKEN)
    store = CatalogStore(settings.catalog_dir)
    store.upsert(card("civitai-1", "Soft Wash", model_id=1, tags=["watercolor", "style"], downloads=50))
    store.upsert(card("civitai-3", "Ink Fox", model_id=3, tags=["ink", "fox"], triggers=["inkfox"], downloads=5))
    yield CatalogService(store, settings, on_change=changes)
    store.close()


def test_reads_never_call_on_change_and_each_write_calls_it_once(service, changes, tmp_path):
    assert service.stats()["cards"] == 2
    assert service.card(" civitai-3 ").name == "Ink Fox"  # spaces around a pasted id do not matter
    assert [c.id for c in service.search(text="inkfox")] == ["civitai-3"]
    assert changes.count == 0
    edited = service.edit("civitai-1", editor="tester", tags=["wash"])
    assert edited.effective_tags() == ["wash"] and changes.count == 1
    assert service.set_blocked("civitai-3", True, editor="tester").blocked and changes.count == 2
    assert [c.id for c in service.search(status="blocked")] == ["civitai-3"] and changes.count == 2
    folder = tmp_path / "loras"
    folder.mkdir()
    assert service.import_folder(folder).added == 0 and changes.count == 3  # a private server: any folder


def test_a_missing_or_unknown_card_id_is_refused_with_what_to_do(service, changes):
    for blank in ("", "   ", None):
        with pytest.raises(CatalogError, match="no adapter id given; pick a card from the list or type its id"):
            service.card(blank)
        with pytest.raises(CatalogError, match="no adapter id given"):
            service.edit(blank, blocked=True)
    with pytest.raises(CatalogError, match="no adapter card with id 'civitai-99'"):
        service.set_blocked("civitai-99", True)
    with pytest.raises(CatalogError, match="cannot edit colour; editable fields: "):
        service.edit("civitai-1", colour="red")
    assert changes.count == 0  # a refused write changes nothing


def test_server_folders_follow_the_import_roots_policy(tmp_path, changes):
    inside, outside = tmp_path / "loras", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    with CatalogService.open(Settings(home=tmp_path / "public", public=True), seed=False) as public:
        with pytest.raises(CatalogError, match="folder import is off on a public server; set "
                                               "STYLUS_FOLDER_IMPORT_ROOTS"):
            public.import_folder(inside)
        with pytest.raises(CatalogError, match="folder import is off on a public server"):
            public.identify_folder(inside, base_url="http://127.0.0.1:9")  # refused before any request
    settings = Settings(home=tmp_path / "rooted", public=True, folder_import_roots=[str(inside)])
    with CatalogService(CatalogStore(settings.catalog_dir), settings, on_change=changes) as rooted:
        with pytest.raises(CatalogError, match="not inside an allowed import root"):
            rooted.import_folder(outside)
        assert changes.count == 0
        assert rooted.import_folder(inside).skipped == [] and changes.count == 1


def test_a_civitai_file_import_goes_past_a_bad_item_and_reports_it(service, changes, tmp_path):
    dump = tmp_path / "dump.jsonl"
    lines = [json.dumps(item(501, 601, name="Pencil Sketch")), '{"id": 502, "name": "cut off',
             json.dumps({"id": "abc", "name": "no versions"}), json.dumps(item(503, 603, name="Oil Paint"))]
    dump.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = service.import_civitai_file(dump)
    assert report.added == 2 and changes.count == 1
    assert {service.card("civitai-601").name, service.card("civitai-603").name} == {"Pencil Sketch", "Oil Paint"}
    skipped = dict(report.skipped)
    assert "line 2" in skipped and any(k.startswith("civitai item abc") for k in skipped)


def test_the_api_import_uses_the_settings_token_and_base_model_unless_given(service, changes):
    items = [item(701, 801, name="Moon Glow"), item(702, 802, name="Sun Glow")]
    items[1]["modelVersions"][0]["baseModel"] = "SDXL 1.0"
    with FakeCivitai(items) as civitai:
        report = service.import_civitai_api(base_url=civitai.base_url)
        assert report.added == 1 and service.card("civitai-801").name == "Moon Glow" and changes.count == 1
        assert civitai.requests[0].query["baseModels"] == ["SD 1.5"]
        assert civitai.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
        service.import_civitai_api("other-token-456", base_url=civitai.base_url, base_models=["SDXL 1.0"])
        assert civitai.requests[-1].headers["authorization"] == "Bearer other-token-456"
        assert civitai.requests[-1].query["baseModels"] == ["SDXL 1.0"] and changes.count == 2
    assert TOKEN not in json.dumps(report.to_dict())


def test_search_takes_a_query_or_its_fields_not_both(service):
    assert [c.id for c in service.search(CardQuery(text="WASH"))] == [c.id for c in service.search(text="wash")]
    assert [c.id for c in service.search(limit=1)] == ["civitai-1"]  # most downloaded first
    with pytest.raises(CatalogError, match="give a CardQuery or its fields \\(text\\), not both"):
        service.search(CardQuery(), text="wash")
    with pytest.raises(CatalogError, match="sparkly"):
        service.search(flags=["sparkly"])


def test_open_seeds_a_new_catalog_only_when_asked(tmp_path):
    with CatalogService.open(Settings(home=tmp_path / "a"), seed=False) as empty:
        assert empty.stats()["cards"] == 0
    with CatalogService.open(Settings(home=tmp_path / "b")) as seeded:
        assert seeded.stats()["cards"] > 0  # the starter cards
