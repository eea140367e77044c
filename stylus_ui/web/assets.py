"""Files in ``assets/``: stylesheet, logo, example image and mask, prompt presets."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def css() -> str:
    path = ASSETS / "style.css"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


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
