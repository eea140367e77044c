"""Read and classify an adapter file before anything is loaded into the pipeline.

This module decides how to load and apply a file; ``catalog/lora_file.py`` identifies a file
(header, type, base model, hashes) without loading it, and is what this module builds on.

Answers "can this be loaded as an SD-1.5 adapter, and by which loader?" from the keys and shapes
alone, so bad files (corrupt, truncated, pickled, SDXL, input-axis DoRA) are refused with a message
naming the file and the reason instead of failing deep inside the loader. LoRA and LoCon go to
diffusers' ``load_lora_weights``; LoHa, LoKr and kohya DoRA to ``lycoris.load_lycoris`` (peft).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from catalog.lora_file import (PICKLE_SUFFIXES, SafetensorsHeader, base_family, detect_adapter_type,
                               detect_base_model, input_width, read_prefix, safetensors_data_start,
                               unloadable_reason)
from ground.errors import StylusError

_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class AdapterFileError(StylusError, ValueError):
    """The file cannot be used as an SD-1.5 LoRA; the message says why."""


class ModelMismatchError(AdapterFileError):
    """A valid LoRA made for another text-encoder width (SD 1.5 file on the preview model, ...)."""

    def __init__(self, message: str, width: int):
        super().__init__(message)
        self.width = width


@dataclass
class LoraFile:
    path: Path
    shapes: dict[str, tuple[int, ...]]
    format: str  # kohya | diffusers | peft (diffusers loads these) | lycoris (LoHa, LoKr, DoRA: peft)
    state_dict: dict[str, torch.Tensor] | None = None  # only for (allowed) pickles
    metadata: dict[str, str] = field(default_factory=dict)
    adapter_type: str = "LoRA"  # LoRA | LoCon | LoHa | LoKr | DoRA | other (catalog detection)


def read_lora_file(path: Path, *, allow_pickle: bool, cross_attention_dim: int) -> LoraFile:
    """Load the tensors of ``path`` and check they form an SD-1.5 LoRA for this pipeline."""
    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(f"{path.name}: file not found at {path}")
    head = read_prefix(path)
    # A safetensors header length can begin with a pickle protocol byte pair (640 = b"\x80\x02..."):
    # the JSON brace after the 8-byte length tells the two apart.
    safetensors_like = safetensors_data_start(head) is not None
    is_pickle = path.suffix.lower() in PICKLE_SUFFIXES or (
        head.startswith(_PICKLE_MAGIC) and not safetensors_like)
    if is_pickle and not allow_pickle:
        raise AdapterFileError(
            f"{path.name}: pickled checkpoint refused (pickles can run code); use a .safetensors "
            f"file or set STYLUS_ALLOW_PICKLE=1 if you trust it")
    metadata: dict[str, str] = {}
    state: dict[str, torch.Tensor] | None = None
    try:
        if is_pickle:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in (loaded if isinstance(loaded, dict) else {}).items()
                     if isinstance(v, torch.Tensor)}
            shapes = {k: tuple(v.shape) for k, v in state.items()}
        else:
            shapes = _safetensors_shapes(path, metadata)
    except Exception as exc:  # safetensors/torch raise many types for damaged files
        raise AdapterFileError(f"{path.name}: not a readable adapter file (corrupt or truncated: "
                               f"{type(exc).__name__}: {str(exc)[:120]})") from exc
    if not shapes:
        raise AdapterFileError(f"{path.name}: holds no tensors")
    fmt = classify_keys(path.name, shapes, cross_attention_dim, metadata)
    return LoraFile(path=path, shapes=shapes, format=fmt, state_dict=state, metadata=metadata,
                    adapter_type=detect_adapter_type(shapes))


def _safetensors_shapes(path: Path, metadata: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """Header only, no tensor data read; safetensors checks the header against the file size,
    so a truncated file fails here. This is the safetensors library's own reader, the library that
    loads the tensors later (``adapters.py``)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        metadata.update(f.metadata() or {})
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def classify_keys(name: str, state: dict[str, tuple[int, ...]], cross_attention_dim: int,
                  metadata: dict[str, str] | None = None) -> str:
    """Return the format, or raise with the reason the file is not an SD-1.5 LoRA for this model.

    Type and base model come from the catalog's key/shape detection, so import and load agree.
    """
    adapter_type = detect_adapter_type(state)
    reason = unloadable_reason(adapter_type, state)
    if reason:
        raise AdapterFileError(f"{name}: {reason}")
    base, evidence = detect_base_model(SafetensorsHeader(metadata=metadata or {}, shapes=state))
    if base_family(base) == "SDXL":
        raise AdapterFileError(f"{name}: SDXL LoRA ({evidence}); this pipeline is SD 1.5")
    keys = list(state)
    if adapter_type == "other" and not any("lora" in k.lower() for k in keys):
        raise AdapterFileError(f"{name}: no LoRA keys (first keys: {', '.join(keys[:3])}); "
                               f"not a LoRA file")
    _check_context_width(name, state, cross_attention_dim)
    if adapter_type in ("LoHa", "LoKr") or any(k.endswith(".dora_scale") for k in keys):
        return "lycoris"  # kohya DoRA; a peft-format DoRA (lora_magnitude_vector) goes to diffusers
    if any(k.startswith(("lora_unet_", "lora_te_")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "peft"
    return "diffusers"


def _check_context_width(name: str, shapes: dict[str, tuple[int, ...]], width: int) -> None:
    """Cross-attention key projections take the text encoder width: 768 for SD 1.5."""
    for key, shape in shapes.items():
        if "attn2_to_k" not in key.replace(".", "_"):
            continue
        found = _input_features(key, shape, shapes)
        if found is not None and found != width:
            hint = {1024: " (SD 2.x)", 2048: " (SDXL)", 768: " (SD 1.5)"}.get(found, "")
            raise ModelMismatchError(
                f"{name}: made for a text-encoder width of {found}{hint}; this model "
                f"uses {width}", found)


def _input_features(key: str, shape: tuple[int, ...], shapes: dict[str, tuple[int, ...]]) -> int | None:
    """In-features of a Linear layer as a LoRA/LoHa/LoKr tensor shows them (None: not such a tensor).

    LoRA and LoHa: the catalog's ``input_width``; LoKr splits ``in`` into ``lokr_w1`` (or ``_w1_b``)
    columns times ``lokr_w2`` (or ``_w2_b``) columns."""
    if len(shape) == 2 and input_width(key, shape) is not None:
        return shape[1]
    if key.endswith((".lokr_w1", ".lokr_w1_b")) and len(shape) == 2:
        module = key.rsplit(".", 1)[0]
        w2 = shapes.get(f"{module}.lokr_w2") or shapes.get(f"{module}.lokr_w2_b")
        return shape[1] * w2[1] if w2 is not None and len(w2) == 2 else None
    return None
