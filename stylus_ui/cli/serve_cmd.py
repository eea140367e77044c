"""``serve``: start the web app (the same app as ``python app.py``)."""
from __future__ import annotations

import argparse

from stylus_ui.cli.common import add_common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the web app",
                       description="Start the Stylus web app (Gradio). Host and port default to "
                                   "$GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT, else 127.0.0.1:7860.")
    p.add_argument("--host", default=None, help="interface to listen on, e.g. 0.0.0.0 for a LAN")
    p.add_argument("--port", type=int, default=None, help="port (default 7860, or the next free one)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    add_common(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from catalog.settings import Settings
    from stylus_ui.web import serve

    serve(Settings.from_env(catalog_dir=args.catalog), server_name=args.host, server_port=args.port,
          share=args.share or None)
    return 0
