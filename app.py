"""Hugging Face Spaces / local entry point: settings -> engine -> web app -> launch.

Nothing heavy happens here: the engine opens the catalog and builds pipelines on first use.
Gradio's own variables are honoured (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, ...); Stylus'
settings come from STYLUS_* variables (see README).
"""
from __future__ import annotations

from catalog.settings import quiet_environment

quiet_environment()  # before gradio, litellm and chromadb are imported


def main() -> None:
    from stylus_ui.web import build_app, configure_logging

    configure_logging()
    demo, launch_kwargs = build_app()
    demo.launch(**launch_kwargs)


if __name__ == "__main__":
    main()
