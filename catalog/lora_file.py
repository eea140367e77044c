"""Inspect an adapter file without loading it: safetensors header, adapter type, base model, hashes.

The safetensors format is an 8-byte little-endian header length, a JSON header
(``{tensor name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}``) and the raw
tensor bytes. Only the header is read here; tensors are never loaded and pickles are
never unpickled. The importers and the generator share these functions, the one reader of the
header's layout and the one SHA256 of a file.
This module identifies a file; ``components/generator/lora_keys.py`` decides how to load and apply it.
"""
from __future__ import annotations

import hashlib
import json
import math
import reprlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .card import normalize_base_model
from .store import CatalogError

if TYPE_CHECKING:
    from .store import CatalogStore

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".bin", ".pth")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
PREFIX_BYTES = 9  # the 8-byte header length and the header's first character
# Adapter types no file of which can be loaded. LoRA and LoCon load through diffusers' kohya
# conversion; LoHa, LoKr and kohya DoRA through peft (components/generator/lycoris.py). Some files
# of a loadable type still cannot be: ``unloadable_reason`` says which and why.
UNLOADABLE_TYPES: tuple[str, ...] = ()


class LoraFileError(CatalogError):
    """A file is not a readable adapter file; the message names the file and the reason."""


@dataclass
class SafetensorsHeader:
    """The JSON header of a safetensors file: tensor shapes/dtypes and the string metadata."""
    metadata: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, header: Any, where: str) -> "SafetensorsHeader":
        if not isinstance(header, dict):
            raise LoraFileError(f"{where}: safetensors header is {type(header).__name__}, not a JSON object")
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise LoraFileError(f"{where}: __metadata__ is {type(meta).__name__}, not an object of strings")
        shapes, dtypes = {}, {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
                raise LoraFileError(f"{where}: tensor {name!r} has no shape in the header")
            if not all(_is_count(d) for d in info["shape"]):
                raise LoraFileError(f"{where}: tensor {name!r} has shape {_shown(info['shape'])}; "
                                    "expected a list of whole numbers, none negative")
            shapes[name] = tuple(info["shape"])
            dtypes[name] = str(info.get("dtype", ""))
        return cls(metadata={str(k): str(v) for k, v in meta.items()}, shapes=shapes, dtypes=dtypes)


@dataclass
class LoraInfo:
    """What a file says about itself (from its header only)."""
    header: SafetensorsHeader
    adapter_type: str  # LoRA | LoCon | LoHa | LoKr | DoRA | other
    base_model: str  # normalised ("SD 1.5", "SD 2.x", "SDXL 1.0") or "unknown"
    base_model_evidence: str  # why: "text encoder width 768", "ss_base_model_version=sd_v1", ...

    @property
    def metadata(self) -> dict[str, str]:
        return self.header.metadata

    @property
    def output_name(self) -> str:
        return self.metadata.get("ss_output_name", "").strip()

    @property
    def network_dim(self) -> int | None:
        return _int_or_none(self.metadata.get("ss_network_dim"))

    @property
    def network_alpha(self) -> float | None:
        try:
            return float(self.metadata["ss_network_alpha"])
        except (KeyError, ValueError):
            return None

    def tag_frequency(self) -> Counter:
        """Kohya's ``ss_tag_frequency`` ({dataset dir: {tag: count}}) summed over directories."""
        raw = self.metadata.get("ss_tag_frequency", "")
        try:
            dirs = json.loads(raw) if raw else {}
        except (ValueError, RecursionError):  # broken JSON, a 5,000-digit number, deep nesting
            return Counter()
        total: Counter = Counter()
        for tags in (dirs.values() if isinstance(dirs, dict) else []):
            if isinstance(tags, dict):
                for tag, n in tags.items():
                    if isinstance(n, (int, float)) and math.isfinite(n):
                        total[str(tag).strip()] += int(n)
        return total

    def top_tags(self, n: int = 3) -> list[str]:
        return [t for t, _ in self.tag_frequency().most_common(n) if t]


def read_prefix(path: str | Path) -> bytes:
    """The first ``PREFIX_BYTES`` of ``path`` (fewer for a shorter file): enough to tell a
    safetensors file from others with ``safetensors_data_start``."""
    with Path(path).open("rb") as fh:
        return fh.read(PREFIX_BYTES)


def header_length(prefix: bytes) -> int:
    """The JSON header's length in bytes: a safetensors file's first 8 bytes, little-endian."""
    return int.from_bytes(prefix[:8], "little")


def safetensors_data_start(prefix: bytes) -> int | None:
    """Where the tensor data starts (8 + header length) when ``prefix`` (a file's first bytes, see
    ``read_prefix``) begins like a safetensors file: an 8-byte length, then the JSON header's ``{``.
    None when it does not (a pickle, an empty or other file); the length itself is not checked."""
    if len(prefix) < PREFIX_BYTES or prefix[8:9] != b"{":
        return None
    return 8 + header_length(prefix)


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Read and validate the header of ``path`` without touching the tensor data."""
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise LoraFileError(f"{path}: {size} bytes is too short for a safetensors file (truncated or empty)")
    with path.open("rb") as fh:
        n = header_length(fh.read(8))
        if n == 0 or n > MAX_HEADER_BYTES or n > size - 8:
            raise LoraFileError(
                f"{path}: header length {n} does not fit a file of {size} bytes; "
                "not a safetensors file or truncated")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoraFileError(f"{path}: safetensors header is not valid JSON ({exc}); "
                            "not a safetensors file or corrupted") from None
    except (RecursionError, ValueError) as exc:  # ValueError: an integer of more than 4,300 digits
        why = "nested too deeply" if isinstance(exc, RecursionError) else f"unreadable ({str(exc)[:120]})"
        raise LoraFileError(f"{path}: safetensors header is JSON {why}; "
                            "not a safetensors file or corrupted") from None
    parsed = SafetensorsHeader.from_json(header, str(path))
    _check_offsets(header, size - 8 - n, path)
    return parsed


def _check_offsets(header: dict, data_bytes: int, path: Path) -> None:
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            raise LoraFileError(f"{path}: tensor {name!r} has invalid data_offsets {_shown(offsets)}; "
                                "expected [begin, end], whole numbers with 0 <= begin <= end")
        end = max(end, offsets[1])
    if end > data_bytes:
        raise LoraFileError(f"{path}: truncated: the header needs {end} bytes of tensor data, "
                            f"the file has {data_bytes}")


def check_format(path: str | Path, allow_pickle: bool = False) -> str:
    """'safetensors' or 'pickle'; refuses pickles unless ``allow_pickle`` and unknown suffixes."""
    suffix = Path(path).suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return "safetensors"
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise LoraFileError(
                f"{path}: {suffix} is a pickle format, which can run arbitrary code when loaded; "
                "refused. Convert it to .safetensors, or opt in with allow_pickle / --allow-pickle "
                "(the file is then recorded, never unpickled for inspection)")
        return "pickle"
    raise LoraFileError(f"{path}: unsupported suffix {suffix!r}; expected .safetensors "
                        f"(or {', '.join(PICKLE_SUFFIXES)} with allow_pickle)")


def inspect_lora(path: str | Path) -> LoraInfo:
    """Header, adapter type and base model of a .safetensors adapter file."""
    return info_from_header(read_safetensors_header(path))


def info_from_header(header: SafetensorsHeader) -> LoraInfo:
    base, evidence = detect_base_model(header)
    return LoraInfo(header=header, adapter_type=detect_adapter_type(header.shapes),
                    base_model=base, base_model_evidence=evidence)


def detect_adapter_type(shapes: dict[str, tuple[int, ...]]) -> str:
    """LoRA / LoCon / LoHa / LoKr / DoRA / other, from key names (and conv kernel sizes)."""
    keys = list(shapes)
    if any(".hada_w1_a" in k for k in keys):
        return "LoHa"
    if any(".lokr_w1" in k for k in keys):
        return "LoKr"
    if any(k.endswith(".dora_scale") or "lora_magnitude_vector" in k or k.endswith(".magnitude")
           for k in keys):
        return "DoRA"
    downs = [k for k in keys if k.endswith((".lora_down.weight", ".lora_A.weight", ".lora.down.weight",
                                             "_lora.down.weight"))]
    if not downs:
        return "other"
    if any(len(shapes[k]) == 4 and shapes[k][2:] == (3, 3) for k in downs):
        return "LoCon"
    return "LoRA"


def unloadable_reason(adapter_type: str, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why a file of a loadable type cannot be loaded after all (from its shapes), or None.

    DoRA: peft keeps one magnitude per output row, LyCORIS' ``wd_on_out=True`` layout
    (``dora_scale`` of shape ``(out, 1)``); the older per-input-column layout ``(1, in)`` normalises
    another axis and has no peft equivalent."""
    if adapter_type in UNLOADABLE_TYPES:
        return f"{adapter_type} adapter: no loader for this type"
    if adapter_type == "DoRA":
        for key, shape in shapes.items():
            if key.endswith(".dora_scale") and len(shape) >= 2 and shape[0] == 1 and shape[1] > 1:
                return (f"DoRA adapter with per-input-column dora_scale ({key}: shape {list(shape)}, "
                        f"LyCORIS wd_on_out=False); only the per-output-row layout [out, 1] loads")
    return None


# (marker in key, family) for text encoders, checked before widths
_SDXL_KEY_MARKERS = ("lora_te2_", "text_encoder_2.", "lora_te1_")
_TE_WIDTH = {768: ("SD 1.5", "text encoder width 768 (SD 1.x)"),
             1024: ("SD 2.x", "text encoder width 1024 (SD 2.x)"),
             1280: ("SDXL 1.0", "text encoder width 1280 (SDXL)")}
_CONTEXT = {768: ("SD 1.5", "cross-attention context 768 (SD 1.x)"),
            1024: ("SD 2.x", "cross-attention context 1024 (SD 2.x)"),
            2048: ("SDXL 1.0", "cross-attention context 2048 (SDXL)")}


def detect_base_model(header: SafetensorsHeader) -> tuple[str, str]:
    """Base model from shapes first (they cannot lie), then from kohya metadata."""
    for key in header.shapes:
        if any(m in key for m in _SDXL_KEY_MARKERS):
            return "SDXL 1.0", f"SDXL text encoder key {key.split('.')[0]}"
    for key, shape in header.shapes.items():
        width = input_width(key, shape)
        if width is None:
            continue
        if _is_text_encoder_q(key) and width in _TE_WIDTH:
            return _TE_WIDTH[width]
        if _is_cross_attn_kv(key) and width in _CONTEXT:
            return _CONTEXT[width]
    return _base_from_metadata(header.metadata)


def _base_from_metadata(meta: dict[str, str]) -> tuple[str, str]:
    version = meta.get("ss_base_model_version", "").strip()
    if version:
        return normalize_base_model(version), f"ss_base_model_version={version}"
    if meta.get("ss_v2", "").lower() == "true":
        return "SD 2.x", "ss_v2=True"
    model = meta.get("ss_sd_model_name", "").lower()
    if "xl" in model:
        return "SDXL 1.0", f"ss_sd_model_name={meta['ss_sd_model_name']}"
    return "unknown", "no text-encoder or cross-attention key and no base model metadata"


def input_width(key: str, shape: tuple[int, ...]) -> int | None:
    """In-features of a down/A projection (the width of what the adapter reads)."""
    if key.endswith((".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight",
                     ".hada_w1_b", ".hada_w2_b")) and len(shape) >= 2:
        return shape[1]
    return None


def _is_text_encoder_q(key: str) -> bool:
    k = key.replace(".", "_")
    return ("lora_te" in k or "text_encoder" in k or "text_model" in k) and "q_proj" in k


def _is_cross_attn_kv(key: str) -> bool:
    k = key.replace(".", "_")
    return "attn2_to_k" in k or "attn2_to_v" in k or "attn2_processor_to_k" in k


def reconcile_base_model(file_base: str, evidence: str, declared_raw: str, declared: str,
                         notices: list[str]) -> str:
    """A declared base model (sidecar, model card) is more specific than shapes, unless the
    shapes say another architecture family: then the shapes win and a notice says so."""
    if not declared_raw:
        return file_base
    fam_file, fam_declared = base_family(file_base), base_family(declared)
    if fam_file and fam_declared and fam_file != fam_declared:
        notices.append(f"declared base model {declared_raw!r} but the file has {evidence}; using {file_base}")
        return file_base
    return declared


def base_family(base_model: str) -> str:
    """Architecture family: 'SD 1', 'SD 2', 'SDXL' or '' (unknown/other)."""
    b = base_model.lower()
    if b.startswith("sd 1"):
        return "SD 1"
    if b.startswith("sd 2"):
        return "SD 2"
    if b.startswith("sdxl") or b in ("pony", "illustrious", "noobai"):
        return "SDXL"
    return ""


# ---- hashes ------------------------------------------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20, start: int = 0) -> str:
    """Upper-case hex SHA256 of the file from byte ``start`` on (default: the whole file), streamed."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        fh.seek(start)
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest().upper()


def autov2_of(sha256: str) -> str:
    """AutoV2 as Civitai and A1111 show it: the first 10 hex digits of the SHA256, upper case."""
    return sha256[:10].upper()


def autov3_of_file(path: str | Path) -> str:
    """AutoV3, A1111's LoRA short hash (its "Lora hashes"): the first 12 hex digits, lower case as
    A1111 writes them, of the SHA256 of a safetensors file's bytes after its header (kohya's
    "addnet" hash: metadata edits leave it unchanged). Other files: of the whole file, as A1111."""
    start = safetensors_data_start(read_prefix(path)) or 0  # 0: not a safetensors file
    return sha256_file(path, start=start)[:12].lower()


def file_hashes(path: str | Path, store: "CatalogStore | None" = None) -> tuple[str, str]:
    """(SHA256, AutoV2) of ``path``; cached in ``store`` by path, size and mtime."""
    path = Path(path)
    if store is not None:
        cached = store.cached_file_hash(path)
        if cached is not None:
            return cached
    sha = sha256_file(path)
    if store is not None:
        store.store_file_hash(path, sha, autov2_of(sha))
    return sha, autov2_of(sha)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf", "1e400"
        return None


def _is_count(value: Any) -> bool:
    """A whole number, not negative (JSON true/false and floats are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shown(value: Any) -> str:
    """A header value in a message, cut short (a hostile header can be 100 MB, or deeply nested)."""
    return reprlib.repr(value)
