"""Image plumbing of the web tabs: PNGs with A1111 metadata, and masks from the brush editor."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ground.atomic_files import atomic_path


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
    with atomic_path(path) as tmp:  # the gallery never serves a half-written PNG
        item.image.save(tmp, format="PNG", pnginfo=info)
    return str(path)


def to_rgb(image: Any, size: tuple[int, int], what: str, settings: Any = None) -> Image.Image:
    """An upload (file path, array or PIL image) as RGB at ``size``; files are checked against the
    upload limits of ``settings`` (size in MB, pixel count) before they are decoded."""
    if image is None:
        raise ValueError(f"no {what} given: upload an image first")
    if isinstance(image, (str, Path)) or isinstance(image, Image.Image):
        from components.api import to_image
        image = to_image(image, what, **_limits(settings))
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8))
    if not isinstance(image, Image.Image):
        raise ValueError(f"{what} is not an image (got {type(image).__name__})")
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _limits(settings: Any) -> dict[str, int]:
    if settings is None:
        return {}
    return {"max_pixels": settings.max_upload_pixels, "max_bytes": settings.max_upload_mb * 2**20}


def editor_to_image_and_mask(value: Any, size: tuple[int, int],
                             settings: Any = None) -> tuple[Image.Image, Image.Image]:
    """An ImageEditor/ImageMask value -> (init image, mask: white = repaint), both at ``size``."""
    if not isinstance(value, dict) or value.get("background") is None:
        raise ValueError("no image to inpaint: upload an image in the editor, then paint the mask")
    if isinstance(value["background"], (str, Path)):
        from components.api import to_image
        value = {**value, "background": to_image(value["background"], "image", **_limits(settings))}
    background = np.asarray(value["background"])
    limit = _limits(settings).get("max_pixels")
    if limit and background.shape[0] * background.shape[1] > limit:
        raise ValueError(f"image is {background.shape[1]}x{background.shape[0]} pixels; the limit is "
                         f"{limit:,} pixels (setting STYLUS_MAX_UPLOAD_PIXELS); resize it first")
    painted = np.zeros(background.shape[:2], dtype=bool)
    for i, layer in enumerate(value.get("layers") or [], 1):
        layer = np.asarray(layer)
        if layer.shape[:2] != painted.shape:
            raise ValueError(f"mask layer {i} is {layer.shape[1]}x{layer.shape[0]} but the image is "
                             f"{painted.shape[1]}x{painted.shape[0]}; paint the mask on the image in the editor "
                             f"(or upload a mask of the same size)")
        if layer.ndim == 3 and layer.shape[2] == 4:
            painted |= layer[..., 3] > 0
        elif layer.ndim == 2 or (layer.ndim == 3 and layer.shape[2] in (1, 3)):
            painted |= (layer if layer.ndim == 2 else layer.max(axis=2)) > 127  # white = repaint
    if not painted.any():
        raise ValueError("the mask is empty: paint over the part of the image to repaint with the brush")
    init = to_rgb(background[..., :3] if background.ndim == 3 else background, size, "image")
    mask = Image.fromarray((painted * 255).astype(np.uint8), mode="L").resize(size, Image.Resampling.NEAREST)
    return init, mask
