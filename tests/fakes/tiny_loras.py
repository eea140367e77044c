"""LoRA files for the tiny preview model, written the way real tools write them.

- ``write_kohya``: kohya/A1111/Civitai keys (``lora_unet_<module path>.lora_down.weight``, ...).
- ``write_peft``: the diffusers/peft format, made with peft's ``add_adapter`` and
  ``StableDiffusionPipeline.save_lora_weights`` (as in ENVIRONMENT.md).
- ``write_locon`` / ``write_loha`` / ``write_lokr`` / ``write_dora``: LyCORIS files as kohya sd-scripts
  with LyCORIS (``networks.lycoris``) writes them for SD 1.5: kohya module names, LoCon's 4-D conv
  ``lora_down``/``lora_up``, LoHa's ``hada_w{1,2}_{a,b}``, LoKr's ``lokr_w1`` + ``lokr_w2`` (or
  ``lokr_w2_a``/``_b``), DoRA's ``dora_scale``, an ``alpha`` per module.
Bad files (SDXL, pickles, truncated) come from ``tests/fakes/lora_files.py``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

TINY_UNET_BLOCKS = ("down_blocks.1.attentions.0", "down_blocks.1.attentions.1",
                    "mid_block.attentions.0", "up_blocks.0.attentions.0",
                    "up_blocks.0.attentions.1", "up_blocks.0.attentions.2")
TINY_WIDTH = 32  # text-encoder width = cross-attention context of the preview model
TINY_ATTN_WIDTH = 64  # the preview UNet's attention blocks sit in its 64-channel level


def kohya_state_dict(seed: int, rank: int = 4, width: int = TINY_ATTN_WIDTH, context: int = TINY_WIDTH,
                     scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def add(key: str, fan_in: int, fan_out: int) -> None:
        sd[f"{key}.lora_down.weight"] = torch.randn(rank, fan_in, generator=g) / fan_in ** 0.5
        sd[f"{key}.lora_up.weight"] = torch.randn(fan_out, rank, generator=g) * scale
        sd[f"{key}.alpha"] = torch.tensor(float(rank))

    for block in TINY_UNET_BLOCKS:
        base = "lora_unet_" + block.replace(".", "_") + "_transformer_blocks_0_"
        for proj in ("to_q", "to_k", "to_v", "to_out_0"):
            add(base + "attn1_" + proj, width, width)
        add(base + "attn2_to_q", width, width)
        add(base + "attn2_to_k", context, width)
        add(base + "attn2_to_v", context, width)
        add(base + "attn2_to_out_0", width, width)
    for layer in range(2):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add(f"lora_te_text_model_encoder_layers_{layer}_self_attn_{proj}", TINY_WIDTH, TINY_WIDTH)
    return sd


def write_kohya(path: Path, seed: int, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(kohya_state_dict(seed, **kw), str(path), metadata={"ss_network_module": "networks.lora"})
    return path


def write_peft(path: Path, preview_dir: Path, seed: int) -> Path:
    """A diffusers/peft-format LoRA (UNet only), trained-looking random weights."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(preview_dir / "unet", local_files_only=True)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    for name, p in unet.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(path.parent, unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name=path.name, safe_serialization=True)
    return path


# ---- LyCORIS formats ----------------------------------------------------------------------------
# (kohya module name, in, out, kernel or None for Linear) of the preview model's layers that
# LyCORIS' default SD 1.5 preset adapts: the attention blocks (Transformer2DModel: attention
# projections, feed-forward, 1x1 proj_in/proj_out), and with conv on, ResnetBlock2D/Downsample2D
# convolutions; the text encoder's attention and MLP (CLIPAttention, CLIPMLP).
LycoTarget = tuple  # (name, in, out, kernel | None)


def lycoris_targets(conv: bool = True, text_encoder: bool = True) -> list[LycoTarget]:
    w, ctx = TINY_ATTN_WIDTH, TINY_WIDTH
    out: list[LycoTarget] = []
    for block in TINY_UNET_BLOCKS[:2]:
        b = "lora_unet_" + block.replace(".", "_")
        t = f"{b}_transformer_blocks_0"
        out += [(f"{b}_proj_in", w, w, 1), (f"{b}_proj_out", w, w, 1)]
        out += [(f"{t}_attn1_{p}", w, w, None) for p in ("to_q", "to_k", "to_v", "to_out_0")]
        out += [(f"{t}_attn2_to_q", w, w, None), (f"{t}_attn2_to_k", ctx, w, None),
                (f"{t}_attn2_to_v", ctx, w, None), (f"{t}_attn2_to_out_0", w, w, None),
                (f"{t}_ff_net_0_proj", w, 8 * w, None), (f"{t}_ff_net_2", 4 * w, w, None)]
    if conv:
        out += [("lora_unet_down_blocks_0_resnets_0_conv1", 32, 32, 3),
                ("lora_unet_down_blocks_0_resnets_0_conv2", 32, 32, 3),
                ("lora_unet_down_blocks_0_downsamplers_0_conv", 32, 32, 3),
                ("lora_unet_down_blocks_1_resnets_0_conv1", 32, w, 3),
                ("lora_unet_down_blocks_1_resnets_0_conv_shortcut", 32, w, 1)]
    if text_encoder:
        for layer in range(2):
            te = f"lora_te_text_model_encoder_layers_{layer}"
            out += [(f"{te}_self_attn_{p}", TINY_WIDTH, TINY_WIDTH, None)
                    for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
            out += [(f"{te}_mlp_fc1", TINY_WIDTH, 37, None), (f"{te}_mlp_fc2", 37, TINY_WIDTH, None)]
    return out


def _save_lycoris(path: Path, sd: dict[str, torch.Tensor], algo: str, dim: int, alpha: float) -> Path:
    """With the metadata kohya's trainer writes for a LyCORIS network."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"ss_network_module": "lycoris.kohya", "ss_network_dim": str(dim), "ss_network_alpha": str(alpha),
            "ss_network_args": '{"algo": "%s"}' % algo, "ss_base_model_version": "sd_v1"}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=meta)
    return path


def write_locon(path: Path, seed: int, rank: int = 4, alpha: float = 2.0,
                targets: list[LycoTarget] | None = None) -> Path:
    """LoCon (kohya ``lora_down``/``lora_up``): Conv2d layers get 4-D tensors, ``lora_down`` with
    the layer's kernel and ``lora_up`` 1x1, as LyCORIS' LoConModule saves them."""
    g, sd = torch.Generator().manual_seed(seed), {}
    for name, fin, fout, k in targets or lycoris_targets():
        kk = (k, k) if k else ()
        sd[f"{name}.lora_down.weight"] = torch.randn(rank, fin, *kk, generator=g) / (fin * (k or 1) ** 2) ** 0.5
        sd[f"{name}.lora_up.weight"] = torch.randn(fout, rank, *((1, 1) if k else ()), generator=g)
        sd[f"{name}.alpha"] = torch.tensor(alpha)
    return _save_lycoris(path, sd, "locon", rank, alpha)


def write_loha(path: Path, seed: int, rank: int = 4, alpha: float = 2.0,
               targets: list[LycoTarget] | None = None) -> Path:
    """LoHa: ``hada_w1_a`` (out, r), ``hada_w1_b`` (r, in * k * k), the same for w2 (no Tucker)."""
    g, sd = torch.Generator().manual_seed(seed), {}
    for name, fin, fout, k in targets or lycoris_targets():
        flat_in = fin * (k or 1) ** 2
        for i in (1, 2):
            sd[f"{name}.hada_w{i}_a"] = torch.randn(fout, rank, generator=g) / rank ** 0.25
            sd[f"{name}.hada_w{i}_b"] = torch.randn(rank, flat_in, generator=g) / (rank * flat_in ** 0.5) ** 0.5
        sd[f"{name}.alpha"] = torch.tensor(alpha)
    return _save_lycoris(path, sd, "loha", rank, alpha)


def lycoris_factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """LyCORIS' ``factorization`` (lycoris/functional/general.py): ``dimension = m * n``, m <= n,
    m at most ``factor`` and as close to the square root as allowed; how LoKr splits a layer."""
    if factor > 0 and dimension % factor == 0:
        m, n = factor, dimension // factor
        return (n, m) if m > n else (m, n)
    factor = dimension if factor < 0 else factor
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def write_lokr(path: Path, seed: int, factor: int = -1, rank: int | None = None, alpha: float = 1.0,
               targets: list[LycoTarget] | None = None) -> Path:
    """LoKr: ``lokr_w1`` (out_l, in_m) full and ``lokr_w2`` (out_k, in_n[, k, k]) full, or with
    ``rank`` a decomposed ``lokr_w2_a`` (out_k, r) / ``lokr_w2_b`` (r, in_n * k * k)."""
    g, sd = torch.Generator().manual_seed(seed), {}
    for name, fin, fout, k in targets or lycoris_targets():
        out_l, out_k = lycoris_factorization(fout, factor)
        in_m, in_n = lycoris_factorization(fin, factor)
        kk = (k, k) if k else ()
        sd[f"{name}.lokr_w1"] = torch.randn(out_l, in_m, generator=g)
        if rank is None:
            sd[f"{name}.lokr_w2"] = torch.randn(out_k, in_n, *kk, generator=g) / (fin * (k or 1) ** 2) ** 0.5
        else:
            sd[f"{name}.lokr_w2_a"] = torch.randn(out_k, rank, generator=g)
            sd[f"{name}.lokr_w2_b"] = torch.randn(rank, in_n * (k or 1) ** 2, generator=g) / (fin * (k or 1) ** 2) ** 0.5
        sd[f"{name}.alpha"] = torch.tensor(alpha)
    return _save_lycoris(path, sd, "lokr", rank or 0, alpha)


def write_dora(path: Path, seed: int, rank: int = 4, alpha: float = 4.0, on_output: bool = True,
               targets: list[LycoTarget] | None = None) -> Path:
    """Kohya LoRA/LoCon keys plus ``dora_scale``: one magnitude per output row, ``(out, 1)`` or
    ``(out, 1, 1, 1)`` (LyCORIS ``wd_on_out=True``), or per input column ``(1, in)`` (``False``)."""
    targets = targets or lycoris_targets(conv=False)
    path = write_locon(path, seed, rank=rank, alpha=alpha, targets=targets)
    from safetensors.torch import load_file
    sd = load_file(str(path))
    g = torch.Generator().manual_seed(seed + 1)
    for name, fin, fout, k in targets:
        rest = (1, 1) if k else ()
        shape = (fout, 1, *rest) if on_output else (1, fin, *rest)
        sd[f"{name}.dora_scale"] = torch.rand(*shape, generator=g) + 0.25
    return _save_lycoris(path, sd, "lora", rank, alpha)
