"""Image plumbing of the web tabs: PNGs with A1111 metadata, and masks from the brush editor."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo


def save_png(item, out_dir: Path) -> str:
    """Write a GeneratedImage as PNG with its ``parameters`` text chunk; returns the path.

    The generator's own file is reused when it wrote one."""
    if getattr(item, "path", None) and Path(item.path).is_file() and str(item.path).endswith(".png"):
        return str(item.path)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    if item.parameters:
        info.add_text("parameters", item.parameters)
    kind = "base" if item.variant is None else f"v{item.variant.index}"
    path = out_dir / f"stylus-{uuid.uuid4().hex[:10]}-{kind}-seed{item.seed}.png"
    item.image.save(path, pnginfo=info)
    return str(path)


def to_rgb(image: Any, size: tuple[int, int], what: str) -> Image.Image:
    if image is None:
        raise ValueError(f"no {what} given: upload an image first")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8))
    if not isinstance(image, Image.Image):
        raise ValueError(f"{what} is not an image (got {type(image).__name__})")
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def editor_to_image_and_mask(value: Any, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """An ImageEditor/ImageMask value -> (init image, mask: white = repaint), both at ``size``."""
    if not isinstance(value, dict) or value.get("background") is None:
        raise ValueError("no image to inpaint: upload an image in the editor, then paint the mask")
    background = np.asarray(value["background"])
    painted = np.zeros(background.shape[:2], dtype=bool)
    for layer in value.get("layers") or []:
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[2] == 4 and layer.shape[:2] == painted.shape:
            painted |= layer[..., 3] > 0
    if not painted.any():
        raise ValueError("the mask is empty: paint over the part of the image to repaint with the brush")
    init = to_rgb(background[..., :3] if background.ndim == 3 else background, size, "image")
    mask = Image.fromarray((painted * 255).astype(np.uint8), mode="L").resize(size, Image.Resampling.NEAREST)
    return init, mask
