"""The Hugging Face repository importer on local HF-style repository directories."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.importers.hf import hf_base_model, import_hf, parse_model_card
from catalog.store import CatalogError, CatalogStore
from fakes.lora_files import (SDXL_KOHYA_TARGETS, write_hf_repo, write_kohya_lora, write_pickle,
                              write_truncated)

REPO = Path(__file__).resolve().parents[1]


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


def test_local_repo_gives_one_card_with_model_card_facts(tmp_path, store):
    repo = write_hf_repo(tmp_path / "sks-dog-lora")
    report = import_hf(store, repo, progress=False)
    assert (report.added, report.skipped) == (1, [])
    card = store.get("hf-sks-dog-lora-pytorch_lora_weights")
    weights = repo / "pytorch_lora_weights.safetensors"
    assert (card.source, card.hf_repo, card.name) == ("hf", "sks-dog-lora", "sks-dog-lora")
    assert (card.base_model, card.base_model_raw) == ("SD 1.5", "runwayml/stable-diffusion-v1-5")
    assert card.adapter_type == "LoRA" and card.trigger_words == ["a photo of sks dog"]
    assert card.tags == ["dog"]  # generic hub tags dropped
    assert [e.prompt for e in card.examples] == ["a sks dog on the beach", "a sks dog in a bucket"]
    assert card.examples[0].local_path == str(repo / "images" / "ex0.png")
    assert card.extra["license"] == "creativeml-openrail-m"
    assert card.primary_file.sha256 == sha_of(weights) and card.primary_file.autov2 == sha_of(weights)[:10]
    assert card.local_path == str(weights.resolve()) and card.primary_file.download_url is None
    assert "Weights for a dog." in card.description_clean


def test_each_weight_file_is_a_card_and_reimport_is_idempotent(tmp_path, store):
    repo = write_hf_repo(tmp_path / "styles", weight_names=("pytorch_lora_weights.safetensors", "watercolor.safetensors"))
    assert import_hf(store, repo, progress=False).added == 2
    names = {c.id: c.name for c in store.iter_cards()}
    assert names == {"hf-styles-pytorch_lora_weights": "styles", "hf-styles-watercolor": "styles / watercolor"}
    again = import_hf(store, repo, progress=False)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)


def test_hf_cache_layout_gives_the_hub_id_and_download_urls(tmp_path, store):
    snap = write_hf_repo(tmp_path / "hub" / "models--someone--pixel-lora" / "snapshots" / "abc123")
    import_hf(store, snap, progress=False)
    card = store.get("hf-someone--pixel-lora-pytorch_lora_weights")
    assert (card.hf_repo, card.creator) == ("someone/pixel-lora", "someone")
    assert card.primary_file.download_url == \
        "https://huggingface.co/someone/pixel-lora/resolve/main/pytorch_lora_weights.safetensors"


def test_sdxl_repo_is_kept_and_marked_incompatible(tmp_path, store):
    repo = tmp_path / "xl-lora"
    write_hf_repo(repo, base_model="stabilityai/stable-diffusion-xl-base-1.0", weight_names=())
    write_kohya_lora(repo / "xl.safetensors", targets=SDXL_KOHYA_TARGETS, metadata={})
    report = import_hf(store, repo, progress=False)
    card = store.get("hf-xl-lora-xl")
    assert card.base_model == "SDXL 1.0" and not card.is_loadable("SD 1.5")
    assert any("incompatible with SD 1.5" in n for n in report.notices)


def test_declared_base_model_that_contradicts_the_weights(tmp_path, store):
    repo = write_hf_repo(tmp_path / "mislabeled", base_model="stabilityai/stable-diffusion-xl-base-1.0")
    import_hf(store, repo, progress=False)
    card = store.get("hf-mislabeled-pytorch_lora_weights")
    assert card.base_model == "SD 1.5"
    assert any("declared base model" in n and "SD 1.5" in n for n in card.notices)


def test_bad_files_and_bad_front_matter_are_reported(tmp_path, store):
    repo = write_hf_repo(tmp_path / "messy", front_matter="tags: [unclosed\nbase_model: x\n")
    write_pickle(repo / "pytorch_lora_weights.bin")
    write_truncated(repo / "cut.safetensors")
    write_kohya_lora(repo / "checkpoint-500" / "pytorch_lora_weights.safetensors")
    report = import_hf(store, repo, progress=False)
    assert report.added == 1
    reasons = dict(report.skipped)
    assert "pickle format" in reasons["pytorch_lora_weights.bin"] and "truncated" in reasons["cut.safetensors"]
    assert any("not valid YAML" in n for n in report.notices)
    assert any("checkpoint-500/pytorch_lora_weights.safetensors" in n for n in report.notices)
    assert store.get("hf-messy-pytorch_lora_weights").base_model == "SD 1.5"  # from the shapes


def test_hub_id_offline_and_bad_arguments_give_clear_errors(tmp_path, store, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CatalogError, match="'someone/pixel-lora' cannot be fetched: HF_HUB_OFFLINE"):
        import_hf(store, "someone/pixel-lora", progress=False)
    with pytest.raises(CatalogError, match="neither a local directory nor a hub id"):
        import_hf(store, "not a repo!", progress=False)
    f = write_kohya_lora(tmp_path / "a.safetensors")
    with pytest.raises(CatalogError, match="is a file"):
        import_hf(store, f, progress=False)


def test_model_card_helpers():
    front, body, notes = parse_model_card("---\nbase_model: [runwayml/stable-diffusion-v1-5]\n---\nbody\n")
    assert front == {"base_model": ["runwayml/stable-diffusion-v1-5"]} and body == "body\n" and notes == []
    assert parse_model_card("no front matter") == ({}, "no front matter", [])
    assert hf_base_model(front["base_model"]) == "SD 1.5"
    assert hf_base_model("stabilityai/stable-diffusion-2-1") == "SD 2.1"
    assert hf_base_model("some/custom-model") == "some/custom-model"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"} | env
    return subprocess.run([sys.executable, "-m", "stylus_ui", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=120)


def test_cli_import_hf_end_to_end(tmp_path):
    repo = write_hf_repo(tmp_path / "sks-dog-lora")
    cat = tmp_path / "catalog"
    first = _cli("catalog", "import", "hf", str(repo), "--catalog", str(cat), STYLUS_HOME=str(tmp_path))
    assert first.returncode == 0 and "added 1" in first.stdout, first.stderr
    second = _cli("catalog", "import", "hf", str(repo), "--catalog", str(cat), STYLUS_HOME=str(tmp_path))
    assert "unchanged 1" in second.stdout, second.stderr
    with CatalogStore(cat) as store:
        assert store.get("hf-sks-dog-lora-pytorch_lora_weights").hf_repo == "sks-dog-lora"
    offline = _cli("catalog", "import", "hf", "someone/pixel-lora", "--catalog", str(cat), STYLUS_HOME=str(tmp_path))
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr



def test_hub_id_reads_readme_and_headers_without_downloading_weights(tmp_path):
    from fakes.hf_hub_server import FakeHub

    repo = write_hf_repo(tmp_path / "src", weight_names=("pytorch_lora_weights.safetensors",))
    write_kohya_lora(repo / "big.safetensors", targets=SDXL_KOHYA_TARGETS * 1, rank=64, metadata={})
    cat = tmp_path / "catalog"
    with FakeHub({"someone/pixel-lora": repo}) as hub:
        res = _cli("catalog", "import", "hf", "someone/pixel-lora", "--catalog", str(cat), STYLUS_HOME=str(tmp_path),
                   HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"))
        sent = dict(hub.bytes_sent)
    assert res.returncode == 0 and "added 2" in res.stdout, res.stdout + res.stderr
    big = repo / "big.safetensors"
    assert 0 < sent["big.safetensors"] <= 100_001 < big.stat().st_size  # only the header range
    with CatalogStore(cat) as store:
        card = store.get("hf-someone--pixel-lora-big")
        assert (card.base_model, card.hf_repo, card.local_path) == ("SDXL 1.0", "someone/pixel-lora", None)
        assert card.primary_file.sha256 == sha_of(big)
        assert card.primary_file.download_url == "https://huggingface.co/someone/pixel-lora/resolve/main/big.safetensors"
        assert store.get("hf-someone--pixel-lora-pytorch_lora_weights").trigger_words == ["a photo of sks dog"]
