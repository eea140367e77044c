"""The "About / Settings" tab: which model, catalog and composer are active."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import gradio as gr

from stylus_ui.web import render
from stylus_ui.web.errors import user_errors

if TYPE_CHECKING:
    from components.api import StylusEngine

ABOUT = """
### How Stylus works
1. **Retrieve**: the prompt is matched against the adapter catalog (card text, tags, trigger
   words and example prompts); the best candidates are listed with why they matched.
2. **Compose**: the prompt is split into keyword topics and a few adapters are assigned to each.
   The mapping table is editable: change weights, drop adapters, add any catalog adapter.
3. **Generate**: masks switch adapters on and off per topic, giving a grid of diverse variants;
   the base model's image sits alongside for comparison. Click an image for its settings and
   the A1111 `<lora:NAME:W>` prompt; PNGs carry the same text as metadata.

After *Stylus: Automatic Adapter Selection for Diffusion Models* (Luo et al., 2024,
arXiv:2404.18928). The API (`select`, `compose`, `generate`) is listed under "Use via API".
"""


def build_about(engine: StylusEngine) -> gr.Markdown:
    """Builds the tab; returns the status widget so the app can fill it after start-up."""
    status = gr.Markdown(render.status_markdown(engine.status()), elem_id="about-status")
    refresh = gr.Button("Refresh", size="sm")
    gr.Markdown(ABOUT)
    refresh.click(user_errors(partial(full_status, engine)), None, [status], api_visibility="undocumented")
    return status


def full_status(engine: StylusEngine) -> str:
    """The configuration as it runs: device and dtype resolved (``auto`` -> cpu/cuda/mps, float32/16)."""
    from components.api import resolve_device
    status = dict(engine.status())
    status["cards"] = engine.catalog.stats().get("cards")
    try:
        device, dtype = resolve_device(engine.settings)
        status["resolved"] = {"device": device, "dtype": str(dtype).removeprefix("torch.")}
    except Exception as exc:  # a device that is not there: say so instead of the setting
        status["resolved"] = {"device": f"unavailable ({exc})", "dtype": "-"}
    return render.status_markdown(status)
