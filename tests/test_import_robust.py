"""Importers against hostile input: tokens stay with their host and out of the CLI's output, and
one bad record is skipped with its reason while the rest imports (issue 13, items 2-4)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.importers.civitai import import_civitai_file
from catalog.importers.civitai_api import import_civitai_api
from catalog.importers.folder import import_folder
from catalog.importers.hf import import_hf
from catalog.store import CatalogError
from fakes.civitai_server import FakeCivitai
from fakes.hf_hub_server import FakeHub
from fakes.lora_files import civitai_version_info, write_json, write_kohya_lora

REPO = Path(__file__).resolve().parents[1]
TOKEN = "tok-never-show-7f3a9c"
HUGE = 10**30  # beyond SQLite's 64-bit INTEGER


def item(model_id: int, version_id: int, *, downloads: int = 5, name: str = "Good LoRA") -> dict:
    """A valid Civitai API item with one SD 1.5 LoRA version."""
    return {"id": model_id, "name": name, "type": "LORA", "nsfw": False, "tags": ["style"],
            "stats": {"downloadCount": downloads},
            "modelVersions": [{"id": version_id, "name": "v1", "baseModel": "SD 1.5",
                               "stats": {"downloadCount": downloads},
                               "files": [{"name": f"lora_{version_id}.safetensors", "sizeKB": 10.0,
                                          "type": "Model", "primary": True}]}]}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"} | env
    return subprocess.run([sys.executable, "-m", "stylus_ui", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=120)


# ---- item 2: the token goes only to the configured origin ---------------------------------
def test_next_page_on_another_host_is_not_followed(store):
    items = [item(100 + n, 200 + n) for n in range(4)]
    with FakeCivitai(items) as other, FakeCivitai(items) as api:
        api.next_base = other.base_url  # same host, another port: another origin
        report = import_civitai_api(store, base_url=api.base_url, token=TOKEN, page_size=2, progress=False)
        assert other.requests == []  # never contacted, so the token never went there
    assert [r.headers["authorization"] for r in api.requests] == [f"Bearer {TOKEN}"]
    assert {c.id for c in store.iter_cards()} == {"civitai-200", "civitai-201"}  # the first page is kept
    port = other.base_url.rsplit(":", 1)[1]
    stop = next(n for n in report.notices if "another host" in n)
    assert f"127.0.0.1:{port}" in stop and "not followed" in stop and "stopped after 2 items" in stop
    assert TOKEN not in json.dumps(report.to_dict())


def test_redirects_are_followed_within_the_origin_only(store):
    items = [item(100, 200)]
    with FakeCivitai(items) as other, FakeCivitai(items) as api:
        api.redirects = {"/old/api/v1/models": f"{api.base_url}/api/v1/models"}
        report = import_civitai_api(store, base_url=f"{api.base_url}/old", token=TOKEN, progress=False)
        assert report.added == 1
        assert [r.path for r in api.requests] == ["/old/api/v1/models", "/api/v1/models"]
        assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api.requests)
        assert api.requests[1].query["types"] == ["LORA"]  # the query survives the redirect

        api.redirects = {"/api/v1/models": f"{other.base_url}/api/v1/models"}
        with pytest.raises(CatalogError, match="redirected .* to another host .*not followed") as exc:
            import_civitai_api(store, base_url=api.base_url, token=TOKEN, restart=True, progress=False)
        assert other.requests == []  # with or without the header: not contacted at all
        assert TOKEN not in str(exc.value)


def test_a_saved_position_on_another_host_is_not_resumed(store):
    items = [item(100 + n, 200 + n) for n in range(2)]
    with FakeCivitai(items) as other, FakeCivitai(items) as api:
        key = f"civitai-api:{api.base_url}|SD 1.5|"
        store.set_state(key, {"next": f"{other.base_url}/api/v1/models?cursor=1", "items": 1})
        report = import_civitai_api(store, base_url=api.base_url, token=TOKEN, progress=False)
        assert other.requests == [] and report.added == 2
        assert not any("resuming" in n for n in report.notices)


def test_bad_base_url_is_refused_with_the_value():
    with pytest.raises(ValueError, match=r"base_url='ftp://civitai.com' is not an http\(s\) address"):
        import_civitai_api(None, base_url="ftp://civitai.com", progress=False)  # type: ignore[arg-type]


# ---- item 3: no token in anything the CLI prints -----------------------------------------
def test_cli_civitai_api_never_prints_the_token(tmp_path):
    with FakeCivitai([item(100, 200)], faults={1: "401", 2: "401"}) as api:
        by_flag = _cli("catalog", "import", "civitai-api", "--base-url", api.base_url, "--token", TOKEN,
                       "--catalog", str(tmp_path / "cat"), STYLUS_HOME=str(tmp_path))
        by_env = _cli("catalog", "import", "civitai-api", "--base-url", api.base_url,
                      "--catalog", str(tmp_path / "cat"), STYLUS_HOME=str(tmp_path), STYLUS_CIVITAI_TOKEN=TOKEN)
        assert [r.headers.get("authorization") for r in api.requests] == [f"Bearer {TOKEN}"] * 2
    for run in (by_flag, by_env):
        out = run.stdout + run.stderr
        assert run.returncode == 2 and "HTTP 401 (check the API token)" in run.stderr, out
        assert "bad credentials: Bearer ***" in run.stderr, out
        assert not any(TOKEN[:n] in out for n in range(8, len(TOKEN) + 1)), out  # not even a cut-off part


def test_cli_hf_never_prints_the_token(tmp_path):
    with FakeHub({}, refuse_token=True) as hub:
        run = _cli("catalog", "import", "hf", "someone/pixel-lora", "--catalog", str(tmp_path / "cat"),
                   STYLUS_HOME=str(tmp_path), HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.url,
                   HF_HOME=str(tmp_path / "hf-home"), STYLUS_HF_TOKEN=TOKEN)
    out = run.stdout + run.stderr
    assert run.returncode == 2 and "could not be read" in run.stderr, out
    assert TOKEN not in out and "***" in out, out


def test_secrets_registered_masks_only_inside_the_block_and_counts_holders():
    from ground.redact import redact, register_secrets, secrets_registered
    user_token = "user-form-token-91b2"
    assert redact(f"echo {user_token}") == f"echo {user_token}"
    with secrets_registered([user_token]):
        with secrets_registered([user_token, "x"]):  # too short values are ignored, as everywhere
            assert redact(f"echo {user_token}") == "echo ***"
        assert redact(f"echo {user_token}") == "echo ***"  # the outer block still holds it
    assert redact(f"echo {user_token}") == f"echo {user_token}"
    kept = "kept-registered-token-5d"
    register_secrets([kept])
    with secrets_registered([kept]):
        pass
    assert redact(kept) == "***"  # registered for good before the block: stays masked


# ---- item 4: one bad record is skipped, the rest imports ---------------------------------
def test_civitai_file_skips_huge_numbers_and_deep_nesting(store, tmp_path):
    dump = tmp_path / "dump.jsonl"
    lines = [json.dumps(item(1, 11)), json.dumps(item(HUGE, 12)), json.dumps(item(3, HUGE)),
             json.dumps(item(4, 14, downloads=HUGE)), "[" * 100_000,
             json.dumps(item(5, 15, name="bad \ud800 text")), '{"id": %s}' % ("9" * 5000), json.dumps(item(6, 16))]
    dump.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_civitai_file(store, dump, progress=False)
    assert {c.id for c in store.iter_cards()} == {"civitai-11", "civitai-16"}
    reasons = "\n".join(f"{i}: {r}" for i, r in report.skipped)
    assert len(report.skipped) == 6, reasons
    assert f"civitai item {HUGE} (record 2): field 'id'" in reasons and "from 1 to 9223372036854775807" in reasons
    assert f"civitai item 3 (record 3): civitai item 3 version {HUGE} skipped: field 'id'" in reasons
    assert "civitai item 4 (record 4): civitai item 4 version 14 skipped: field 'download_count'" in reasons
    assert "line 5: JSON nested too deeply" in reasons
    assert "civitai item 5 (record 6): field 'name'" in reasons and "'bad \\ud800 text'" in reasons
    assert "line 7: JSON that cannot be read: Exceeds the limit (4300 digits)" in reasons
    again = import_civitai_file(store, dump, progress=False)  # a rerun is not stuck on a bad record
    assert again.unchanged == 2 and not any("resuming" in n for n in again.notices)


def test_civitai_api_page_with_bad_items_keeps_the_good_ones(store):
    items = [item(1, 11), item(HUGE, 12), item(4, 14, downloads=HUGE), item(6, 16)]
    with FakeCivitai(items) as api:
        report = import_civitai_api(store, base_url=api.base_url, progress=False)
    assert {c.id for c in store.iter_cards()} == {"civitai-11", "civitai-16"}
    assert [i for i, _ in report.skipped] == [f"civitai item {HUGE}", "civitai item 4"]


def test_civitai_api_reply_nested_too_deeply_is_a_clear_error(store):
    with FakeCivitai([]) as api:
        api.pages = [{"items": [], "deep": json.loads("[" * 500 + "]" * 500)}]
        import_civitai_api(store, base_url=api.base_url, progress=False)  # deep but readable: fine
    deep = "[" * 100_000
    from fakes.local_http import LocalServer
    from http.server import BaseHTTPRequestHandler

    class Deep(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(deep)))
            self.end_headers()
            self.wfile.write(deep.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = LocalServer(Deep)
    try:
        with pytest.raises(CatalogError, match="not JSON \\(or nested too deeply\\)"):
            import_civitai_api(store, base_url=server.url(""), progress=False)
    finally:
        server.close()


def write_raw_safetensors(path: Path, header_json: str, data_bytes: int = 16) -> Path:
    """A file in safetensors layout with exactly this header text (for headers no writer makes)."""
    raw = header_json.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * data_bytes)
    return path


@pytest.mark.parametrize("tensor, needle", [
    ('{"dtype": "F32", "shape": [null], "data_offsets": [0, 4]}', "has shape [None]"),
    ('{"dtype": "F32", "shape": [1], "data_offsets": ["a", "b"]}', "invalid data_offsets ['a', 'b']"),
    ('{"dtype": "F32", "shape": [1], "data_offsets": [0, 1e400]}', "invalid data_offsets [0, inf]"),
    ('{"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}', "has shape [inf]"),
    ('{"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}', "has shape [True]"),
])
def test_folder_skips_bad_safetensors_headers(tmp_path, store, tensor, needle):
    folder = tmp_path / "Lora"
    write_kohya_lora(folder / "good.safetensors", seed=1)
    write_raw_safetensors(folder / "bad.safetensors", '{"lora_unet_x.lora_down.weight": %s}' % tensor)
    report = import_folder(store, folder, progress=False)
    assert report.added == 1 and [c.local_path for c in store.iter_cards()] == [str(folder / "good.safetensors")]
    [(name, reason)] = report.skipped
    assert name == "bad.safetensors" and needle in reason, reason


def test_text_sqlite_cannot_hold_skips_the_file(tmp_path, store):
    """A lone surrogate (valid JSON escape, invalid Unicode) in kohya metadata kept in ``extra``."""
    folder = tmp_path / "Lora"
    write_kohya_lora(folder / "good.safetensors", seed=1)
    write_raw_safetensors(folder / "odd.safetensors", '{"__metadata__": {"ss_training_comment": "a\\ud800b"}, '
                          '"w.lora_down.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')
    report = import_folder(store, folder, progress=False)
    assert report.added == 1
    [(name, reason)] = report.skipped
    assert name == "odd.safetensors" and "'\\ud800', which is not valid Unicode" in reason, reason


def test_folder_keeps_a_file_whose_sidecars_are_broken(tmp_path, store):
    folder = tmp_path / "Lora"
    write_kohya_lora(folder / "huge_ids.safetensors", seed=1)
    write_json(folder / "huge_ids.civitai.info", civitai_version_info(version_id=HUGE))
    write_kohya_lora(folder / "huge_model.safetensors", seed=2)
    write_json(folder / "huge_model.civitai.info", civitai_version_info(version_id=77, model_id=HUGE))
    write_kohya_lora(folder / "deep.safetensors", seed=3)
    (folder / "deep.json").write_text("[" * 100_000)
    report = import_folder(store, folder, progress=False)
    assert report.added == 3 and not report.skipped, report.skipped
    cards = {Path(c.local_path).name: c for c in store.iter_cards()}
    assert cards["huge_ids.safetensors"].id.startswith("folder-")  # the sidecar's id is not used
    huge_model = cards["huge_model.safetensors"]
    assert (huge_model.id, huge_model.civitai_model_id) == ("civitai-77", None)
    notices = "\n".join(report.notices)
    assert f"version id {HUGE} is not a whole number from 0 to 9223372036854775807; ignored" in notices
    assert f"model id {HUGE} is not a whole number" in notices
    assert "deep.json is JSON nested too deeply to read; ignored" in notices


def test_hf_repo_skips_a_bad_header_and_reads_a_deep_front_matter(tmp_path, store):
    repo = tmp_path / "pixel-lora"
    write_kohya_lora(repo / "pytorch_lora_weights.safetensors", seed=1)
    write_raw_safetensors(repo / "broken.safetensors",
                          '{"w": {"dtype": "F32", "shape": [null], "data_offsets": [0, 4]}}')
    (repo / "README.md").write_text("---\ntags: " + "[" * 2000 + "\n---\nA pixel style.\n")
    report = import_hf(store, repo, progress=False)
    assert [c.id for c in store.iter_cards()] == ["hf-pixel-lora-pytorch_lora_weights"]
    assert [name for name, _ in report.skipped] == ["broken.safetensors"]
    assert any("front matter is YAML nested too deeply" in n for n in report.notices), report.notices


def test_hf_widget_paths_that_are_no_file_names_are_ignored(tmp_path, store):
    repo = tmp_path / "pixel-lora"
    write_kohya_lora(repo / "pytorch_lora_weights.safetensors", seed=1)
    (repo / "README.md").write_text("---\nwidget:\n- text: a long one\n  output: {url: '" + "a" * 5000 + "'}\n"
                                    "- text: a nul\n  output: {url: \"x\\0y.png\"}\n---\nA pixel style.\n")
    report = import_hf(store, repo, progress=False)
    assert report.added == 1 and not report.skipped, report.skipped
    card = store.get("hf-pixel-lora-pytorch_lora_weights")
    assert [(e.prompt, e.local_path) for e in card.examples] == [("a long one", None), ("a nul", None)]
