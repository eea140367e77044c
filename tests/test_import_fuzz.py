"""Property-based fuzzing of every importer's parsing (issue 13, item 4).

Each property feeds generated records, mostly valid shapes with any field swapped for any
JSON value (huge integers, infinities, lone surrogates, deep lists), and checks that parsing
returns valid cards or records/raises the importer's own error with a message; never another
exception. Mixed imports check that every good record next to the generated ones is kept.
"""
from __future__ import annotations

import copy
import json
import struct
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.card import AdapterCard
from catalog.importers.civitai import import_civitai_file
from catalog.importers.civitai_api import import_civitai_api
from catalog.importers.civitai_items import cards_from_item
from catalog.importers.folder import import_folder
from catalog.importers.hf import import_hf, parse_model_card
from catalog.lora_file import LoraFileError, SafetensorsHeader, inspect_lora, read_safetensors_header
from catalog.store import CatalogError, CatalogStore
from fakes.civitai_server import FakeCivitai
from fakes.lora_files import a1111_user_metadata, civitai_version_info, write_kohya_lora

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_IO = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- generated values ---------------------------------------------------------------------
text = st.text(max_size=20)  # any code point, lone surrogates included
ints = st.integers() | st.sampled_from([0, -1, 2**63 - 1, 2**63, -2**63 - 1, 10**30])
json_scalars = st.none() | st.booleans() | ints | st.floats() | text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=8)


def maybe(good: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a plausible value, sometimes any JSON value."""
    return st.one_of(good, good, json_values)


def shaped(**fields: st.SearchStrategy) -> st.SearchStrategy:
    """An object with some of ``fields`` (each maybe junk), or now and then any JSON value."""
    return st.one_of(st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()}),
                     st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()}),
                     st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()}),
                     json_values)


html = st.text(alphabet=st.sampled_from(list("<>/![]&#;=\"' abcpdivscript-x\n")), max_size=60)
# values that broke imports before, next to anything JSON can hold
nasty = st.one_of(st.sampled_from([
    10**30, -1, 2**63, float("inf"), float("nan"), "\ud800", "<![foo[ x", "\u00b2", "9" * 5000,
    [None], ["a", "b"], [0, float("inf")], {"name": 5}, 5]), json_values, html)


def paths_of(record: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside ``record`` (dict keys and list positions), containers included."""
    items = record.items() if isinstance(record, dict) else enumerate(record) if isinstance(record, list) else []
    out = []
    for key, value in items:
        out.append((*prefix, key))
        out += paths_of(value, (*prefix, key))
    return out


def mutated(template: dict) -> st.SearchStrategy:
    """``template`` (a valid record) with one to three of its fields set to a nasty value."""
    def apply(changes: list[tuple[tuple, object]]) -> dict:
        record = copy.deepcopy(template)
        for path, value in changes:
            target = record
            try:
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = copy.deepcopy(value)  # sampled values are shared between examples
            except (KeyError, IndexError, TypeError):  # an earlier change replaced a container
                continue
        return record
    return st.lists(st.tuples(st.sampled_from(paths_of(template)), nasty), min_size=1, max_size=3).map(apply)


image = shaped(url=text, width=ints, height=ints, nsfw=st.booleans() | text,
               meta=shaped(prompt=st.just("<lora:my_lora:0.7> a cat") | text, negativePrompt=text,
                           resources=st.lists(shaped(type=st.just("lora"), name=text, weight=st.floats()),
                                              max_size=2)))
raw_file = shaped(name=text, sizeKB=st.floats(), type=st.sampled_from(["Model", "Training Data"]),
                  primary=st.booleans(), hashes=st.dictionaries(st.sampled_from(["SHA256", "AutoV2"]), text),
                  downloadUrl=text, metadata=shaped(format=st.just("SafeTensor")))
version = shaped(id=ints, name=text, baseModel=st.sampled_from(["SD 1.5", "SDXL 1.0", "Pony"]) | text,
                 description=html, trainedWords=st.lists(text, max_size=3),
                 files=st.lists(raw_file, max_size=2), images=st.lists(image, max_size=2),
                 stats=shaped(downloadCount=ints))
CIVITAI_TEMPLATE = {
    "id": 7_000_001, "name": "Template LoRA", "type": "LORA", "description": "<p>A <b>style</b></p>",
    "nsfw": False, "poi": False, "tags": ["style", {"name": "anime"}], "creator": {"username": "someone"},
    "stats": {"downloadCount": 10, "rating": 4.5},
    "modelVersions": [{
        "id": 7_100_001, "name": "v1", "baseModel": "SD 1.5", "description": "<p>notes</p>",
        "trainedWords": ["tmpl style"], "stats": {"downloadCount": 7},
        "files": [{"name": "tmpl.safetensors", "sizeKB": 9.5, "type": "Model", "primary": True,
                   "hashes": {"SHA256": "AB" * 32}, "downloadUrl": "https://civitai.com/api/download/1",
                   "metadata": {"format": "SafeTensor"}}],
        "images": [{"url": "https://image.civitai.com/1.png", "width": 512, "height": 768, "nsfw": "None",
                    "meta": {"prompt": "<lora:tmpl:0.7> a cat", "negativePrompt": "blurry",
                             "resources": [{"type": "lora", "name": "tmpl", "weight": 0.7}]}}]}]}
shaped_item = shaped(id=ints, name=text, type=st.sampled_from(["LORA", "LoCon", "Checkpoint"]),
                      description=html, nsfw=st.booleans(), poi=st.booleans(),
                      tags=st.lists(text | shaped(name=text), max_size=3), creator=shaped(username=text),
                      stats=shaped(downloadCount=ints, rating=st.floats()),
                      modelVersions=st.lists(version, max_size=2))
civitai_item = st.one_of(shaped_item, mutated(CIVITAI_TEMPLATE), mutated(CIVITAI_TEMPLATE))


def good_item(n: int) -> dict:
    """A valid item whose version id (9_000_000 + n) no generated item is likely to reuse."""
    return {"id": 8_000_000 + n, "name": f"good {n}", "type": "LORA",
            "modelVersions": [{"id": 9_000_000 + n, "baseModel": "SD 1.5",
                               "files": [{"name": f"good_{n}.safetensors", "type": "Model"}]}]}


GOOD_IDS = {f"civitai-{9_000_000 + n}" for n in range(3)}


def _line(record: object) -> bytes:
    return json.dumps(record).encode() if not isinstance(record, bytes) else record


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One catalog for all examples of a test (opening one per example would dominate the time)."""
    with CatalogStore(tmp_path_factory.mktemp("catalog")) as s:
        yield s


# ---- Civitai items (civitai_items.py) and dumps (civitai.py) -------------------------------
@FUZZ
@given(civitai_item)
def test_civitai_item_gives_valid_cards_or_reasons(store, raw):
    cards, messages = cards_from_item(raw)
    assert all(isinstance(c, AdapterCard) for c in cards)
    assert cards or messages, "an item without cards must say why"
    assert all(isinstance(m, str) and m for m in messages)
    for card in cards:  # what the store will hold round-trips through validation, and it can hold it
        AdapterCard.model_validate(card.model_dump(mode="json"))
        try:
            store.upsert(card)
        except CatalogError as exc:
            assert card.id in str(exc) or repr(card.id) in str(exc)


@FUZZ_IO
@given(st.lists(civitai_item | st.binary(max_size=30), max_size=4), st.booleans())
def test_civitai_dump_keeps_every_good_item(store, bad, gzip_it):
    for card_id in GOOD_IDS:  # the store is shared between examples: start without the good cards
        store.delete(card_id)
    records = [good_item(0), *bad[:2], good_item(1), *bad[2:], good_item(2)]
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "dump.jsonl"
        dump.write_bytes(b"\n".join(_line(r).replace(b"\n", b" ") for r in records) + b"\n")
        if gzip_it:
            import gzip
            dump.write_bytes(gzip.compress(dump.read_bytes()))
        report = import_civitai_file(store, dump, progress=False)
        assert GOOD_IDS <= set(store.get_many(sorted(GOOD_IDS)))
        assert all(isinstance(i, str) and r for i, r in report.skipped)
        rerun = import_civitai_file(store, dump, progress=False)  # not stuck on a bad record either
        assert rerun.added == 0 and rerun.unchanged >= len(GOOD_IDS)


# ---- Civitai API pages (civitai_api.py) ---------------------------------------------------
@pytest.fixture(scope="module")
def api():
    with FakeCivitai([]) as fake, httpx.Client(timeout=10) as client:
        fake.client = client  # one client for all examples (creating one costs more than an import)
        yield fake


page_metadata = shaped(nextPage=st.just("/api/v1/models?page=2") | st.just("http://example.invalid/x") | text,
                       nextCursor=text | ints, pageSize=ints)


@FUZZ_IO
@given(bad=st.lists(civitai_item, max_size=4), metadata=page_metadata, junk_page=st.none() | json_values)
def test_civitai_api_pages_keep_every_good_item_or_raise_catalog_error(store, api, bad, metadata, junk_page):
    for card_id in GOOD_IDS:  # the store is shared between examples: start without the good cards
        store.delete(card_id)
    page = {"items": [good_item(0), *bad[:2], good_item(1), *bad[2:], good_item(2)], "metadata": metadata}
    api.pages, api.requests[:] = [page] if junk_page is None else [junk_page], []
    try:
        import_civitai_api(store, base_url=api.base_url, token="fuzz-token-123", max_retries=0, restart=True,
                           client=api.client, sleep=lambda s: None, progress=False)
    except CatalogError as exc:
        assert str(exc) and "fuzz-token-123" not in str(exc)
        assert junk_page is not None or metadata_followed(metadata)  # only a bad page or next page fails
    if junk_page is None:
        assert GOOD_IDS <= set(store.get_many(sorted(GOOD_IDS)))


def metadata_followed(metadata: object) -> bool:
    """Whether the importer asked for a second page (which may then be a bad one)."""
    return isinstance(metadata, dict) and bool(metadata.get("nextPage") or metadata.get("nextCursor")
                                               not in (None, ""))


# ---- safetensors headers (lora_file.py) ---------------------------------------------------
tensor_info = shaped(dtype=st.just("F32") | text, shape=st.lists(st.integers(0, 4), max_size=4),
                     data_offsets=st.just([0, 4]) | st.lists(ints, min_size=2, max_size=2))
HEADER_TEMPLATE = {
    "__metadata__": {"ss_tag_frequency": '{"d": {"tag": 3}}', "ss_network_dim": "4", "ss_network_alpha": "4",
                     "ss_base_model_version": "sd_v1"},
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight":
        {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, 4]},
    "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight":
        {"dtype": "F32", "shape": [1, 320, 3, 3], "data_offsets": [4, 8]}}
header = st.one_of(
    mutated(HEADER_TEMPLATE), mutated(HEADER_TEMPLATE),
    st.fixed_dictionaries({}, optional={
        "w.lora_down.weight": tensor_info, "w.lora_up.weight": tensor_info, "te.hada_w1_a": tensor_info,
        "x": tensor_info, "__metadata__": maybe(st.dictionaries(
            st.sampled_from(["ss_tag_frequency", "ss_network_dim", "ss_network_alpha", "ss_base_model_version"]),
            text | st.just('{"d": {"tag": 1e400}}') | st.just("1e400"), max_size=3))}),
    json_values)


def write_header(path: Path, header_bytes: bytes, data_bytes: int = 8) -> Path:
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + b"\0" * data_bytes)
    return path


@FUZZ
@given(header | st.binary(max_size=40))
def test_safetensors_header_parses_or_raises_lora_file_error(value):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_header(Path(tmp) / "x.safetensors", raw)
        try:
            parsed = read_safetensors_header(path)
        except LoraFileError as exc:
            assert "x.safetensors" in str(exc)
            return
        assert isinstance(parsed, SafetensorsHeader)
        assert all(isinstance(d, int) and d >= 0 for shape in parsed.shapes.values() for d in shape)
        info = inspect_lora(path)
        info.top_tags(), info.network_dim, info.network_alpha  # noqa: B018 (they must not raise)


# ---- folder sidecars (sidecars.py, folder.py) ---------------------------------------------
civitai_info = shaped(id=ints | st.just("12"), modelId=ints | text, name=text, baseModel=text,
                      trainedWords=st.lists(text, max_size=2), description=html,
                      model=shaped(name=text, nsfw=st.booleans(), poi=st.booleans(),
                                   tags=st.lists(text | shaped(name=text), max_size=2)),
                      images=st.lists(image, max_size=2), files=st.lists(raw_file, max_size=2))
a1111_json = shaped(**{"description": text, "activation text": text, "preferred weight": st.floats() | ints,
                       "sd version": st.sampled_from(["SD1", "SDXL"]), "notes": text})


@pytest.fixture(scope="module")
def lora_bytes(tmp_path_factory) -> bytes:
    return write_kohya_lora(tmp_path_factory.mktemp("lora") / "a.safetensors", seed=1).read_bytes()


@FUZZ_IO
@given(info=civitai_info | mutated(civitai_version_info()) | mutated(civitai_version_info()) | st.binary(max_size=30),
       user=a1111_json | mutated(a1111_user_metadata()) | st.binary(max_size=30), head=header)
def test_folder_keeps_every_good_file_whatever_the_sidecars_say(store, lora_bytes, info, user, head):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Lora"
        folder.mkdir()
        (folder / "good.safetensors").write_bytes(lora_bytes)
        (folder / "fuzzed.safetensors").write_bytes(lora_bytes[:8] + lora_bytes[8:] + b"\0")  # another hash
        (folder / "fuzzed.civitai.info").write_bytes(_line(info))
        (folder / "fuzzed.json").write_bytes(_line(user))
        write_header(folder / "header.safetensors", json.dumps(head).encode())
        report = import_folder(store, folder, progress=False)
        imported = {Path(c.local_path).name for c in store.iter_cards()
                    if c.local_path and Path(c.local_path).parent == folder}
        skipped = {name for name, reason in report.skipped if reason}
        assert "good.safetensors" in imported
        assert imported | skipped == {"good.safetensors", "fuzzed.safetensors", "header.safetensors"}


# ---- Hugging Face model cards (hf.py) -----------------------------------------------------
FRONT_TEMPLATE = {"base_model": "runwayml/stable-diffusion-v1-5", "tags": ["lora", "pixel"], "license": "mit",
                  "instance_prompt": "pxl style", "widget": [{"text": "a pxl cat", "output": {"url": "cat.png"}}]}
front_matter = mutated(FRONT_TEMPLATE) | shaped(
    base_model=st.just("runwayml/stable-diffusion-v1-5") | text, tags=st.lists(text, max_size=3),
    instance_prompt=text, license=text,
    widget=st.lists(shaped(text=text, output=shaped(url=text | st.just("img.png"))), max_size=2))


def model_card(front: object, raw_yaml: str | None) -> str:
    body = raw_yaml if raw_yaml is not None else yaml.safe_dump(front, allow_unicode=False)
    return f"---\n{body}\n---\nSome text.\n"


@FUZZ_IO
@given(front=front_matter, raw_yaml=st.none() | st.none() | st.text(max_size=40) | st.sampled_from(
    ["date: 2023-13-45", "tags: " + "[" * 1000, "a: &x [1]\nb: *x", "base_model: !!python/object:os.system x"]))
def test_hf_repo_gives_a_card_or_a_reason(store, lora_bytes, front, raw_yaml):
    readme = model_card(front, raw_yaml)
    parsed, body, notes = parse_model_card(readme)
    assert isinstance(parsed, dict) and isinstance(body, str) and all(isinstance(n, str) for n in notes)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "pixel-lora"
        repo.mkdir()
        (repo / "pytorch_lora_weights.safetensors").write_bytes(lora_bytes)
        (repo / "README.md").write_text(readme, encoding="utf-8", errors="surrogatepass")
        report = import_hf(store, repo, progress=False)
        assert report.added + report.updated + report.unchanged + len(report.skipped) == 1
        assert all(reason for _, reason in report.skipped)
