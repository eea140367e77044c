"""A1111-style ``parameters`` text in PNGs (written and parsed back) and an image grid.

The format is the one A1111, Civitai, sd-parsers and most tools read::

    PROMPT <lora:ALIAS:W> ...
    Negative prompt: NEGATIVE
    Steps: 20, Sampler: Euler, CFG scale: 7.0, Seed: 1, Size: 512x512, Model hash: 6ce0161689,
    Model: m, Lora hashes: "a: 0123456789ab, b: ...", Hashes: {"model": "...", "lora:a": "..."},
    Civitai resources: [{"type": "lora", "weight": 0.8, "modelVersionId": 123}]

(the pairs are one line). ``Lora hashes`` carries A1111's LoRA short hash (AutoV3,
``catalog.lora_file.autov3_of_file``), ``Model hash`` the checkpoint's (first 10 hex digits of its
SHA256); A1111 matches a pasted prompt's adapters to local files by them. ``Hashes`` is the JSON form
Civitai's A1111 extension writes (Civitai and sd-parsers read it); ``Civitai resources`` lists the
adapters with a known Civitai version id, which Civitai links an uploaded image to.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from catalog.card import slug
from ground.atomic_files import atomic_path

# A1111's own pattern for "key: value" pairs (values may be double-quoted), plus the raw JSON
# objects and lists A1111 writes for dict/list values (``Hashes``, ``Civitai resources``), which
# Civitai reads as ``{[^}]+}`` and ``\[[^\]]+\]``.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|\{[^{}]*\}|\[[^\[\]]*\]|[^,]*)(?:,|$)')
NEGATIVE = "Negative prompt: "
# what Civitai's parser matches as a name in <lora:NAME:W>; catalog.card.slug keeps exactly these
ALIAS_RE = re.compile(r"[A-Za-z0-9_.-]+")


def _quote(value: object) -> str:
    """A value as A1111's infotext writes it: a dict or list as JSON; a string with a comma, colon
    or line break as a JSON string (A1111 reads it back with ``json.loads``). A string with a double
    quote is quoted too, so a value that starts and ends with one reads back unchanged."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if not any(c in text for c in ',:\n"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value, strict=False))
        except ValueError:  # not JSON after all: keep it as written (as A1111 does)
            return value
    return value


def lora_aliases(names: Mapping[str, str]) -> dict[str, str]:
    """``{key: lora_name}`` -> ``{key: alias}`` for ``<lora:ALIAS:W>`` tags: only the characters
    Civitai's parser matches (``[A-Za-z0-9_.-]``, others become ``_``), the same for the same name
    every time. Names that would collide within one image all get ``_`` and six hex digits of their
    key's SHA256, so each alias stays unique and still does not depend on the order."""
    base = {key: slug(name, 100) for key, name in names.items()}
    counts = Counter(base.values())
    return {key: alias if counts[alias] == 1 else
            f"{alias}_{hashlib.sha256(key.encode('utf-8')).hexdigest()[:6]}"
            for key, alias in base.items()}


def lora_tags(weights: dict[str, float]) -> str:
    """``{alias: weight}`` -> ``<lora:ALIAS:W>`` tags (A1111 extra networks syntax)."""
    return " ".join(f"<lora:{name}:{round(w, 3):g}>" for name, w in weights.items())


def format_parameters(prompt: str, negative: str, settings: dict[str, object],
                      lora_hashes: dict[str, str] | None = None,
                      civitai_resources: list[dict[str, Any]] | None = None) -> str:
    """Prompt line(s), an optional negative line, then one line of ``Key: value`` pairs.

    ``lora_hashes``: alias -> AutoV3, written as ``Lora hashes`` and, with ``settings["Model
    hash"]``, as the ``Hashes`` JSON; ``civitai_resources``: ``{"type", "weight", "modelVersionId"}``
    per adapter, written last (Civitai cuts it out of the line before reading the rest)."""
    items = dict(settings)
    hashes: dict[str, str] = {}
    if items.get("Model hash"):
        hashes["model"] = str(items["Model hash"])
    if lora_hashes:
        items["Lora hashes"] = ", ".join(f"{n}: {h}" for n, h in lora_hashes.items())
        hashes.update({f"lora:{n}": h for n, h in lora_hashes.items()})
    if hashes:
        items["Hashes"] = hashes
    if civitai_resources:
        items["Civitai resources"] = civitai_resources
    pairs = ", ".join(f"{k}: {_quote(v)}" for k, v in items.items() if v not in (None, ""))
    lines = [prompt.strip()]
    if negative.strip():
        lines.append(NEGATIVE + negative.strip())
    lines.append(pairs)
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, object]:
    """The inverse of :func:`format_parameters`: prompt, negative prompt, every pair (as text),
    ``lora_hashes`` ({alias: hash}), ``loras`` ({alias: weight} from the prompt's tags),
    ``hashes`` (the ``Hashes`` JSON) and ``civitai_resources`` (that JSON list)."""
    lines = text.strip().split("\n")
    last = lines[-1] if len(_PARAM_RE.findall(lines[-1])) >= 3 else ""
    body = lines[:-1] if last else lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in body:
        if line.startswith(NEGATIVE):
            in_negative = True
            line = line[len(NEGATIVE):]
        (negative_lines if in_negative else prompt_lines).append(line)
    out: dict[str, object] = {"prompt": "\n".join(prompt_lines), "negative_prompt": "\n".join(negative_lines)}
    for key, value in _PARAM_RE.findall(last):
        out[key.strip()] = _unquote(value.strip())
    hashes = str(out.get("Lora hashes", ""))
    out["lora_hashes"] = dict(p.split(": ", 1) for p in hashes.split(", ") if ": " in p)
    out["loras"] = {m.group(1): float(m.group(2))
                    for m in re.finditer(r"<lora:([^:>]+):([-0-9.]+)>", str(out["prompt"]))}
    out["hashes"] = _json_value(out.get("Hashes"), dict)
    out["civitai_resources"] = _json_value(out.get("Civitai resources"), list)
    return out


def _json_value(value: object, kind: type) -> Any:
    """A raw JSON pair value decoded, or an empty ``kind`` when absent or not that JSON."""
    try:
        decoded = json.loads(str(value)) if value else kind()
    except ValueError:
        return kind()
    return decoded if isinstance(decoded, kind) else kind()


def save_png(image: Image.Image, path: Path, parameters: str) -> Path:
    info = PngInfo()
    info.add_text("parameters", parameters)
    path = Path(path)
    with atomic_path(path) as tmp:  # a unique temporary name, renamed when complete
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def read_png_parameters(path: Path) -> str:
    with Image.open(path) as im:
        return im.info.get("parameters", "")


def make_grid(images: list[Image.Image], columns: int | None = None, pad: int = 4,
              background: str = "white") -> Image.Image:
    """All images in rows of ``columns`` (default: near-square), each cell the largest size."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    cw, ch = max(i.width for i in images), max(i.height for i in images)
    grid = Image.new("RGB", (columns * cw + (columns + 1) * pad, rows * ch + (rows + 1) * pad), background)
    for n, img in enumerate(images):
        r, c = divmod(n, columns)
        grid.paste(img.convert("RGB"), (pad + c * (cw + pad), pad + r * (ch + pad)))
    return grid
