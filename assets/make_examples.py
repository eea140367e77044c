"""Writes assets/example.png (a simple landscape) and assets/example_mask.png (white = repaint).

Run from the repository root: ``python assets/make_examples.py``. Deterministic: drawn shapes
only, no model, no downloaded data.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
HERE = Path(__file__).resolve().parent


def landscape() -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(img)
    for y in range(SIZE):  # sky gradient
        t = y / SIZE
        draw.line([(0, y), (SIZE, y)], fill=(int(90 + 120 * t), int(150 + 70 * t), int(235 - 40 * t)))
    draw.ellipse((170, 30, 220, 80), fill=(255, 226, 120))  # sun
    draw.polygon([(0, 180), (70, 95), (140, 180)], fill=(88, 104, 128))  # mountains
    draw.polygon([(90, 180), (170, 80), (256, 180)], fill=(70, 86, 110))
    draw.polygon([(150, 105), (170, 80), (190, 105)], fill=(240, 244, 250))  # snow cap
    draw.rectangle((0, 175, SIZE, SIZE), fill=(84, 150, 80))  # meadow
    draw.rectangle((96, 196, 160, 240), fill=(180, 90, 60))  # a small house
    draw.polygon([(90, 198), (128, 168), (166, 198)], fill=(120, 50, 40))
    return img.filter(ImageFilter.SMOOTH)


def mask() -> Image.Image:
    """The house and the sky above it: a region worth repainting."""
    m = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(m).rounded_rectangle((84, 150, 172, 246), radius=12, fill=255)
    return m


def main() -> None:
    landscape().save(HERE / "example.png", optimize=True)
    mask().save(HERE / "example_mask.png", optimize=True)
    print(f"wrote {HERE / 'example.png'} and {HERE / 'example_mask.png'}")


if __name__ == "__main__":
    main()
