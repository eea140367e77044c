"""Civitai importers: the dump (JSONL / array / gzip), the live API against a local fake, the crash test."""
from __future__ import annotations

import copy
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalog.importers.civitai import cards_from_item, import_civitai_file
from catalog.importers.civitai_api import import_civitai_api
from catalog.store import CatalogError, CatalogStore
from tests.fakes.civitai_server import FakeCivitai

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "civitai_items.jsonl"
GOOD_CARDS = {"civitai-2001", "civitai-2002", "civitai-2003", "civitai-2004", "civitai-2005",
              "civitai-2008", "civitai-2010", "civitai-2011"}


def fixture_items() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, items: list, extra_lines: list[bytes] = ()) -> Path:
    with path.open("wb") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False).encode() + b"\n")
        for line in extra_lines:
            fh.write(line + b"\n")
    return path


# ---- the dump importer on hand-made fixtures ---------------------------------------------
def test_fixture_import_keeps_good_versions_and_names_every_bad_item(store):
    report = import_civitai_file(store, FIXTURE, progress=False)
    assert {c.id for c in store.iter_cards()} == GOOD_CARDS
    assert report.added == len(GOOD_CARDS)
    reasons = dict(report.skipped)
    assert any("civitai item 1005" in k and "modelVersions" in v for k, v in reasons.items())
    assert any("civitai item abc" in k and "'id'" in v for k, v in reasons.items())
    assert any("civitai item 1008" in k and "'Checkpoint' is not an adapter type" in v for k, v in reasons.items())
    assert any("civitai item 1011" in k and "'name'" in v for k, v in reasons.items())
    assert len(report.skipped) == 4
    assert any("civitai item 1007 version #1 skipped" in n and "'id'" in n for n in report.notices)


def test_card_fields_from_a_realistic_item():
    cards, messages = cards_from_item(fixture_items()[0])
    assert messages == []
    sd15, sdxl = cards
    assert (sd15.id, sd15.civitai_model_id, sd15.civitai_version_id) == ("civitai-2001", 1001, 2001)
    assert sd15.base_model == "SD 1.5" and sd15.adapter_type == "LoRA"
    assert sd15.tags == ["style", "watercolor", "painting"] and sd15.trigger_words == ["wwash style"]
    assert [f.name for f in sd15.files] == ["watercolor_wash_v2.safetensors"]  # training data left out
    f = sd15.files[0]
    assert f.sha256 == "01" * 32 and f.autov2 == "0101010101" and f.primary and f.size_kb == 18000.5
    assert f.download_url == "https://civitai.com/api/download/models/2001"
    assert sd15.download_count == 5400 and sd15.creator == "fixture_maker"
    first, second = sd15.examples
    assert first.lora_weight == 0.7 and first.lora_names == ["watercolor_wash_v2", "paper_grain"]
    assert second.lora_weight == 0.65 and second.lora_names == ["watercolor_wash_v2"]  # from meta.resources
    assert first.prompt.startswith("a harbor town") and first.negative_prompt == "lowres, blurry"
    # SDXL versions are kept and marked
    assert sdxl.base_model == "SDXL 1.0" and not sdxl.is_loadable("SD 1.5")
    assert any("incompatible with SD 1.5" in n for n in sdxl.notices)


def test_html_is_kept_raw_and_cleaned_for_display():
    card = cards_from_item(fixture_items()[0])[0][0]
    assert "<script>" in card.description_raw
    clean = card.description_clean
    assert "Soft watercolor washes with paper grain." in clean and "See the guide." in clean
    for hidden in ("alert", "steal", "color:red", "banner.png", "https://example.test/guide", "<"):
        assert hidden not in clean


def test_adapter_types_from_version_and_file_names():
    by_id = {c.id: c for item in fixture_items() for c in cards_from_item(item)[0]}
    assert by_id["civitai-2004"].adapter_type == "LoCon"
    loha = by_id["civitai-2005"]
    assert loha.adapter_type == "LoHa" and loha.is_loadable()  # through peft (tests/test_lycoris.py)
    assert by_id["civitai-2010"].real_person and by_id["civitai-2011"].base_model == "SD 2.1 768"
    assert by_id["civitai-2003"].tags == ["character", "robot"]  # older API: tags as objects
    assert by_id["civitai-2003"].trigger_words == ["retrobot"]  # blanks and repeats dropped


def test_bad_lines_bytes_duplicates_and_huge_descriptions(store, tmp_path):
    items = fixture_items()
    huge = copy.deepcopy(items[1]) | {"id": 1100, "description": "<p>" + "word " * 2_100_000 + "</p>"}
    huge["modelVersions"][0]["id"] = 2100
    mojibake = json.dumps(items[2] | {"id": 1200, "name": "Lantern XX"}).encode()
    mojibake = mojibake.replace(b"XX", b"\xff\xfe").replace(b'"id": 2004', b'"id": 2200')
    path = write_jsonl(tmp_path / "messy.jsonl", items + [huge],
                       [b'{"id": 77, "name": "cut off', mojibake, json.dumps(items[1]).encode(), b"", b"[1, 2]"])
    report = import_civitai_file(store, path, progress=False)
    n = len(items)
    assert (f"line {n + 2}", "broken JSON (Unterminated string starting at column 20)") in report.skipped
    assert any(k.startswith("civitai item without id") and "expected a JSON object, got list" in v
               for k, v in report.skipped)
    assert any(f"line {n + 3}: bytes that are not UTF-8" in m for m in report.notices)
    assert store.get("civitai-2200").name == "Lantern \ufffd\ufffd"
    assert any("version 2003 already read at record 2; duplicate ignored" in m for m in report.notices)
    big = store.get("civitai-2100")
    assert len(big.description_raw) == 1_000_000 and len(big.description_clean) <= 20_000
    assert any(m.startswith("civitai item 1100 version 2100: description of") for m in report.notices)
    assert report.added == len(GOOD_CARDS) + 2 and len(store) == len(GOOD_CARDS) + 2


def test_array_and_gzip_files_give_the_same_cards(tmp_path):
    items = fixture_items()
    array = tmp_path / "dump.json"
    array.write_text(json.dumps(items), encoding="utf-8")
    gz = tmp_path / "dump.jsonl.gz"
    gz.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    hashes = []
    for i, path in enumerate((FIXTURE, array, gz)):
        with CatalogStore(tmp_path / f"c{i}") as s:
            import_civitai_file(s, path, progress=False)
            hashes.append({c.id: c.content_hash() for c in s.iter_cards()})
    assert hashes[0] == hashes[1] == hashes[2] and set(hashes[0]) == GOOD_CARDS


def test_a_broken_json_array_is_refused_with_its_position(store, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"id": 1}, {"id": ', encoding="utf-8")
    with pytest.raises(CatalogError, match="JSON array is broken at line 1"):
        import_civitai_file(store, path, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_civitai_file(store, tmp_path / "missing.jsonl", progress=False)


def test_reimport_is_idempotent_and_curation_survives_source_changes(store, tmp_path):
    import_civitai_file(store, FIXTURE, progress=False)
    again = import_civitai_file(store, FIXTURE, progress=False)
    assert (again.added, again.updated, again.unchanged) == (0, 0, len(GOOD_CARDS))
    store.edit("civitai-2003", editor="tester", description="A tin robot, curated.", weight=0.55,
               blocked=True, category="character")
    items = fixture_items()
    items[1]["tags"] = [{"name": "robot"}, {"name": "mascot"}]
    items[1]["modelVersions"][0]["stats"]["downloadCount"] = 9999
    changed = import_civitai_file(store, write_jsonl(tmp_path / "changed.jsonl", items), progress=False)
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, len(GOOD_CARDS) - 1)
    card = store.get("civitai-2003")
    assert card.tags == ["robot", "mascot"] and card.download_count == 9999
    assert card.blocked and card.effective_weight() == 0.55
    assert card.effective_description() == "A tin robot, curated." and card.curation.edited_by == "tester"


# ---- the live API against a local fake ------------------------------------------------------
SERVED_SD15 = {"civitai-2001", "civitai-2002", "civitai-2003", "civitai-2004", "civitai-2005",
               "civitai-2008", "civitai-2010"}


@pytest.fixture
def civitai():
    with FakeCivitai(fixture_items()) as fake:
        yield fake


def test_api_pages_filters_and_token(store, civitai):
    report = import_civitai_api(store, base_url=civitai.base_url, token="tok-secret-123", page_size=2,
                                progress=False)
    assert {c.id for c in store.iter_cards()} == SERVED_SD15
    assert len(civitai.requests) == 4  # 8 matching items, 2 a page
    first = civitai.requests[0].query
    assert first == {"types": ["LORA"], "baseModels": ["SD 1.5"], "limit": ["2"], "sort": ["Most Downloaded"]}
    assert [r.query.get("cursor") for r in civitai.requests] == [None, ["2"], ["4"], ["6"]]
    assert all(r.headers["authorization"] == "Bearer tok-secret-123" for r in civitai.requests)
    assert {k.split(" (")[0] for k, _ in report.skipped} == {"civitai item abc", "civitai item 1011"}
    assert "tok-secret-123" not in json.dumps(report.to_dict())
    again = import_civitai_api(store, base_url=civitai.base_url, page_size=100, progress=False)
    assert again.unchanged == len(SERVED_SD15) and again.added == again.updated == 0
    assert "authorization" not in civitai.requests[-1].headers  # no token: no header


def test_api_query_base_models_and_limit(store, civitai):
    import_civitai_api(store, base_url=civitai.base_url, base_models=("SD 2.1 768",), progress=False)
    assert {c.id for c in store.iter_cards()} == {"civitai-2011"}
    report = import_civitai_api(store, base_url=civitai.base_url, query="robot", progress=False)
    assert civitai.requests[-1].query["query"] == ["robot"] and report.added == 1
    report = import_civitai_api(store, base_url=civitai.base_url, limit=2, page_size=1, progress=False)
    assert report.notices[0].startswith("read 2 items")
    with pytest.raises(ValueError, match="page_size=500"):
        import_civitai_api(store, base_url=civitai.base_url, page_size=500, progress=False)


def test_api_backs_off_on_429_500_and_dropped_connections(store, civitai):
    civitai.faults = {1: "429", 3: "500", 4: "drop"}
    waits: list[float] = []
    report = import_civitai_api(store, base_url=civitai.base_url, page_size=4, backoff_s=0.01,
                                sleep=waits.append, progress=False)
    assert {c.id for c in store.iter_cards()} == SERVED_SD15 and report.added == len(SERVED_SD15)
    assert waits == [2.0, 0.01, 0.02]  # Retry-After honoured, then exponential backoff
    assert len(civitai.requests) == 5


def test_api_resumes_after_an_interruption(store, civitai):
    civitai.faults = {2: "drop", 3: "500", 4: "drop"}
    with pytest.raises(CatalogError, match="after 3 attempts.*run the import again to resume"):
        import_civitai_api(store, base_url=civitai.base_url, page_size=3, max_retries=2, backoff_s=0,
                           sleep=lambda s: None, progress=False)
    first_page = {c.id for c in store.iter_cards()}
    assert first_page == {"civitai-2001", "civitai-2002", "civitai-2003", "civitai-2004"}
    civitai.faults, seen = {}, len(civitai.requests)
    report = import_civitai_api(store, base_url=civitai.base_url, page_size=3, progress=False)
    assert civitai.requests[seen].query["cursor"] == ["3"]  # went on from the saved page
    assert report.notices[1].startswith("resuming after 3 items")
    assert {c.id for c in store.iter_cards()} == SERVED_SD15
    restart = import_civitai_api(store, base_url=civitai.base_url, page_size=3, restart=True, progress=False)
    assert restart.unchanged == len(SERVED_SD15)


# ---- the real dump (../shared/data) -------------------------------------------------------
@pytest.mark.shared
def test_shared_dump_imports_every_item_and_reimports_unchanged(shared_data, store):
    dump = shared_data / "civitai-loras-2023-07.jsonl.gz"
    first = import_civitai_file(store, dump, progress=False)
    stats = store.stats()
    assert stats["civitai_models"] == 7230 and stats["civitai_models_sd15"] == 6363
    assert first.added == stats["cards"] and not first.skipped
    second = import_civitai_file(store, dump, progress=False)
    assert (second.added, second.updated, second.unchanged) == (0, 0, stats["cards"])


# ---- the crash test: kill -9 a real import midway ------------------------------------------
def big_dump(path: Path, count: int) -> Path:
    template = fixture_items()[1]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            item = copy.deepcopy(template) | {"id": 50_000 + i, "name": f"Generated adapter {i}"}
            item["modelVersions"][0]["id"] = 90_000 + i
            fh.write(json.dumps(item) + "\n")
    return path


def run_cli(*args: str, **kw) -> subprocess.Popen:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "stylus_ui", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM cards").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # not created yet


def test_kill_9_midway_leaves_a_consistent_catalog_that_a_rerun_completes(tmp_path):
    total = 6000
    dump, catalog = big_dump(tmp_path / "big.jsonl", total), tmp_path / "catalog"
    proc = run_cli("catalog", "import", "civitai-file", str(dump), "--catalog", str(catalog))
    deadline = time.monotonic() + 60
    while committed(catalog / "catalog.sqlite3") < 1000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    seen = committed(catalog / "catalog.sqlite3")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    assert 1000 <= seen < total
    with CatalogStore(catalog) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = len(store)
        assert kept >= seen and kept % 200 == 0  # whole batches only
        assert sum(1 for _ in store.iter_cards()) == kept  # every committed card loads
        state = store.get_state(f"civitai-file:{dump.resolve()}")
        assert state["record"] == kept and not state["complete"]  # progress committed with the cards
    out, _ = run_cli("catalog", "import", "civitai-file", str(dump), "--catalog", str(catalog)).communicate()
    assert f"added {total - kept}, updated 0, unchanged 0, skipped 0" in out
    assert f"resuming big.jsonl after record {kept}" in out
    out, _ = run_cli("catalog", "import", "civitai-file", str(dump), "--catalog", str(catalog)).communicate()
    assert f"added 0, updated 0, unchanged {total}, skipped 0" in out
