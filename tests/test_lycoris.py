"""LyCORIS files (LoCon, LoHa, LoKr, kohya DoRA) on the tiny preview model, in both adapter modes.

Files are written in the real formats (tests/fakes/tiny_loras.py): each must change the image, apply
exactly the weight change LyCORIS defines for it, leave the base weights bit for bit as they were,
compose with the others in one variant, and a file that names no layer of the model is reported.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from catalog.card import AdapterCard
from catalog.lora_file import UNLOADABLE_TYPES, inspect_lora, unloadable_reason
from components.generator import Generator, active_adapters
from components.generator.adapters import adapter_name
from components.types import Variant
from tests.fakes import lora_files
from tests.generation_helpers import folder_card as _card, lighthouse_request as _req
from tests.fakes import tiny_loras as tl

FORMATS = {
    "locon": lambda p: tl.write_locon(p, seed=11),
    "loha": lambda p: tl.write_loha(p, seed=12),
    "lokr": lambda p: tl.write_lokr(p, seed=13),
    "lokr-decomposed": lambda p: tl.write_lokr(p, seed=14, rank=2, alpha=1.0),
    "dora": lambda p: tl.write_dora(p, seed=15),
}
ADAPTER_PARAMS = ("lora_A", "lora_B", "lora_magnitude_vector", "hada_", "lokr_")


def _run(gen: Generator, *weighted: tuple[AdapterCard, float]):
    """One variant with these (card, weight) pairs, plus the baseline."""
    cards = {c.id: c for c, _ in weighted}
    return gen.generate(_req(), [Variant(0, {c.id: w for c, w in weighted}, "a lighthouse")], cards)


def _pixels(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def _changed(a, b) -> bool:
    return bool(np.abs(_pixels(a) - _pixels(b)).mean() > 0.5)


def _base_hash(pipe) -> str:
    """SHA256 over every base tensor of UNet and text encoder, named as without adapters."""
    h = hashlib.sha256()
    for component in (pipe.unet, pipe.text_encoder):
        state = {k.replace(".base_layer", ""): v for k, v in component.state_dict().items()
                 if not any(p in k for p in ADAPTER_PARAMS)}
        for key in sorted(state):
            h.update(key.encode())
            h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind", list(FORMATS))
def test_each_format_changes_the_output_and_the_base_is_restored(tiny_generator, tmp_path, adapter_mode, kind):
    card = _card(f"lyco-{kind}-{adapter_mode}", FORMATS[kind](tmp_path / f"{kind}.safetensors"))
    pipe = tiny_generator.pipelines().txt2img
    before = _base_hash(pipe)
    res = _run(tiny_generator, (card, 1.0))
    assert not [n for n in res.notices if card.id in n], res.notices  # loaded as is: no stand-in, no skip
    assert _changed(res.images[0].image, res.baseline.image)
    assert _base_hash(pipe) == before
    assert f"<lora:{kind}:1>" in res.images[0].parameters


def _module(pipe, path: str):
    """The innermost base layer at ``path`` (whatever adapters wrap it)."""
    module = pipe.unet.get_submodule(path)
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def _expected_delta(kind: str, t: dict[str, torch.Tensor], base: torch.Tensor) -> torch.Tensor:
    """The weight change LyCORIS defines for one module (lycoris/functional; A1111's networks)."""
    if kind in ("locon", "dora"):
        down, up = t["lora_down.weight"], t["lora_up.weight"]
        rank = down.shape[0]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(base.shape) * (t["alpha"].item() / rank)
        if kind == "locon":
            return delta
        merged = base + delta  # DoRA, per output row: dora_scale * (W + dW) / ||W + dW||
        norm = merged.flatten(1).norm(dim=1).reshape(-1, *[1] * (base.dim() - 1))
        return t["dora_scale"].reshape(norm.shape) * merged / norm - base
    if kind == "loha":
        rank = t["hada_w1_b"].shape[0]
        delta = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
        return delta.reshape(base.shape) * (t["alpha"].item() / rank)
    w1 = t["lokr_w1"]
    w2 = t["lokr_w2"] if "lokr_w2" in t else t["lokr_w2_a"] @ t["lokr_w2_b"]
    scale = 1.0 if "lokr_w2" in t else t["alpha"].item() / t["lokr_w2_b"].shape[0]
    if base.dim() == 4:  # conv: the kernel rides on w2 (LyCORIS make_kron)
        w1, w2 = w1[:, :, None, None], w2.reshape(w2.shape[0], -1, *base.shape[2:])
    return torch.kron(w1, w2) * scale


# (kohya module, diffusers path): a linear attention projection, a 1x1 and a 3x3 convolution
CHECKED = [("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k",
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"),
           ("lora_unet_down_blocks_1_attentions_0_proj_in", "down_blocks.1.attentions.0.proj_in"),
           ("lora_unet_down_blocks_0_resnets_0_conv1", "down_blocks.0.resnets.0.conv1")]


@pytest.mark.parametrize("kind", list(FORMATS))
def test_the_merged_change_is_the_one_lycoris_defines(tiny_generator, tmp_path, kind):
    path = FORMATS[kind](tmp_path / f"exact-{kind}.safetensors")
    card = _card(f"exact-{kind}", path)
    pipe = tiny_generator.pipelines().txt2img
    _run(tiny_generator, (card, 1.0))  # loads it
    tensors = load_file(str(path))
    checked = 0
    for kohya, module_path in CHECKED:
        t = {k.split(".", 1)[1]: v.float() for k, v in tensors.items() if k.split(".", 1)[0] == kohya}
        if not t:  # DoRA's file has no 3x3 conv
            continue
        layer = _module(pipe, module_path)
        base = layer.weight.detach().clone()
        for weight in (1.0, 0.5) if kind != "dora" else (1.0,):  # DoRA is not linear in its weight
            with active_adapters(pipe, {adapter_name(card.id): weight}, "fused"):
                got = layer.weight.detach() - base
            expected = _expected_delta(kind, t, base) * weight
            assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4), (kohya, weight, (got - expected).abs().max())
        assert torch.equal(layer.weight, base)
        checked += 1
    assert checked >= 2


def test_two_formats_compose_in_one_variant(tiny_generator, tmp_path, adapter_mode):
    loha = _card(f"mix-loha-{adapter_mode}", tl.write_loha(tmp_path / "mix_loha.safetensors", seed=21))
    lokr = _card(f"mix-lokr-{adapter_mode}", tl.write_lokr(tmp_path / "mix_lokr.safetensors", seed=22))
    locon = _card(f"mix-locon-{adapter_mode}", tl.write_locon(tmp_path / "mix_locon.safetensors", seed=23))
    pipe = tiny_generator.pipelines().txt2img
    before = _base_hash(pipe)
    alone = {c.id: _run(tiny_generator, (c, 0.8)).images[0].image for c in (loha, lokr)}
    res = _run(tiny_generator, (loha, 0.8), (lokr, 0.8), (locon, 0.6))
    assert not [n for n in res.notices if "mix-" in n], res.notices
    both = res.images[0].image
    assert _changed(both, res.baseline.image)
    assert all(_changed(both, image) for image in alone.values())
    assert "<lora:mix_loha:0.8>" in res.images[0].parameters
    assert "<lora:mix_lokr:0.8>" in res.images[0].parameters
    assert _base_hash(pipe) == before


SAME_IN_BOTH_MODES = {  # additive formats compose alike; DoRA rescales what lies beneath it, so alone
    "loha+lokr+locon": [("loha", lambda p: tl.write_loha(p, seed=31), 0.7),
                        ("lokr", lambda p: tl.write_lokr(p, seed=32), 0.5),
                        ("locon", lambda p: tl.write_locon(p, seed=33), 0.6)],
    "dora": [("dora", lambda p: tl.write_dora(p, seed=34), 1.0)],
}


@pytest.mark.parametrize("mix", list(SAME_IN_BOTH_MODES))
def test_fused_and_unfused_draw_the_same_image(tiny_generator, tmp_path, mix):
    cards = [(_card(f"same-{mix}-{kind}", write(tmp_path / f"same_{kind}.safetensors")), w)
             for kind, write, w in SAME_IN_BOTH_MODES[mix]]
    images = {}
    for mode in ("fused", "unfused"):
        tiny_generator.settings.adapter_mode = mode
        images[mode] = _pixels(_run(tiny_generator, *cards).images[0].image)
    tiny_generator.settings.adapter_mode = "fused"
    assert np.abs(images["fused"] - images["unfused"]).mean() < 0.5


NO_MATCH = [  # module names of SD 1.5 layers the preview model does not have, at its widths
    ("loha", lambda p: tl.write_loha(p, seed=41, targets=[
        ("lora_unet_down_blocks_2_attentions_0_proj_in", 64, 64, 1),
        ("lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_q", 64, 64, None)])),
    ("kohya", lambda p: tl.write_locon(p, seed=42, targets=[
        ("lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn1_to_q", 64, 64, None),
        ("lora_te_text_model_encoder_layers_11_self_attn_q_proj", 32, 32, None)])),
]


@pytest.mark.parametrize("kind,write", NO_MATCH, ids=[n[0] for n in NO_MATCH])
def test_a_file_whose_keys_match_nothing_is_reported(tiny_generator, tmp_path, kind, write):
    path = write(tmp_path / f"nomatch_{kind}.safetensors")
    card = _card(f"nomatch-{kind}", path)
    res = _run(tiny_generator, (card, 1.0))
    notice = next(n for n in res.notices if card.id in n)
    assert path.name in notice and "no key matched a layer of this model" in notice and "skipped" in notice
    assert np.array_equal(_pixels(res.images[0].image), _pixels(res.baseline.image))
    assert adapter_name(card.id) not in tiny_generator.pipelines().txt2img.get_list_adapters().get("unet", [])


def test_a_partly_matching_file_loads_and_names_what_did_not_match(tiny_generator, tmp_path):
    targets = tl.lycoris_targets(conv=False)[:4] + [("lora_unet_down_blocks_2_attentions_0_proj_in", 64, 64, 1)]
    card = _card("partial-loha", tl.write_loha(tmp_path / "partial.safetensors", seed=51, targets=targets))
    res = _run(tiny_generator, (card, 1.0))
    notice = next(n for n in res.notices if card.id in n)
    assert "1 of its modules match no layer" in notice and "down_blocks_2_attentions_0_proj_in" in notice
    assert _changed(res.images[0].image, res.baseline.image)


def test_input_axis_dora_is_refused_with_its_reason(tiny_generator, tmp_path):
    card = _card("dora-in", tl.write_dora(tmp_path / "dora_in.safetensors", seed=61, on_output=False))
    res = _run(tiny_generator, (card, 1.0))
    notice = next(n for n in res.notices if card.id in n)
    assert "per-input-column dora_scale" in notice and "skipped" in notice
    assert np.array_equal(_pixels(res.images[0].image), _pixels(res.baseline.image))


@pytest.mark.parametrize("write", [lora_files.write_loha, lora_files.write_lokr])
def test_real_sd15_lycoris_gets_a_stand_in_on_the_preview_model(tiny_generator, tmp_path, write):
    card = AdapterCard(id=f"sd15-{write.__name__}", source="folder", name="real",
                       local_path=str(write(tmp_path / "sd15.safetensors")))
    res = _run(tiny_generator, (card, 1.0))
    assert any(card.id in n and "stand-in" in n for n in res.notices), res.notices


def test_catalog_marks_lycoris_loadable_and_names_what_is_not(tmp_path):
    assert UNLOADABLE_TYPES == ()
    for kind, write in FORMATS.items():
        info = inspect_lora(write(tmp_path / f"{kind}.safetensors"))
        assert unloadable_reason(info.adapter_type, info.header.shapes) is None, kind
    info = inspect_lora(tl.write_dora(tmp_path / "in.safetensors", seed=1, on_output=False))
    assert info.adapter_type == "DoRA"
    assert "per-input-column" in unloadable_reason(info.adapter_type, info.header.shapes)
