"""Adapter files on the tiny preview model: formats that load, bad files skipped with notices, LRU."""
from __future__ import annotations

import numpy as np
import pytest

from catalog.card import AdapterCard
from catalog.lora_file import autov3_of_file
from catalog.settings import Settings
from components.generator import Generator, parse_parameters
from components.types import Variant
from tests.fakes import lora_files
from tests.generation_helpers import folder_card as _card, lighthouse_request as _req
from tests.fakes.tiny_loras import write_kohya, write_peft


def _run(gen: Generator, card: AdapterCard, weight: float = 1.0):
    return gen.generate(_req(), [Variant(0, {card.id: weight}, "a lighthouse")], {card.id: card})


def _changed(res) -> bool:
    a = np.asarray(res.images[0].image).astype(int)
    return bool(np.abs(a - np.asarray(res.baseline.image).astype(int)).mean() > 0.5)


def test_kohya_file_made_by_the_test_loads(tiny_generator, tmp_path):
    card = _card("kohya-1", write_kohya(tmp_path / "my_style.safetensors", seed=1))
    res = _run(tiny_generator, card)
    assert _changed(res)
    assert not any("stand-in" in n for n in res.notices), res.notices
    params = parse_parameters(res.images[0].parameters)
    assert params["loras"] == {"my_style": 1.0}
    assert params["lora_hashes"] == {"my_style": autov3_of_file(card.local_path)}  # A1111's AutoV3


def test_diffusers_peft_file_loads(tiny_generator, gen_settings, tmp_path):
    from components.generator.preview_model import PREVIEW_DIRNAME
    path = write_peft(tmp_path / "peft_style.safetensors", gen_settings.cache_dir / PREVIEW_DIRNAME, seed=2)
    res = _run(tiny_generator, _card("peft-1", path))
    assert _changed(res)
    assert not any("skipped" in n or "stand-in" in n for n in res.notices), res.notices


BAD_FILES = [
    ("truncated", lambda p: lora_files.write_truncated(p), "corrupt or truncated"),
    ("not-safetensors", lambda p: lora_files.write_not_safetensors(p), "corrupt or truncated"),
    ("pickled", lambda p: lora_files.write_pickle(p.with_suffix(".ckpt")), "pickled checkpoint refused"),
    ("pickle-renamed", lambda p: lora_files.write_pickle(p), "pickled checkpoint refused"),
    ("sdxl", lambda p: lora_files.write_kohya_lora(p, targets=lora_files.SDXL_KOHYA_TARGETS), "SDXL"),
    ("dora-input-axis", lambda p: lora_files.write_dora(p), "DoRA adapter with per-input-column"),
    ("sd2", lambda p: lora_files.write_kohya_lora(p, targets=lora_files.SD2_KOHYA_TARGETS), "1024 \\(SD 2.x\\)"),
]


@pytest.mark.parametrize("kind,write,reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_skipped_with_a_notice_and_the_request_goes_on(tiny_generator, tmp_path, kind, write, reason):
    path = write(tmp_path / f"{kind}.safetensors")
    card = AdapterCard(id=f"bad-{kind}", source="folder", name=f"bad {kind}", local_path=str(path))
    res = _run(tiny_generator, card)
    notice = next(n for n in res.notices if f"bad-{kind}" in n)
    assert "skipped" in notice and __import__("re").search(reason, notice), notice
    assert len(res.images) == 1  # the request continued without the adapter
    assert np.array_equal(np.asarray(res.images[0].image), np.asarray(res.baseline.image))
    assert "<lora:" not in res.images[0].parameters


def test_real_sd15_file_gets_a_stand_in_on_the_preview_model(tiny_generator, tmp_path):
    path = lora_files.write_kohya_lora(tmp_path / "real_sd15.safetensors")
    card = AdapterCard(id="real-sd15", source="folder", name="real", local_path=str(path))
    res = _run(tiny_generator, card)
    assert any("real-sd15" in n and "stand-in" in n for n in res.notices)
    assert _changed(res)


def test_pickles_load_when_allowed(gen_settings, tmp_path):
    import torch
    from tests.fakes.tiny_loras import kohya_state_dict
    path = tmp_path / "trusted.pt"
    torch.save(kohya_state_dict(5), path)
    gen = Generator(gen_settings.replace(allow_pickle=True, home=tmp_path / "h",
                                         cache_dir=gen_settings.cache_dir))
    card = AdapterCard(id="pickled-ok", source="folder", name="p", local_path=str(path))
    res = _run(gen, card)
    assert _changed(res) and not any("skipped" in n for n in res.notices)


def test_lru_keeps_at_most_the_configured_number_of_adapters(gen_settings, tmp_path):
    settings: Settings = gen_settings.replace(lora_cache_size=2, home=tmp_path / "h",
                                              cache_dir=gen_settings.cache_dir)
    gen = Generator(settings)
    cards = {f"lru-{i}": AdapterCard(id=f"lru-{i}", source="manual", name=f"lru {i}") for i in range(4)}
    for cid in cards:
        gen.generate(_req(steps=1, include_baseline=False), [Variant(0, {cid: 0.8}, "p")], cards)
    pipe = gen.pipelines().txt2img
    loaded = set(pipe.get_list_adapters().get("unet", []))
    assert loaded == {"a_lru_2", "a_lru_3"}
