"""LoRA files for the tiny preview model, written the way real tools write them.

- ``write_kohya``: kohya/A1111/Civitai keys (``lora_unet_<module path>.lora_down.weight``, ...).
- ``write_peft``: the diffusers/peft format, made with peft's ``add_adapter`` and
  ``StableDiffusionPipeline.save_lora_weights`` (as in ENVIRONMENT.md).
Bad files (SDXL, LoHa, pickles, truncated) come from ``tests/fakes/lora_files.py``.
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
