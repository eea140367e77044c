"""The Stylus web app: ``create_demo(engine) -> gr.Blocks``, one module per tab.

The engine is passed in; nothing here builds models or opens the catalog at import time.
``launch_kwargs()`` holds what Gradio 6 wants at ``launch()`` (theme, css). ``serve()`` launches
the app and then warms the engine up in the background, with a status line on the page.
"""
from __future__ import annotations

from functools import partial
from typing import Any, TYPE_CHECKING

import gradio as gr

from stylus_ui.web import render
from stylus_ui.web.about_tab import build_about, full_status
from stylus_ui.web.api import build_api
from stylus_ui.web.assets import css, logo_svg
from stylus_ui.web.catalog_tab import build_catalog, initial_values
from stylus_ui.web.errors import user_errors
from stylus_ui.web.image_translation import build_image_translation
from stylus_ui.web.inpainting import build_inpainting
from stylus_ui.web.text_to_image import build_text_to_image

if TYPE_CHECKING:
    from components.api import StylusEngine

TITLE = "Stylus: automatic adapter selection"


def create_demo(engine: StylusEngine) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.HTML(f'<div class="stylus-header">{logo_svg()}<div><h1>Stylus</h1>'
                f'<p>Type a prompt: Stylus retrieves LoRA adapters from the catalog, composes them per '
                f'keyword and renders a grid of variants beside the base model.</p></div></div>')
        if engine.status().get("preview_model"):
            gr.HTML(render.PREVIEW_BANNER, elem_id="preview-banner")
        startup_line = gr.Markdown(visible=False, elem_id="startup-status")
        startup_timer = gr.Timer(1.0)
        startup_timer.tick(partial(startup_status, engine), None, [startup_line, startup_timer],
                           show_progress="hidden", api_visibility="private")
        with gr.Tabs():
            with gr.Tab("Text to image", id="txt2img"):
                build_text_to_image(engine)
            with gr.Tab("Image translation", id="img2img"):
                build_image_translation(engine)
            with gr.Tab("Inpainting", id="inpaint"):
                build_inpainting(engine)
            with gr.Tab("Catalog", id="catalog"):
                catalog_widgets = build_catalog(engine, demo)
            with gr.Tab("About / Settings", id="about"):
                status = build_about(engine)
        build_api(engine)
        demo.load(user_errors(lambda: (*initial_values(engine), full_status(engine))), None,
                  [*catalog_widgets, status], api_visibility="undocumented")
    demo.queue(default_concurrency_limit=2)
    return demo


def startup_status(engine: StylusEngine) -> tuple[Any, gr.Timer]:
    """The start-up status line (engine.startup: "indexing the catalog: N%") while the engine
    warms up; once it is ready (or was never started: tests) the line hides and the timer stops."""
    line = engine.startup.line()
    return gr.Markdown(value=line, visible=bool(line)), gr.Timer(active=engine.startup.busy)


def launch_kwargs(settings) -> dict[str, Any]:
    """Theme and stylesheet (Gradio 6 takes them at launch()) and what the server may serve.

    Files: the output folder only (plus Gradio's own upload/cache folder); the catalog, the
    adapter/model cache and the home folder are refused even where they overlap it. Uploads:
    at most ``max_upload_mb``; PIL refuses decompression bombs above the pixel limit."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = settings.max_upload_pixels  # warn above, refuse above twice this
    blocked = [settings.catalog_dir, settings.cache_dir]
    if not _inside(settings.output_dir, settings.home):
        blocked.append(settings.home)
    return {"theme": gr.themes.Soft(primary_hue="violet", secondary_hue="sky"), "css": css(),
            "allowed_paths": [str(settings.output_dir)], "blocked_paths": [str(p) for p in blocked],
            "max_file_size": f"{settings.max_upload_mb}mb"}


def _inside(path, folder) -> bool:
    from pathlib import Path
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def configure_logging() -> None:
    """Stylus' own log lines (``stylus.*``: a refused request in one line, a fault with its
    traceback) go to stderr at INFO; other libraries keep Python's default (warnings and up)."""
    import logging
    logger = logging.getLogger("stylus")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def build_app(settings=None) -> tuple[gr.Blocks, dict[str, Any]]:
    """Settings (default: from the environment) -> engine -> Blocks, plus launch() arguments."""
    demo, kwargs, _ = _build(settings)
    return demo, kwargs


def serve(settings=None, **launch_options: Any) -> None:
    """Build and launch the app, then warm the engine up in the background (catalog, index,
    embedding model): the page answers at once and says how far the index is; blocks until the
    server stops. ``launch_options`` go to ``launch()`` (server_name, server_port, share)."""
    demo, kwargs, engine = _build(settings)
    demo.launch(prevent_thread_lock=True, **kwargs, **launch_options)
    engine.start_warm_up()
    demo.block_thread()


def _build(settings=None) -> tuple[gr.Blocks, dict[str, Any], Any]:
    """The Blocks, the launch() arguments and the engine behind them."""
    from catalog.settings import Settings
    from components.api import StylusEngine

    settings = settings or Settings.from_env()
    engine = StylusEngine(settings)
    return create_demo(engine), launch_kwargs(settings), engine
