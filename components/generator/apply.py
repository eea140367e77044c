"""Activate one variant's adapters for the length of a ``with`` block, then restore the base.

Two ways, chosen by ``Settings.adapter_mode``:

The adapters are peft tuner layers of any kind: LoRA/LoCon from diffusers' loader, LoHa, LoKr and
DoRA from ``lycoris.py``; peft nests one kind inside another on a shared layer, and everything here
works on the innermost base layer.

- ``fused`` (default): ``set_adapters`` then ``fuse_lora`` merges the variant's adapters into
  the base weights, so denoising costs what the base model costs. On exit the adapters are
  unfused and every touched base weight is copied back from a snapshot taken before the first
  fuse, so the base is restored bit for bit (unfusing alone leaves rounding residue).
- ``unfused``: ``set_adapters`` only changes LoRA scalings; base weights are never touched, but
  every step pays for the extra low-rank matmuls.

``finally`` always restores the base and disables the LoRA layers, even when the pipeline call
raised, so the next request (or the baseline image) starts from the base model.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import torch

from ground.choices import ADAPTER_MODES
_SNAPSHOT_ATTR = "_stylus_base_snapshot"


@contextmanager
def active_adapters(pipe, weights: dict[str, float], mode: str = "fused") -> Iterator[None]:
    """``weights``: peft adapter name -> scale. Empty: the base model (all LoRA layers off)."""
    if mode not in ADAPTER_MODES:
        raise ValueError(f"adapter mode {mode!r} is not one of {', '.join(ADAPTER_MODES)}")
    lists = pipe.get_list_adapters()
    loaded = set(lists.get("unet", [])) | set(lists.get("text_encoder", []))
    unknown = sorted(set(weights) - loaded)
    if unknown:
        raise KeyError(f"adapters {unknown} are not loaded; loaded: {sorted(loaded)}")
    fused = False
    fused_in: list[str] = []
    try:
        if weights and loaded:
            pipe.enable_lora()
            pipe.set_adapters(list(weights), adapter_weights=[float(w) for w in weights.values()])
            if mode == "fused":
                _snapshot_base(pipe)
                fused = True
                fused_in = [c for c in _components(pipe) if set(weights) & set(lists.get(c, []))]
                pipe.fuse_lora(components=fused_in, lora_scale=1.0, adapter_names=list(weights))
        elif loaded:
            pipe.disable_lora()
        yield
    finally:
        if fused:
            with warnings.catch_warnings():  # peft warns for every layer none of this variant merged
                warnings.filterwarnings("ignore", message="Already unmerged")
                pipe.unfuse_lora(components=fused_in)
            _restore_base(pipe)
        if loaded:
            pipe.disable_lora()


def _components(pipe) -> list[str]:
    return [name for name in ("unet", "text_encoder") if getattr(pipe, name, None) is not None]


def _lora_layers(pipe):
    """``(key, innermost base layer)`` once per adapted layer. The key is the path of the outermost
    peft wrapper, which stays the layer's own path when another adapter kind nests around it."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for comp in _components(pipe):
        seen: set[int] = set()
        for name, module in getattr(pipe, comp).named_modules():
            if not isinstance(module, BaseTunerLayer):
                continue
            base = module.get_base_layer()
            if id(base) not in seen and isinstance(getattr(base, "weight", None), torch.Tensor):
                seen.add(id(base))
                yield f"{comp}.{name}", base


@torch.no_grad()
def _snapshot_base(pipe) -> None:
    """Copy the base weight of every LoRA-wrapped layer once (new layers as adapters arrive).

    Taken only while nothing is fused, so the copies are the pristine base."""
    snap: dict[str, torch.Tensor] = getattr(pipe, _SNAPSHOT_ATTR, None) or {}
    for key, base in _lora_layers(pipe):
        if key not in snap:
            snap[key] = base.weight.detach().clone()
    setattr(pipe, _SNAPSHOT_ATTR, snap)


@torch.no_grad()
def _restore_base(pipe) -> None:
    snap: dict[str, torch.Tensor] = getattr(pipe, _SNAPSHOT_ATTR, None) or {}
    for key, base in _lora_layers(pipe):
        saved = snap.get(key)
        if saved is not None:
            base.weight.copy_(saved)


def base_is_clean(pipe) -> bool:
    """True when no LoRA is fused into the base weights (what ``active_adapters`` guarantees)."""
    return not getattr(pipe, "num_fused_loras", 0)
