"""The "Image translation" tab: an input image, re-imagined under the prompt and the adapters."""
from __future__ import annotations

from typing import TYPE_CHECKING

from functools import partial

import gradio as gr

from stylus_ui.web.assets import example_image_path
from stylus_ui.web.generation import Panel, build_panel
from stylus_ui.web.images import to_rgb
from stylus_ui.web.uploads import checked

if TYPE_CHECKING:
    from components.api import StylusEngine


def _extra(settings) -> list:
    example = example_image_path()
    image = checked(gr.Image(label="Input image (resized to width x height)", type="filepath", height=260,
                     elem_id="img2img-image", sources=["upload", "clipboard"],
                     value=str(example) if example else None), "input image", settings)
    strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength (how much to change)",
                         elem_id="img2img-strength")
    return [image, gr.State(None), strength]


def _read(settings, size, image, editor, strength) -> dict:
    """The upload arrives as a file: checked against the upload limits before it is decoded."""
    return {"init_image": to_rgb(image, size, "input image", settings), "strength": float(strength)}


def build_image_translation(engine: StylusEngine) -> Panel:
    return build_panel(engine, "img2img", partial(_extra, engine.settings), partial(_read, engine.settings))
