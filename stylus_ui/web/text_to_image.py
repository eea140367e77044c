"""The "Text to image" tab."""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from stylus_ui.web.assets import prompt_presets
from stylus_ui.web.generation import Panel, build_panel

if TYPE_CHECKING:
    from components.api import StylusEngine


def _no_extra() -> list:
    return [gr.State(None), gr.State(None), gr.State(None)]


def _read(size, image, editor, strength) -> dict:
    return {}


def build_text_to_image(engine: StylusEngine) -> Panel:
    return build_panel(engine, "txt2img", _no_extra, _read, examples=prompt_presets())
