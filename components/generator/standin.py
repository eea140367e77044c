"""Stand-in LoRAs for the preview model: real kohya-format files, generated from a card id.

With the untrained preview model, real adapter files cannot apply (wrong shapes) and usually are
not on disk. So that the variant grid still shows real composition behaviour offline, each card
gets a deterministic random LoRA shaped for the preview model, written in the kohya/A1111 key
format and loaded through the same path as a downloaded file. Never used with a real model.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import save_file

from ground.atomic_files import atomic_path

STANDIN_RANK = 4
STANDIN_VERSION = "1"  # part of the file name: a recipe change gives new files
_UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
_TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def standin_seed(card_id: str) -> int:
    return int.from_bytes(hashlib.sha256(card_id.encode("utf-8")).digest()[:8], "big")


def _linear_modules(model: torch.nn.Module, targets: tuple[str, ...]):
    """Projection layers by their base name; with LoRAs already loaded, peft wraps each one and
    the original ``nn.Linear`` sits in ``.base_layer``."""
    for name, module in model.named_modules():
        if not any(name.endswith("." + t) for t in targets):
            continue
        linear = getattr(module, "base_layer", module)
        if isinstance(linear, torch.nn.Linear):
            yield name, linear


def standin_state_dict(pipe, card_id: str, rank: int = STANDIN_RANK) -> dict[str, torch.Tensor]:
    """kohya keys (``lora_unet_<path>.lora_down.weight`` etc.) for every attention projection."""
    gen = torch.Generator().manual_seed(standin_seed(card_id))
    out: dict[str, torch.Tensor] = {}
    groups = (("lora_unet_", pipe.unet, _UNET_TARGETS, 1.0),
              ("lora_te_", pipe.text_encoder, _TE_TARGETS, 0.5))
    for prefix, model, targets, scale in groups:
        for name, module in _linear_modules(model, targets):
            key = prefix + name.replace(".", "_")
            down = torch.randn(rank, module.in_features, generator=gen) / module.in_features ** 0.5
            up = torch.randn(module.out_features, rank, generator=gen) * scale
            out[f"{key}.lora_down.weight"] = down.contiguous()
            out[f"{key}.lora_up.weight"] = up.contiguous()
            out[f"{key}.alpha"] = torch.tensor(float(rank))
    if not out:
        raise RuntimeError("no attention projections found for a stand-in LoRA")
    return out


def standin_path(cache_dir: Path, card_id: str) -> Path:
    digest = hashlib.sha256(card_id.encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir) / "loras" / "stand-in" / f"standin-v{STANDIN_VERSION}-{digest}.safetensors"


def ensure_standin(pipe, cache_dir: Path, card_id: str) -> Path:
    """Write the card's stand-in file once (atomically) and return its path."""
    path = standin_path(cache_dir, card_id)
    if path.is_file():
        return path
    with atomic_path(path) as tmp:  # unique per writer: two requests may build the same card
        save_file(standin_state_dict(pipe, card_id), str(tmp),
                  metadata={"stylus_stand_in": card_id, "ss_network_dim": str(STANDIN_RANK)})
    return path
