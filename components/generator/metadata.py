"""A1111-style ``parameters`` text in PNGs (written and parsed back) and an image grid.

The format is the one A1111, Civitai and most tools read::

    PROMPT <lora:NAME:W>
    Negative prompt: NEGATIVE
    Steps: 20, Sampler: Euler, CFG scale: 7.0, Seed: 1, Size: 512x512, Model: m, Lora hashes: "a: h1, b: h2"
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from components.atomic_files import atomic_path

# A1111's own pattern for "key: value" pairs (values may be double-quoted).
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
NEGATIVE = "Negative prompt: "


def _quote(value: str) -> str:
    if "," not in value and ":" not in value and '"' not in value and "\n" not in value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), inner)
    return value


def lora_tags(weights: dict[str, float]) -> str:
    """``{lora_name: weight}`` -> ``<lora:NAME:W>`` tags (A1111 extra networks syntax)."""
    return " ".join(f"<lora:{name}:{round(w, 3):g}>" for name, w in weights.items())


def format_parameters(prompt: str, negative: str, settings: dict[str, object],
                      lora_hashes: dict[str, str] | None = None) -> str:
    """Prompt line(s), an optional negative line, then one line of ``Key: value`` pairs."""
    items = dict(settings)
    if lora_hashes:
        items["Lora hashes"] = ", ".join(f"{n}: {h}" for n, h in lora_hashes.items())
    pairs = ", ".join(f"{k}: {_quote(str(v))}" for k, v in items.items() if v not in (None, ""))
    lines = [prompt.strip()]
    if negative.strip():
        lines.append(NEGATIVE + negative.strip())
    lines.append(pairs)
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, object]:
    """The inverse of :func:`format_parameters`: prompt, negative prompt, every pair, and
    ``lora_hashes`` / ``loras`` ({name: weight} from the prompt's tags)."""
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
    return out


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
