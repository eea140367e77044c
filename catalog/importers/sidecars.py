"""The files A1111/ComfyUI extensions keep next to an adapter, read defensively.

- ``NAME.civitai.info``: the Civitai model-*version* JSON (Civitai Helper and friends),
- ``NAME.json``: A1111's user metadata (description, activation text, preferred weight, ...),
- ``NAME.png`` / ``NAME.preview.png`` / ``.jpg`` ...: preview images.
Every path is resolved and must stay inside the imported folder; anything else is refused
with a notice (symlinks or sidecars pointing at ``../secret`` and the like).
"""
from __future__ import annotations

import html
import json
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nh3

from catalog.card import MAX_INT, ExampleImage, normalize_base_model

MAX_SIDECAR_BYTES = 20 * 1024 * 1024
PREVIEW_SUFFIXES = (".preview.png", ".png", ".preview.jpg", ".jpg", ".preview.jpeg", ".jpeg",
                    ".preview.webp", ".webp")
_A1111_SD_VERSION = {"sd1": "SD 1.5", "sd2": "SD 2.x", "sdxl": "SDXL 1.0"}
_LORA_TAG = re.compile(r"<lora:([^:>]+):([-+]?\d*\.?\d+)[^>]*>", re.I)


@dataclass
class Sidecars:
    """What the sidecars of one adapter file say; empty fields when a sidecar is absent."""
    civitai: dict[str, Any] = field(default_factory=dict)  # the version JSON
    a1111: dict[str, Any] = field(default_factory=dict)
    previews: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def version_id(self) -> int | None:
        return _as_int(self.civitai.get("id"))

    @property
    def model_id(self) -> int | None:
        return _as_int(self.civitai.get("modelId"))

    @property
    def model(self) -> dict[str, Any]:
        m = self.civitai.get("model")
        return m if isinstance(m, dict) else {}

    def base_model(self) -> str:
        """Civitai's baseModel, else A1111's "sd version"; "" when neither says."""
        if self.civitai.get("baseModel"):
            return str(self.civitai["baseModel"])
        sd = str(self.a1111.get("sd version", "")).strip().lower()
        return _A1111_SD_VERSION.get(sd, "")

    def trigger_words(self) -> list[str]:
        words = split_words(self.a1111.get("activation text", ""))
        trained = self.civitai.get("trainedWords")
        for w in trained if isinstance(trained, list) else []:
            w = str(w).strip().strip(",").strip()
            if w and w not in words:
                words.append(w)
        return words

    def preferred_weight(self) -> float | None:
        """A1111 stores 0 for "not set"."""
        try:
            w = float(self.a1111.get("preferred weight", 0) or 0)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
            return None
        return w or None

    def description(self) -> str:
        return str(self.a1111.get("description") or self.model.get("description")
                   or self.civitai.get("description") or "")

    def tags(self) -> list[str]:
        raw = self.model.get("tags")
        tags = [str(t.get("name") or "") if isinstance(t, dict) else str(t) for t in _as_list(raw)]
        return list(dict.fromkeys(t.strip() for t in tags if t.strip()))


def safe_inside(path: Path, root: Path) -> bool:
    """True when ``path`` (symlinks resolved) lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def read_sidecars(weight_file: Path, root: Path) -> Sidecars:
    """Collect the sidecars of ``weight_file`` (``NAME.*`` next to it)."""
    out = Sidecars()
    stem = weight_file.with_suffix("")
    info = _read_json(Path(f"{stem}.civitai.info"), root, out.notices)
    if info is not None:
        if "id" in info and _as_int(info["id"]) is None:
            out.notices.append(f"{stem}.civitai.info: version id {reprlib.repr(info['id'])} is not a whole "
                               f"number from 0 to {MAX_INT}; ignored")
        elif _as_int(info.get("id")) is None:
            out.notices.append(f"{stem}.civitai.info has no Civitai version id "
                               f"({str(info.get('error', 'no id field'))[:80]}); ignored")
        else:
            out.civitai = info
            if "modelId" in info and _as_int(info["modelId"]) is None:
                out.notices.append(f"{stem}.civitai.info: model id {reprlib.repr(info['modelId'])} is not a "
                                   f"whole number from 0 to {MAX_INT}; left out")
    a1111 = _read_json(Path(f"{stem}.json"), root, out.notices)
    if a1111 is not None:
        out.a1111 = a1111
    for suffix in PREVIEW_SUFFIXES:
        p = Path(f"{stem}{suffix}")
        if p.is_symlink() or p.exists():
            if not safe_inside(p, root):
                out.notices.append(f"preview {p} resolves outside {root} (path traversal); ignored")
            elif p.is_file():
                out.previews.append(p)
    return out


def _read_json(path: Path, root: Path, notices: list[str]) -> dict | None:
    if not (path.is_symlink() or path.exists()):
        return None
    if not safe_inside(path, root):
        notices.append(f"sidecar {path} resolves outside {root} (path traversal); ignored")
        return None
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            notices.append(f"sidecar {path} is {size} bytes (limit {MAX_SIDECAR_BYTES}); ignored")
            return None
        data = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except (OSError, json.JSONDecodeError) as exc:
        notices.append(f"sidecar {path} is not valid JSON ({exc}); ignored")
        return None
    except RecursionError:
        notices.append(f"sidecar {path} is JSON nested too deeply to read; ignored")
        return None
    except ValueError as exc:  # an integer of more than 4,300 digits
        notices.append(f"sidecar {path} cannot be read ({str(exc)[:120]}); ignored")
        return None
    if not isinstance(data, dict):
        notices.append(f"sidecar {path} holds a JSON {type(data).__name__}, not an object; ignored")
        return None
    return data


def civitai_examples(info: dict[str, Any], lora_name: str) -> list[ExampleImage]:
    """Example images of a Civitai version JSON, with this adapter's ``<lora:NAME:W>`` weight."""
    out = []
    for img in _as_list(info.get("images")):
        if not isinstance(img, dict):
            continue
        meta = img.get("meta") if isinstance(img.get("meta"), dict) else {}
        prompt = str(meta.get("prompt") or "")
        names, weight = lora_weights(prompt, lora_name)
        nsfw = img.get("nsfw")
        url = img.get("url")
        out.append(ExampleImage(
            url=url if isinstance(url, str) else None,
            width=_as_int(img.get("width")), height=_as_int(img.get("height")),
            nsfw=nsfw not in (None, False, "None", "none", ""), prompt=prompt,
            negative_prompt=str(meta.get("negativePrompt") or ""), lora_weight=weight, lora_names=names))
    return out


def lora_weights(prompt: str, lora_name: str) -> tuple[list[str], float | None]:
    """Every ``<lora:NAME:W>`` name in ``prompt`` and the weight given to ``lora_name``."""
    names, weight = [], None
    for name, w in _LORA_TAG.findall(prompt):
        names.append(name)
        if name.strip().lower() == lora_name.lower():
            weight = float(w)
    return names, weight


def clean_text(raw: str, limit: int = 20000) -> str:
    """HTML/markdown-ish author text as plain text: tags, scripts and entities removed."""
    text = nh3.clean(raw[: limit * 4], tags=set())
    text = html.unescape(re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text))
    return re.sub(r"\s+", " ", text).strip()[:limit]


def split_words(text: Any) -> list[str]:
    parts = [p.strip() for p in str(text or "").split(",")]
    return list(dict.fromkeys(p for p in parts if p))


def base_model_of(raw: str) -> str:
    return normalize_base_model(raw) if raw else "unknown"


def _as_list(value: Any) -> list:
    """A JSON list as is; anything else (a number, an object, a string) as no entries."""
    return value if isinstance(value, list) else []


def _as_int(value: Any) -> int | None:
    """A whole number 0..MAX_INT (an id, a size) from an int or a string of digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_INT:
        return value
    return None
