"""``compose`` CLI with the retriever replaced by hand-made candidates."""
import json

import pytest

from components.engine import StylusEngine
from components.types import RetrievalResult
from stylus_ui.cli import main
from tests.composer_helpers import cand, card


@pytest.fixture
def fake_retrieval(monkeypatch, tmp_path):
    cands = [cand(card("dog", "Small Dogs", weight=0.7)), cand(card("hat", "Knitted Hat"), 0.9)]
    monkeypatch.setattr(StylusEngine, "retrieve",
                        lambda self, prompt, top_k=None, characters=None: RetrievalResult(query=prompt, candidates=cands))
    monkeypatch.setenv("STYLUS_HOME", str(tmp_path))


def test_queries_file_writes_one_line_per_query_in_order(fake_retrieval, tmp_path, capsys):
    f = tmp_path / "q.jsonl"
    f.write_text('{"query": "a small dog in a knitted hat"}\n{"query": "masterpiece, 8k"}\n')
    assert main(["compose", "--queries", str(f)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["query"] for x in lines] == ["a small dog in a knitted hat", "masterpiece, 8k"]
    first = lines[0]
    assert set(first) == {"query", "topics", "unassigned", "unassigned_why", "retrieved"}
    adapter = first["topics"][0]["adapters"][0]
    assert set(adapter) == {"id", "civitai_model_id", "weight", "reason"} and adapter["weight"] == 0.7
    assert first["retrieved"][0] == {"id": "dog", "civitai_model_id": adapter["civitai_model_id"]}
    assert lines[1]["topics"] == []


def test_prompt_text_output_and_bad_input(fake_retrieval, capsys, tmp_path):
    assert main(["compose", "a small dog"]) == 0
    assert "Small Dogs" in capsys.readouterr().out
    assert main(["compose"]) == 2
    assert "PROMPT or --queries" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert main(["compose", "--queries", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_characters_option_reaches_the_composer(monkeypatch, tmp_path, capsys):
    miku = cand(card("miku", "Hatsune Miku", category="character", triggers=["miku"]), examples=["twintails"])
    monkeypatch.setattr(StylusEngine, "retrieve",
                        lambda self, prompt, top_k=None, characters=None: RetrievalResult(query=prompt, candidates=[miku]))
    monkeypatch.setenv("STYLUS_HOME", str(tmp_path))
    assert main(["compose", "1girl, twintails", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["topics"] == []  # default: named characters only
    assert main(["compose", "1girl, twintails", "--json", "--characters", "all"]) == 0
    assert [a["id"] for t in json.loads(capsys.readouterr().out)["topics"] for a in t["adapters"]] == ["miku"]
    monkeypatch.setenv("STYLUS_CHARACTERS", "sometimes")
    assert main(["compose", "1girl, twintails"]) == 2
    assert "characters='sometimes'" in capsys.readouterr().err
