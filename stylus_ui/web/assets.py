"""Files in ``assets/``: stylesheet, logo, example image and mask, prompt presets."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"


# Readable results: gallery captions wrap instead of ending in "...", and the mapping's long
# adapter names wrap inside their column so the weight columns stay in view.
READABLE_CSS = """
.stylus-gallery .caption-label { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; max-width: none !important; overflow-wrap: anywhere; }
.stylus-grid .image-frame { padding-top: 2.75rem; }  /* the grid's first labels below the block label */
[id$="-mapping"] td span, [id$="-mapping"] th span { white-space: normal; overflow-wrap: anywhere; }
"""


def css() -> str:
    path = ASSETS / "style.css"
    return (path.read_text(encoding="utf-8") if path.is_file() else "") + READABLE_CSS


def logo_svg() -> str:
    path = ASSETS / "logo.svg"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def example_image_path() -> Path | None:
    path = ASSETS / "example.png"
    return path if path.is_file() else None


def example_mask_path() -> Path | None:
    path = ASSETS / "example_mask.png"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def prompt_presets() -> list[str]:
    path = ASSETS / "presets.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [str(p) for p in data.get("prompts", [])]
