"""Activate one variant's adapters for the length of a ``with`` block, then restore the base.

Adapters stay *unfused*: ``set_adapters`` only changes LoRA scalings, so the base weights are
never modified and cannot drift. ``finally`` always disables the LoRA layers again, even when the
pipeline call raised, so the next request (or the baseline image) starts from the base model.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def active_adapters(pipe, weights: dict[str, float]) -> Iterator[None]:
    """``weights``: peft adapter name -> scale. Empty: the base model (all LoRA layers off)."""
    loaded = set(pipe.get_list_adapters().get("unet", [])) | set(
        pipe.get_list_adapters().get("text_encoder", []))
    unknown = sorted(set(weights) - loaded)
    if unknown:
        raise KeyError(f"adapters {unknown} are not loaded; loaded: {sorted(loaded)}")
    try:
        if weights and loaded:
            pipe.enable_lora()
            pipe.set_adapters(list(weights), adapter_weights=[float(w) for w in weights.values()])
        elif loaded:
            pipe.disable_lora()
        yield
    finally:
        if loaded:
            pipe.disable_lora()


def base_is_clean(pipe) -> bool:
    """True when no LoRA is fused into the base weights (what ``active_adapters`` guarantees)."""
    return not getattr(pipe, "num_fused_loras", 0)
