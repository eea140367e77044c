"""``catalog identify``: a folder of real-format LoRA files looked up by SHA256 on a local
Civitai fake (by-hash API, a 429 with Retry-After, models with tags), through the function,
the engine and the CLI."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.importers.identify import identify_folder
from catalog.settings import Settings
from catalog.store import CatalogStore
from components.types import StylusError
from fakes.civitai_server import FakeCivitai
from fakes.lora_files import (civitai_version_info, kohya_metadata, write_kohya_lora, write_peft_lora,
                              write_truncated)

REPO = Path(__file__).resolve().parents[1]
TOKEN = "civ-identify-token-8d2f61"


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


def by_hash_version(path: Path, version_id: int, model_id: int, model_name: str) -> dict:
    """What ``/api/v1/model-versions/by-hash`` answers: the version JSON, its model without tags."""
    version = civitai_version_info(version_id, model_id, file_name=path.name, sha256=sha_of(path),
                                   model_name=model_name, trained_words=(f"trig{version_id}",))
    del version["model"]["tags"]
    return version


def model_item(model_id: int, name: str, tags: list[str]) -> dict:
    """What ``/api/v1/models/{id}`` answers (only what identify reads, plus the required shape)."""
    return {"id": model_id, "name": name, "type": "LORA", "tags": tags,
            "description": f"<p>About {name}</p>", "modelVersions": []}


@pytest.fixture
def loras(tmp_path) -> dict[str, Path]:
    d = tmp_path / "Lora"
    files = {
        "known_a": write_kohya_lora(d / "style_a.safetensors", seed=11, metadata=kohya_metadata("style_a")),
        "known_b": write_peft_lora(d / "sub" / "char_b.safetensors", seed=12),
        "unknown": write_kohya_lora(d / "mystery.safetensors", seed=13, metadata=kohya_metadata("mystery_out")),
    }
    write_truncated(d / "broken.safetensors", seed=14)
    return files


@pytest.fixture
def civitai(loras):
    fake = FakeCivitai(
        items=[model_item(601, "Watercolor A", ["watercolor", "style"]), model_item(602, "Char B", ["character"])],
        versions={sha_of(loras["known_a"]): by_hash_version(loras["known_a"], 2001, 601, "Watercolor A"),
                  sha_of(loras["known_b"]): by_hash_version(loras["known_b"], 2002, 602, "Char B")},
        faults={1: "429"}, retry_after="3")
    with fake:
        yield fake


def test_identify_fills_known_cards_keeps_unknown_ones_and_a_second_run_asks_nothing(tmp_path, loras, civitai):
    folder = loras["known_a"].parent
    waits: list[float] = []
    with CatalogStore(tmp_path / "cat") as store:
        report = identify_folder(store, folder, base_url=civitai.base_url, sleep=waits.append, progress=False)
        assert (report.added, report.identified, report.unknown, report.hashed) == (3, 2, 1, 3), report
        assert [item for item, _ in report.skipped] == ["broken.safetensors"]
        assert waits == [3.0]  # the 429's Retry-After, honoured once
        calls = [(r.method, r.path) for r in civitai.requests]
        assert calls[:2] == [("POST", "/api/v1/model-versions/by-hash")] * 2
        assert sorted(calls[2:]) == [("GET", "/api/v1/models/601"), ("GET", "/api/v1/models/602")]
        assert sorted(civitai.requests[1].body) == sorted(sha_of(p) for p in loras.values())
        assert report.requests == len(civitai.requests) == 4

        a = store.get("civitai-2001")
        assert (a.name, a.civitai_model_id, a.version_name, a.base_model) == ("Watercolor A", 601, "v1.0", "SD 1.5")
        assert a.local_path == str(loras["known_a"]) and a.primary_file.sha256 == sha_of(loras["known_a"])
        assert a.trigger_words == ["trig2001"] and a.tags == ["watercolor", "style"]
        assert "About Watercolor A" in a.description_clean
        assert a.examples[0].url == "https://image.civitai.com/x/2001.jpeg"
        assert a.examples[0].prompt.startswith("mychar, 1girl") and a.examples[0].lora_weight == 0.7
        b = store.get("civitai-2002")
        assert b.tags == ["character"] and b.local_path == str(loras["known_b"])

        unknown = store.get(f"folder-{sha_of(loras['unknown'])[:16].lower()}")
        assert unknown.name == "mystery_out" and unknown.adapter_type == "LoRA" and unknown.civitai_version_id is None
        assert any("not found on Civitai by its SHA256" in n for n in unknown.notices)
        assert unknown.local_path == str(loras["unknown"])

        before = len(civitai.requests)
        again = identify_folder(store, folder, base_url=civitai.base_url, sleep=waits.append, progress=False)
        assert (again.hashed, again.requests, len(civitai.requests)) == (0, 0, before)
        assert (again.unchanged, again.identified, again.unknown) == (3, 2, 1)

        # a new file: hashed and looked up alone (GET by-hash), the others still not asked about
        new = write_kohya_lora(folder / "new.safetensors", seed=15)
        civitai.versions[sha_of(new)] = by_hash_version(new, 2003, 601, "Watercolor A")
        third = identify_folder(store, folder, base_url=civitai.base_url, sleep=waits.append, progress=False)
        assert (third.hashed, third.requests, third.added) == (1, 1, 1)
        assert [(r.method, r.path) for r in civitai.requests[before:]] == [
            ("GET", f"/api/v1/model-versions/by-hash/{sha_of(new)}")]
        assert store.get("civitai-2003").tags == ["watercolor", "style"]  # the model's saved facts


def test_offline_keeps_header_cards_with_a_notice_and_a_later_run_resumes(tmp_path, loras, civitai):
    folder = loras["known_a"].parent
    with CatalogStore(tmp_path / "cat") as store:
        down = FakeCivitai(items=[]).start()
        dead = down.base_url
        down.stop()  # nothing listens there any more
        report = identify_folder(store, folder, base_url=dead, max_retries=1, sleep=lambda s: None,
                                 progress=False)
        assert (report.identified, report.not_looked_up, report.added) == (0, 3, 3), report
        card = store.get(f"folder-{sha_of(loras['known_a'])[:16].lower()}")
        assert card.name == "style_a" and card.local_path == str(loras["known_a"])
        assert any("not looked up on Civitai (no answer from" in n and "connection failed" in n for n in card.notices)

        offline = identify_folder(store, folder, base_url=civitai.base_url, offline=True, progress=False)
        assert (offline.requests, offline.not_looked_up, len(civitai.requests)) == (0, 3, 0)

        resumed = identify_folder(store, folder, base_url=civitai.base_url, sleep=lambda s: None, progress=False)
        assert (resumed.hashed, resumed.identified, resumed.unknown) == (0, 2, 1)
        assert store.get("civitai-2001").local_path == str(loras["known_a"])


def test_bad_arguments_are_named(tmp_path, loras):
    with CatalogStore(tmp_path / "cat") as store:
        with pytest.raises(ValueError, match="workers=0 is not allowed; use 1 to 16"):
            identify_folder(store, loras["known_a"].parent, workers=0)
        with pytest.raises(ValueError, match="base_url='ftp://x' is not an http"):
            identify_folder(store, loras["known_a"].parent, base_url="ftp://x")


def test_engine_identify_follows_the_folder_import_roots(tmp_path, loras, civitai):
    from components.engine import StylusEngine

    folder = loras["known_a"].parent
    public = StylusEngine(Settings(home=tmp_path / "h1", public=True))
    with pytest.raises(StylusError, match="folder import is off on a public server"):
        public.catalog.identify_folder(str(folder), base_url=civitai.base_url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rooted = StylusEngine(Settings(home=tmp_path / "h2", folder_import_roots=[str(elsewhere)]))
    with pytest.raises(Exception, match="not inside an allowed import root"):
        rooted.catalog.identify_folder(str(folder), base_url=civitai.base_url)
    assert civitai.requests == []
    private = StylusEngine(Settings(home=tmp_path / "h3", civitai_token=TOKEN))
    assert private.catalog.identify_folder(str(folder), base_url=civitai.base_url).identified == 2
    assert {r.headers.get("authorization") for r in civitai.requests} == {f"Bearer {TOKEN}"}


def test_cli_identify_prints_the_summary_and_never_the_token(tmp_path, loras, civitai):
    civitai.faults = {}
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "STYLUS_HOME": str(tmp_path / "h"),
                        "STYLUS_CIVITAI_TOKEN": TOKEN}
    run = subprocess.run([sys.executable, "-m", "stylus_ui", "catalog", "identify", str(loras["known_a"].parent),
                          "--base-url", civitai.base_url, "--catalog", str(tmp_path / "cat"), "--workers", "2"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "added 3" in run.stdout and "identified 2, unknown to Civitai 1" in run.stdout, out
    assert "skipped broken.safetensors" in run.stdout and TOKEN not in out
    with CatalogStore(tmp_path / "cat") as store:
        assert store.get("civitai-2002").local_path == str(loras["known_b"])
