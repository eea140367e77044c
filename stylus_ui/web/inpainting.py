"""The "Inpainting" tab: paint a mask over an image; only the painted part is regenerated."""
from __future__ import annotations

from typing import TYPE_CHECKING

from functools import partial

import gradio as gr

from stylus_ui.web.assets import example_image_path
from stylus_ui.web.generation import Panel, build_panel
from stylus_ui.web.images import editor_to_image_and_mask
from stylus_ui.web.uploads import checked

if TYPE_CHECKING:
    from components.api import StylusEngine


def _extra(settings) -> list:
    example = example_image_path()
    # the editor's toolbar covers its own label: the instruction sits above it instead
    gr.Markdown("**Image and mask**: upload an image, then paint white over the part to repaint.",
                elem_id="inpaint-help")
    editor = checked(gr.ImageMask(
        label="Image and mask", show_label=False, type="numpy", height=320,
        elem_id="inpaint-editor", sources=["upload", "clipboard"], layers=False,
        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
        value={"background": str(example), "layers": [], "composite": str(example)} if example else None),
        "image", settings)
    strength = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Strength inside the mask",
                         elem_id="inpaint-strength")
    return [gr.State(None), editor, strength]


def _read(settings, size, image, editor, strength) -> dict:
    init, mask = editor_to_image_and_mask(editor, size, settings)
    return {"init_image": init, "mask_image": mask, "strength": float(strength)}


def build_inpainting(engine: StylusEngine) -> Panel:
    return build_panel(engine, "inpaint", partial(_extra, engine.settings), partial(_read, engine.settings))
