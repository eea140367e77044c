"""Every check on a generation request in one place, before any work is done.

Each message names the bad value and what is allowed (the diffusers ``check_inputs`` style).
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, UnidentifiedImageError

from catalog.card import MAX_WEIGHT, MIN_WEIGHT
from components.limits import check_request
from components.types import GenerationRequest, StylusError, Variant
from ground.choices import MODES  # the numeric limits live in components.limits


DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_BYTES = 20 * 2**20


def to_image(value: Any, what: str, max_pixels: int = DEFAULT_MAX_PIXELS,
             max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """A PIL image from a PIL image, numpy array, path or bytes; anything else is refused.

    Files and bytes are checked before decoding: at most ``max_bytes``, and a header whose
    width x height is at most ``max_pixels`` (a small file can declare a huge image). A
    truncated or non-image file is refused with a message naming it."""
    if isinstance(value, Image.Image):
        _check_pixels(value.size, what, max_pixels)
        return value
    with _readable(what, max_pixels):
        if isinstance(value, (str, Path, bytes, bytearray)):
            with Image.open(_source(value, what, max_bytes)) as im:
                return _decode(im, what, max_pixels)
        if hasattr(value, "__array_interface__"):
            shape = getattr(value, "shape", (0, 0))
            _check_pixels((int(shape[1]) if len(shape) > 1 else 0, int(shape[0]) if shape else 0),
                          what, max_pixels)
            return Image.fromarray(value)
    raise StylusError(f"{what} must be an image, got {type(value).__name__}")


def _source(value: str | Path | bytes | bytearray | memoryview, what: str, max_bytes: int) -> Any:
    """What ``Image.open`` reads: a path or the bytes, after the byte limit is checked."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        _check_bytes(len(value), what, max_bytes)
        return io.BytesIO(bytes(value))
    _check_bytes(Path(value).stat().st_size, what, max_bytes)
    return value


@contextmanager
def _readable(what: str, max_pixels: int) -> Iterator[None]:
    """PIL's errors on a file that is too large or not an image, as messages naming ``what``."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise StylusError(f"{what} is too large to decode ({exc}); the limit is {max_pixels:,} "
                          f"pixels (setting STYLUS_MAX_UPLOAD_PIXELS)") from None
    except (UnidentifiedImageError, OSError, TypeError, ValueError, SyntaxError) as exc:
        raise StylusError(f"{what} is not an image that can be read ({type(exc).__name__}: {exc}); "
                          f"upload a PNG, JPEG or WebP file") from None


def _check_bytes(size: int, what: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise StylusError(f"{what} file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB "
                          f"(setting STYLUS_MAX_UPLOAD_MB)")


def _check_pixels(size: tuple[int, int], what: str, max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise StylusError(f"{what} is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,} pixels "
                          f"(setting STYLUS_MAX_UPLOAD_PIXELS); resize it first")


def _decode(im: Image.Image, what: str, max_pixels: int) -> Image.Image:
    _check_pixels(im.size, what, max_pixels)  # from the header, before any pixel is decoded
    im.load()  # a truncated file fails here ("image file is truncated")
    return im.copy()


def probe_image(value: str | Path | bytes, what: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[int, int]:
    """Width and height of an image file (or its bytes) read from its header only: the byte and
    pixel limits are checked and a non-image is refused before anything decodes the pixels."""
    with _readable(what, max_pixels), Image.open(_source(value, what, max_bytes)) as im:
        _check_pixels(im.size, what, max_pixels)
        return im.size


def check_inputs(request: GenerationRequest, variants: list[Variant] | None,
                 cards: dict[str, Any], max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> GenerationRequest:
    """Validate ``request``; return it with images converted (init RGB, mask L)."""
    r = request
    if r.mode not in MODES:
        raise StylusError(f"mode {r.mode!r} is not known; use one of {', '.join(MODES)}")
    check_request(r)  # texts and numbers: the limits every entry shares
    if r.mode != "txt2img":
        _check_images(r, max_pixels, max_bytes)
    if variants is None and r.composition is not None and r.composition.adapter_ids():
        raise StylusError("the request has a composition but no variants: the generator applies "
                          "variants (StylusEngine.generate draws them from the composition)")
    _check_variants(variants, cards)
    return r


def _check_images(r: GenerationRequest, max_pixels: int, max_bytes: int) -> None:
    if int(r.steps * float(r.strength)) < 1:
        raise StylusError(f"steps {r.steps} with strength {r.strength} run no denoising step in "
                          f"{r.mode} (steps x strength must be at least 1); raise steps or strength")
    if r.init_image is None:
        raise StylusError(f"mode {r.mode} needs an init image; upload one")
    r.init_image = to_image(r.init_image, "init image", max_pixels, max_bytes).convert("RGB")
    if r.mode == "inpaint":
        if r.mask_image is None:
            raise StylusError("mode inpaint needs a mask image (white = repaint); draw or upload one")
        r.mask_image = to_image(r.mask_image, "mask image", max_pixels, max_bytes).convert("L")
        if r.mask_image.size != r.init_image.size:
            raise StylusError(f"mask size {r.mask_image.size[0]}x{r.mask_image.size[1]} differs from "
                              f"image size {r.init_image.size[0]}x{r.init_image.size[1]}; they must match")


def _check_variants(variants: list[Variant] | None, cards: dict[str, Any]) -> None:
    for v in variants or []:
        for card_id, weight in v.weights.items():
            if card_id not in cards:
                known = ", ".join(sorted(cards)[:10]) or "none"
                raise StylusError(f"variant {v.index}: adapter id {card_id!r} is not in the catalog "
                                  f"(known here: {known})")
            if not MIN_WEIGHT <= float(weight) <= MAX_WEIGHT:
                raise StylusError(f"variant {v.index}: weight {weight} of {card_id!r} is outside "
                                  f"[{MIN_WEIGHT:g}, {MAX_WEIGHT:g}]")
