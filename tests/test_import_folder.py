"""The local-folder importer and the file inspection under it, on real safetensors files."""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from catalog.card import AdapterCard
from catalog.importers.folder import import_folder
from catalog.lora_file import LoraFileError, check_format, file_hashes, inspect_lora, read_safetensors_header
from catalog.store import CatalogError, CatalogStore
from fakes.lora_files import (SD2_KOHYA_TARGETS, SD15_KOHYA_TARGETS, SD15_LOCON_EXTRA, SDXL_KOHYA_TARGETS,
                              a1111_user_metadata, civitai_version_info, kohya_metadata, write_dora,
                              write_json, write_kohya_lora, write_loha, write_lokr, write_not_safetensors,
                              write_peft_lora, write_pickle, write_truncated)

REPO = Path(__file__).resolve().parents[1]


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


@pytest.fixture
def lora_dir(tmp_path) -> Path:
    """A folder as an A1111 user keeps it: sidecars, subfolders, and some broken files."""
    d = tmp_path / "Lora"
    main = write_kohya_lora(d / "chars" / "my_lora.safetensors", seed=1)
    write_json(d / "chars" / "my_lora.civitai.info", civitai_version_info(sha256=sha_of(main)))
    write_json(d / "chars" / "my_lora.json", a1111_user_metadata())
    (d / "chars" / "my_lora.preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_kohya_lora(d / "plain.safetensors", seed=2, metadata=kohya_metadata("plain_style"))
    write_peft_lora(d / "sub" / "peft_style.safetensors", seed=3)
    write_kohya_lora(d / "locon.safetensors", targets=SD15_KOHYA_TARGETS + SD15_LOCON_EXTRA, seed=4)
    write_loha(d / "loha.safetensors", seed=5)
    write_lokr(d / "lokr.safetensors", seed=6)
    write_kohya_lora(d / "xl.safetensors", targets=SDXL_KOHYA_TARGETS, metadata={}, seed=7)
    write_truncated(d / "broken" / "cut.safetensors", seed=8)
    write_not_safetensors(d / "broken" / "page.safetensors")
    write_pickle(d / "old.ckpt")
    return d


# ---- file inspection ----------------------------------------------------------------
def test_header_agrees_with_the_safetensors_library(tmp_path):
    path = write_kohya_lora(tmp_path / "a.safetensors")
    header = read_safetensors_header(path)
    with safe_open(str(path), framework="numpy") as f:
        assert header.metadata == f.metadata()
        assert header.shapes == {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


@pytest.mark.parametrize("writer, kwargs, adapter_type, base", [
    (write_kohya_lora, {}, "LoRA", "SD 1.5"),
    (write_kohya_lora, {"targets": SD15_KOHYA_TARGETS + SD15_LOCON_EXTRA}, "LoCon", "SD 1.5"),
    (write_kohya_lora, {"targets": SD2_KOHYA_TARGETS, "metadata": {}}, "LoRA", "SD 2.x"),
    (write_kohya_lora, {"targets": SDXL_KOHYA_TARGETS, "metadata": {}}, "LoRA", "SDXL 1.0"),
    (write_kohya_lora, {"targets": SDXL_KOHYA_TARGETS[:2], "metadata": {}}, "LoRA", "SDXL 1.0"),
    (write_kohya_lora, {"targets": [("lora_unet_mid_block_resnets_0_conv1", 1280, 1280, 1)],
                        "metadata": kohya_metadata(base="sdxl_base_v1-0")}, "LoRA", "SDXL 1.0"),
    (write_peft_lora, {}, "LoRA", "SD 1.5"),
    (write_loha, {}, "LoHa", "SD 1.5"),
    (write_lokr, {"metadata": {}}, "LoKr", "unknown"),
    (write_dora, {}, "DoRA", "SD 1.5"),
])
def test_detects_adapter_type_and_base_model(tmp_path, writer, kwargs, adapter_type, base):
    info = inspect_lora(writer(tmp_path / "x.safetensors", **kwargs))
    assert (info.adapter_type, info.base_model) == (adapter_type, base)
    assert info.base_model_evidence


def test_kohya_metadata_fields(tmp_path):
    info = inspect_lora(write_kohya_lora(tmp_path / "a.safetensors", metadata=kohya_metadata("abc", dim=8, alpha=2)))
    assert (info.output_name, info.network_dim, info.network_alpha) == ("abc", 8, 2.0)
    assert info.top_tags(2) == ["mychar", "1girl"]


@pytest.mark.parametrize("make, needle", [
    (lambda p: write_truncated(p, keep=0.5), "truncated"),
    (lambda p: write_truncated(p, keep=0.01), "does not fit"),
    (write_not_safetensors, "not a safetensors file"),
    (lambda p: p.write_bytes(b"abc") and p, "too short"),
    (lambda p: p.write_bytes((12).to_bytes(8, "little") + b"not json!!!!") and p, "not valid JSON"),
])
def test_bad_files_name_the_file_and_reason(tmp_path, make, needle):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(LoraFileError) as exc:
        inspect_lora(path)
    assert "bad.safetensors" in str(exc.value) and needle in str(exc.value)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".pth"])
def test_pickle_formats_refused_unless_allowed(tmp_path, suffix):
    path = write_pickle(tmp_path / f"old{suffix}")
    with pytest.raises(LoraFileError, match="pickle format.*allow_pickle"):
        check_format(path)
    assert check_format(path, allow_pickle=True) == "pickle"


def test_hashes_are_sha256_and_autov2(tmp_path, store):
    path = write_kohya_lora(tmp_path / "a.safetensors")
    sha, autov2 = file_hashes(path, store)
    assert sha == sha_of(path) and autov2 == sha[:10]
    assert store.cached_file_hash(path) == (sha, autov2)


# ---- the importer -------------------------------------------------------------------
def test_import_builds_cards_from_file_and_sidecars(lora_dir, store):
    report = import_folder(store, lora_dir, progress=False)
    assert report.added == 7, report.to_dict()
    main = lora_dir / "chars" / "my_lora.safetensors"
    card = store.get("civitai-1001")
    assert (card.source, card.civitai_model_id, card.civitai_version_id) == ("folder", 501, 1001)
    assert (card.name, card.version_name, card.base_model, card.adapter_type) == ("My Character", "v1.0", "SD 1.5", "LoRA")
    assert card.trigger_words == ["mychar", "red scarf"]
    assert card.recommended_weight == 0.65 and card.description_clean == "A character adapter."
    assert card.tags == ["character", "anime"] and card.local_path == str(main)
    f = card.primary_file
    assert (f.name, f.sha256, f.autov2) == ("my_lora.safetensors", sha_of(main), sha_of(main)[:10])
    assert f.download_url == "https://civitai.com/api/download/models/1001"
    assert card.examples[0].lora_weight == 0.7 and card.examples[0].lora_names == ["my_lora"]
    assert card.examples[-1].local_path.endswith("my_lora.preview.png")

    plain = lora_dir / "plain.safetensors"
    card = store.get(f"folder-{sha_of(plain)[:16].lower()}")
    assert (card.source, card.name, card.civitai_version_id) == ("folder", "plain_style", None)
    assert card.trigger_words == ["mychar", "1girl", "solo"]  # top of ss_tag_frequency
    assert card.extra["kohya"]["ss_network_dim"] == "4" and card.lora_name == "plain"

    peft = store.get(f"folder-{sha_of(lora_dir / 'sub' / 'peft_style.safetensors')[:16].lower()}")
    assert (peft.name, peft.adapter_type, peft.base_model) == ("peft_style", "LoRA", "SD 1.5")


def test_bad_files_are_skipped_with_reasons_and_the_rest_imported(lora_dir, store):
    report = import_folder(store, lora_dir, progress=False)
    reasons = dict(report.skipped)
    assert set(reasons) == {"broken/cut.safetensors", "broken/page.safetensors", "old.ckpt"}
    assert "truncated" in reasons["broken/cut.safetensors"]
    assert "not a safetensors file" in reasons["broken/page.safetensors"]
    assert "pickle format" in reasons["old.ckpt"] and "--allow-pickle" in reasons["old.ckpt"]
    assert len(store) == 7


def test_loha_lokr_are_loadable_and_sdxl_is_kept_but_not(lora_dir, store):
    report = import_folder(store, lora_dir, progress=False)
    by_type = {c.adapter_type: c for c in store.iter_cards()}
    for kind in ("LoHa", "LoKr"):  # loaded through peft (tests/test_lycoris.py)
        assert by_type[kind].is_loadable()
        assert not any("not loadable" in n for n in by_type[kind].notices + report.notices)
    xl = next(c for c in store.iter_cards() if c.lora_name == "xl")
    assert xl.base_model == "SDXL 1.0" and not xl.is_loadable("SD 1.5")
    assert by_type["LoCon"].is_loadable()


def test_reimport_is_idempotent(lora_dir, store):
    import_folder(store, lora_dir, progress=False)
    before = {c.id: c.content_hash() for c in store.iter_cards()}
    again = import_folder(store, lora_dir, progress=False)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 7)
    assert {c.id: c.content_hash() for c in store.iter_cards()} == before


def test_second_import_uses_the_hash_cache(lora_dir, store):
    import_folder(store, lora_dir, progress=False)
    main = lora_dir / "chars" / "my_lora.safetensors"
    real = sha_of(main)
    assert store.cached_file_hash(main) == (real, real[:10])
    store.store_file_hash(main, "F" * 64, "F" * 10)  # same size and mtime: a re-hash would undo this
    assert import_folder(store, lora_dir, progress=False).updated == 1
    assert store.get("civitai-1001").primary_file.sha256 == "F" * 64
    st = main.stat()
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changed file is hashed again
    import_folder(store, lora_dir, progress=False)
    assert store.get("civitai-1001").primary_file.sha256 == real


def test_allow_pickle_records_the_file_without_unpickling(tmp_path, store):
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    d = tmp_path / "models"
    d.mkdir()
    (d / "trap.pt").write_bytes(pickle.dumps({"w": Trap()}))
    write_json(d / "trap.json", a1111_user_metadata(activation_text="trapword", sd_version="SD1"))
    report = import_folder(store, d, allow_pickle=True, progress=False)
    assert report.added == 1 and not marker.exists()
    card = next(store.iter_cards())
    assert (card.adapter_type, card.base_model, card.trigger_words) == ("unknown", "SD 1.5", ["trapword"])
    assert card.primary_file.format == "PickleTensor" and card.primary_file.sha256 == sha_of(d / "trap.pt")
    assert any("never unpickled" in n for n in card.notices)


def test_folder_must_be_inside_allowed_roots(lora_dir, tmp_path, store):
    other = tmp_path / "allowed"
    other.mkdir()
    with pytest.raises(CatalogError) as exc:
        import_folder(store, lora_dir, roots=[other], progress=False)
    assert str(lora_dir) in str(exc.value) and str(other) in str(exc.value)
    assert import_folder(store, lora_dir / "chars", roots=[lora_dir], progress=False).added == 1
    with pytest.raises(CatalogError, match="does not exist"):
        import_folder(store, tmp_path / "nope", progress=False)


def test_links_leaving_the_folder_are_refused(tmp_path, store):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"\x89PNG secret")
    write_json(outside / "info.json", civitai_version_info(version_id=666))
    secret_lora = write_kohya_lora(outside / "elsewhere.safetensors")
    d = tmp_path / "Lora"
    write_kohya_lora(d / "a.safetensors")
    (d / "a.preview.png").symlink_to(outside / "secret.png")
    (d / "a.civitai.info").symlink_to(outside / "info.json")
    (d / "linked.safetensors").symlink_to(secret_lora)
    (d / "linked_dir").symlink_to(outside, target_is_directory=True)
    report = import_folder(store, d, progress=False)
    assert report.added == 1
    assert "path traversal" in dict(report.skipped)["linked.safetensors"]
    card = next(store.iter_cards())
    assert card.civitai_version_id is None and card.examples == []
    traversal = [n for n in report.notices if "outside" in n]
    assert len(traversal) == 2 and any("a.preview.png" in n for n in traversal)
    assert any("linked_dir: linked folder not followed" in n for n in report.notices)


def test_merges_into_a_civitai_card_and_keeps_its_facts_and_curation(lora_dir, store):
    store.upsert(AdapterCard(id="civitai-1001", source="civitai", civitai_model_id=501, civitai_version_id=1001,
                             name="My Character", base_model="SD 1.5", description_clean="From Civitai.",
                             download_count=1234, files=[{"name": "my_lora.safetensors", "primary": True}]))
    store.edit("civitai-1001", editor="alice", weight=0.5)
    import_folder(store, lora_dir, progress=False)
    card = store.get("civitai-1001")
    assert (card.source, card.download_count, card.description_clean) == ("civitai", 1234, "From Civitai.")
    assert card.local_path == str(lora_dir / "chars" / "my_lora.safetensors") and card.adapter_type == "LoRA"
    assert card.primary_file.sha256 == sha_of(lora_dir / "chars" / "my_lora.safetensors")
    assert card.curation.weight == 0.5 and card.effective_weight() == 0.5
    assert import_folder(store, lora_dir, progress=False).updated == 0


def test_duplicates_and_conflicting_or_broken_sidecars(tmp_path, store):
    d = tmp_path / "Lora"
    a = write_kohya_lora(d / "a.safetensors")
    shutil.copy(a, d / "copy_of_a.safetensors")
    b = write_kohya_lora(d / "b.safetensors", seed=9)
    write_json(d / "b.civitai.info", civitai_version_info(version_id=7, base_model="SDXL 1.0",
                                                            file_name="b.safetensors", sha256="AB" * 32))
    (d / "b.json").write_text("{not json", encoding="utf-8")
    report = import_folder(store, d, progress=False)
    assert report.added == 2
    assert "same adapter as a.safetensors" in dict(report.skipped)["copy_of_a.safetensors"]
    card = store.get("civitai-7")
    assert card.base_model == "SD 1.5" and card.base_model_raw == "SDXL 1.0"
    assert any("declared base model 'SDXL 1.0'" in n for n in card.notices)
    assert any("b.json is not valid JSON" in n for n in card.notices)
    assert any("differs from the Civitai version's file 'b.safetensors'" in n for n in card.notices)
    assert card.local_path == str(b)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                         "STYLUS_HOME": str(Path(args[-1]).parent)} | env
    return subprocess.run([sys.executable, "-m", "stylus_ui", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=120)


def test_cli_import_folder_end_to_end(lora_dir, tmp_path):
    cat = tmp_path / "cli-catalog"
    first = _cli("catalog", "import", "folder", str(lora_dir), "--catalog", str(cat))
    assert first.returncode == 0, first.stderr
    assert "added 7" in first.stdout and "skipped 3" in first.stdout and "old.ckpt" in first.stdout
    second = _cli("catalog", "import", "folder", str(lora_dir), "--catalog", str(cat))
    assert "unchanged 7" in second.stdout, second.stderr
    with CatalogStore(cat) as store:
        assert store.get("civitai-1001").source == "folder"
    bad = _cli("catalog", "import", "folder", str(tmp_path / "missing"), "--catalog", str(cat))
    assert bad.returncode == 2 and "missing" in bad.stderr


def test_cli_folder_import_roots_setting(tmp_path):
    folder = tmp_path / "elsewhere"
    write_kohya_lora(folder / "a.safetensors")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    res = _cli("catalog", "import", "folder", str(folder), "--catalog", str(tmp_path / "c"),
               STYLUS_FOLDER_IMPORT_ROOTS=str(allowed))
    assert res.returncode == 2 and str(folder) in res.stderr and str(allowed) in res.stderr
