"""``catalog index``: bring the retrieval index up to date (incremental, with a progress bar)."""
from __future__ import annotations

import argparse

from stylus_ui.cli.common import add_common, settings_from_args


def register(catalog_sub: argparse._SubParsersAction) -> None:
    q = catalog_sub.add_parser(
        "index", help="build or update the retrieval index (only changed cards are re-embedded)",
        description="Index the catalog for retrieval: sparse BM25 over names, tags, trigger words, "
                    "refined text and example prompts, and card embeddings in chromadb. Cards that "
                    "have no refined fields yet are refined offline first.")
    q.add_argument("--rebuild", action="store_true",
                   help="drop the index (also one built with another embedding model) and build it again")
    q.add_argument("--no-refine", action="store_true", help="do not run the offline refiner first")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common(q)
    q.set_defaults(func=_index)


def _index(args: argparse.Namespace) -> int:
    from components.api import StylusEngine

    engine = StylusEngine(settings_from_args(args))
    for line in engine.build_index(rebuild=args.rebuild, refine=not args.no_refine, progress=not args.no_progress):
        print(line)
    return 0
