"""Read and classify an adapter file before anything is loaded into the pipeline.

Answers "can diffusers load this as an SD-1.5 LoRA?" from the keys and shapes alone, so bad
files (corrupt, truncated, pickled, SDXL, LoHa/LoKr, DoRA) are refused with a message naming the
file and the reason instead of failing deep inside the loader.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from catalog.lora_file import (SafetensorsHeader, base_family, detect_adapter_type,
                               detect_base_model, sha256_file)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class AdapterFileError(ValueError):
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
    format: str  # kohya | diffusers | peft
    state_dict: dict[str, torch.Tensor] | None = None  # only for (allowed) pickles
    metadata: dict[str, str] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    return sha256_file(path)


def read_lora_file(path: Path, *, allow_pickle: bool, cross_attention_dim: int) -> LoraFile:
    """Load the tensors of ``path`` and check they form an SD-1.5 LoRA for this pipeline."""
    path = Path(path)
    if not path.is_file():
        raise AdapterFileError(f"{path.name}: file not found at {path}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    is_pickle = path.suffix.lower() in PICKLE_SUFFIXES or head.startswith(_PICKLE_MAGIC)
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
    return LoraFile(path=path, shapes=shapes, format=fmt, state_dict=state, metadata=metadata)


def _safetensors_shapes(path: Path, metadata: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """Header only, no tensor data read; safetensors checks the header against the file size,
    so a truncated file fails here."""
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
    if adapter_type in ("LoHa", "LoKr"):
        raise AdapterFileError(f"{name}: {adapter_type} adapter; diffusers cannot load {adapter_type}")
    if adapter_type == "DoRA":
        raise AdapterFileError(f"{name}: DoRA adapter (dora_scale/magnitude keys); not supported here")
    base, evidence = detect_base_model(SafetensorsHeader(metadata=metadata or {}, shapes=state))
    if base_family(base) == "SDXL":
        raise AdapterFileError(f"{name}: SDXL LoRA ({evidence}); this pipeline is SD 1.5")
    keys = list(state)
    if adapter_type == "other" and not any("lora" in k.lower() for k in keys):
        raise AdapterFileError(f"{name}: no LoRA keys (first keys: {', '.join(keys[:3])}); "
                               f"not a LoRA file")
    _check_context_width(name, state, cross_attention_dim)
    if any(k.startswith(("lora_unet_", "lora_te_")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "peft"
    return "diffusers"


def _check_context_width(name: str, shapes: dict[str, tuple[int, ...]], width: int) -> None:
    """Cross-attention key projections take the text encoder width: 768 for SD 1.5."""
    for key, shape in shapes.items():
        k = key.replace(".", "_")
        is_down = ("lora_down" in k or "lora_A" in k) and len(shape) == 2
        if is_down and "attn2_to_k" in k and shape[1] != width:
            hint = {1024: " (SD 2.x)", 2048: " (SDXL)", 768: " (SD 1.5)"}.get(shape[1], "")
            raise ModelMismatchError(
                f"{name}: made for a text-encoder width of {shape[1]}{hint}; this model "
                f"uses {width}", shape[1])
