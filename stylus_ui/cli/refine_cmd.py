"""``catalog refine``: write each card's refined description, category and weight.

Offline (default, deterministic, no network) or, with ``--vlm MODEL``, through any litellm
model (cached by card content hash: a re-run or a run after a kill asks only for what is left).
"""
from __future__ import annotations

import argparse

from stylus_ui.cli.common import add_common, secret_arg, settings_from_args


def register(catalog_sub: argparse._SubParsersAction) -> None:
    q = catalog_sub.add_parser(
        "refine", help="refine cards: offline by default, or with a (vision) LLM through litellm",
        description="Refine cards. Without --vlm the offline refiner runs; with --vlm a litellm model "
                    "(e.g. openai/gpt-4o-mini, ollama/llava) is asked, with $STYLUS_LLM_API_BASE, "
                    "$STYLUS_LLM_API_KEY and $STYLUS_LLM_TIMEOUT as defaults.")
    q.add_argument("--vlm", nargs="?", const="", default=None, metavar="MODEL",
                   help="litellm model string; --vlm alone uses $STYLUS_LLM_MODEL")
    q.add_argument("--api-base", default=None, metavar="URL", help="endpoint (default: $STYLUS_LLM_API_BASE)")
    q.add_argument("--api-key", default=None, help="API key (default: $STYLUS_LLM_API_KEY or the provider's own variable)")
    q.add_argument("--limit", type=int, default=None, metavar="N",
                   help="refine at most N cards that need it (most downloaded first)")
    q.add_argument("--concurrency", type=int, default=4, metavar="N", help="parallel requests (default %(default)s)")
    q.add_argument("--max-retries", type=int, default=3, metavar="N", help="retries per card (default %(default)s)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common(q)
    q.set_defaults(func=_refine)


def _refine(args: argparse.Namespace) -> int:
    from components.api import StylusEngine

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} must be at least 1")
    engine = StylusEngine(settings_from_args(args), seed_catalog=False)  # as before: refine what is there
    report = engine.refine(vlm=args.vlm, limit=args.limit, concurrency=args.concurrency,
                           max_retries=args.max_retries, api_base=args.api_base,
                           api_key=secret_arg(args.api_key), progress=not args.no_progress)
    print(report.summary())
    notices = report.notices
    if args.vlm is not None:  # a model's run: the cards it failed on; "skipped" notices are routine
        for card_id, reason in report.failed[:50]:
            print(f"  failed {card_id}: {reason}")
        notices = [n for n in notices if not n.startswith("skipped ")]
    for notice in notices[:50]:
        print(f"  notice: {notice}")
    return 0
