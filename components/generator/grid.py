"""An XYZ-style labelled grid: one cell per image, each under a label that says which adapters it
used at which applied weights; the base model's image is marked (dark label, coloured frame).

Labels are wrapped to the cell width, never truncated. The font is Pillow's bundled one
(``ImageFont.load_default(size=...)``), so the grid is drawn the same way offline.
"""
from __future__ import annotations

import math
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from components.types import GenerationResult, Variant

BASELINE_LABEL = "base model, no adapters"
MIN_CELL_WIDTH = 256  # small images (the preview model's) get a cell wide enough to read a label
PAD = 8
_LABEL = ("#f3f3f3", "#111111")  # background, text
_MARKED = ("#3b2f8f", "#ffffff")  # the base model's label
_FRAME = "#3b2f8f"


def variant_label(variant: Variant | None, names: dict[str, str]) -> str:
    """``#1: Corgi Dog 0.36, Watercolor 0.72`` (adapter names at their applied weights), or
    :data:`BASELINE_LABEL` for the base model's image (``variant`` None)."""
    if variant is None:
        return BASELINE_LABEL
    active = [f"{names.get(cid, cid)} {w:.2f}" for cid, w in variant.weights.items() if w]
    return f"#{variant.index}: " + (", ".join(active) if active else "no adapters")


def result_grid(result: GenerationResult, names: dict[str, str]) -> tuple[Image.Image, list[str]]:
    """A result's labelled grid, the base model's image first (marked), and its labels."""
    cells = ([result.baseline] if result.baseline is not None else []) + list(result.images)
    labels = [variant_label(i.variant, names) for i in cells]
    marked = [0] if result.baseline is not None else []
    return labelled_grid([i.image for i in cells], labels, marked=marked), labels


def labelled_grid(images: Sequence[Image.Image], labels: Sequence[str], columns: int | None = None,
                  marked: Sequence[int] = ()) -> Image.Image:
    """``images`` in rows of ``columns`` (default: near-square), each with its label above it.

    ``marked``: indices of images to set apart (the base model's): a dark label and a frame."""
    if not images:
        raise ValueError("labelled_grid needs at least one image")
    if len(labels) != len(images):
        raise ValueError(f"labelled_grid got {len(images)} images and {len(labels)} labels")
    columns = max(1, min(columns or math.ceil(math.sqrt(len(images))), len(images)))
    rows = math.ceil(len(images) / columns)
    image_w, image_h = max(i.width for i in images), max(i.height for i in images)
    cell_w = max(image_w, MIN_CELL_WIDTH)
    font = ImageFont.load_default(size=max(14, cell_w // 28))
    ascent, descent = font.getmetrics()
    line_h = ascent + descent + 2
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [wrap_text(str(label), font, cell_w - 2 * PAD, measure) for label in labels]
    # every label of a grid row gets that row's tallest label band, so the images line up
    band = [max(len(wrapped[k]) for k in range(r * columns, min((r + 1) * columns, len(images)))) * line_h
            + 2 * PAD for r in range(rows)]
    width = columns * cell_w + (columns + 1) * PAD
    height = sum(band) + rows * image_h + (rows + 1) * PAD
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    top = PAD
    for r in range(rows):
        for c in range(columns):
            k = r * columns + c
            if k >= len(images):
                break
            left = PAD + c * (cell_w + PAD)
            background, ink = _MARKED if k in marked else _LABEL
            draw.rectangle([left, top, left + cell_w - 1, top + band[r] - 1], fill=background)
            for n, line in enumerate(wrapped[k]):
                draw.text((left + PAD, top + PAD + n * line_h), line, font=font, fill=ink)
            image = images[k].convert("RGB")
            x = left + (cell_w - image.width) // 2
            y = top + band[r] + (image_h - image.height) // 2
            grid.paste(image, (x, y))
            if k in marked:  # a frame in the padding around the cell: it covers no pixel of the image
                edge = PAD // 2
                right, bottom = left + cell_w - 1 + edge, top + band[r] + image_h - 1 + edge
                draw.rectangle([left - edge, top - edge, right, bottom], outline=_FRAME, width=edge - 1)
        top += band[r] + image_h + PAD
    return grid


def wrap_text(text: str, font: ImageFont.FreeTypeFont, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """``text`` as lines no wider than ``width`` pixels: at spaces, and inside a word only when
    the word alone is wider (every character is kept)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=font) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:  # a word wider than the cell: break it between characters
                if line and draw.textlength(line + char, font=font) > width:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines
