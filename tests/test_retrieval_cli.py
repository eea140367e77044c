"""`catalog index` and `retrieve` (single prompt, --json, --queries) through the CLI entry point."""
from __future__ import annotations

import gzip
import json

import pytest

from stylus_ui.cli import main
from tests.retrieval_helpers import small_catalog


@pytest.fixture
def catalog_dir(tmp_path, minilm, monkeypatch):
    from catalog.store import CatalogStore
    monkeypatch.setattr("components.encoder.make_embedder", lambda settings: minilm)
    monkeypatch.setattr("components.retriever.make_embedder", lambda settings: minilm)
    monkeypatch.setenv("STYLUS_HOME", str(tmp_path / "home"))
    path = tmp_path / "catalog"
    with CatalogStore(path) as store:
        for c in small_catalog():
            store.upsert(c)
    return str(path)


def test_index_then_retrieve_queries_file(catalog_dir, tmp_path, capsys, monkeypatch):
    assert main(["catalog", "index", "--catalog", catalog_dir, "--no-progress"]) == 0
    assert "8 added" in capsys.readouterr().out
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "cyber samurai armor, katana"}\n{"query": "   "}\n{"query": "水彩の灯台"}\n',
                       encoding="utf-8")
    assert main(["retrieve", "--queries", str(queries), "--top-k", "2", "--catalog", catalog_dir]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["query"] for row in lines] == ["cyber samurai armor, katana", "   ", "水彩の灯台"]
    assert lines[0]["adapters"][0] == {"id": "civitai-2", "civitai_model_id": 2,
                                       "score": lines[0]["adapters"][0]["score"]}
    assert len(lines[0]["adapters"]) <= 2 and lines[1]["adapters"] == []
    gz = tmp_path / "queries.jsonl.gz"  # the dev split ships gzipped
    gz.write_bytes(gzip.compress(queries.read_bytes()))
    assert main(["retrieve", "--queries", str(gz), "--top-k", "2", "--catalog", catalog_dir]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == lines


def test_retrieve_json_and_errors(catalog_dir, capsys, tmp_path):
    assert main(["retrieve", "watercolor lighthouse", "--json", "--top-k", "1", "--catalog", catalog_dir]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["adapters"][0]["id"] in ("civitai-1", "civitai-8") and out["adapters"][0]["evidence"]
    assert main(["retrieve", "  ", "--catalog", catalog_dir]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no query field"}\n', encoding="utf-8")
    assert main(["retrieve", "--queries", str(bad), "--catalog", catalog_dir]) == 2
    assert "line 1 has no text field 'query'" in capsys.readouterr().err
