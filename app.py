"""Hugging Face Spaces / local entry point: settings -> engine -> web app -> launch.

Nothing heavy happens at import: after launch the engine opens (seeds) the catalog and builds
its index in a background thread (the page shows the progress); pipelines load on first use.
Gradio's own variables are honoured (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, ...); Stylus'
settings come from STYLUS_* variables (see README).
"""
from __future__ import annotations

from catalog.settings import quiet_environment

quiet_environment()  # before gradio, litellm and chromadb are imported


def main() -> None:
    from stylus_ui.web import configure_logging, serve

    configure_logging()
    serve()


if __name__ == "__main__":
    main()
