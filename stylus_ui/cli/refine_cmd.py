"""``catalog refine``: write each card's refined description, category and weight.

Offline (default, deterministic, no network) or, with ``--vlm MODEL``, through any litellm
model (cached by card content hash: a re-run or a run after a kill asks only for what is left).
"""
from __future__ import annotations

import argparse

from stylus_ui.cli.common import add_common, settings_from_args


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
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} must be at least 1")
    settings = settings_from_args(args)
    from catalog.store import CatalogStore

    with CatalogStore(settings.catalog_dir) as store:
        if args.vlm is None:
            return _offline(args, store)
        return _vlm(args, settings, store)


def _vlm(args: argparse.Namespace, settings, store) -> int:
    from components.refiner.vlm import VlmRefiner

    from stylus_ui.cli.common import secret_arg
    overrides = {k: v for k, v in (("llm_api_base", args.api_base), ("llm_api_key", secret_arg(args.api_key)))
                 if v is not None}
    refiner = VlmRefiner.from_settings(settings.replace(**overrides), model=args.vlm,
                                       concurrency=args.concurrency, max_retries=args.max_retries)
    cards = [c for c in store.iter_cards("blocked=0", order="download_count DESC, id") if refiner.needs_refine(c)]
    if args.limit is not None:
        cards = cards[: args.limit]
    report = refiner.refine(cards, store=store, progress=not args.no_progress)
    print(report.summary())
    for card_id, reason in report.failed[:50]:
        print(f"  failed {card_id}: {reason}")
    for notice in [n for n in report.notices if not n.startswith("skipped ")][:50]:
        print(f"  notice: {notice}")
    return 0


def _offline(args: argparse.Namespace, store) -> int:
    # components/refiner/offline.py is written alongside the retriever: one call over the store
    try:
        from components.refiner.offline import refine_store
    except ImportError as exc:
        from ground.errors import StylusError
        raise StylusError(f"the offline refiner is not available ({exc}); use --vlm MODEL") from None

    report = refine_store(store, limit=args.limit, progress=not args.no_progress)
    print(report.summary())
    for notice in getattr(report, "notices", [])[:50]:
        print(f"  notice: {notice}")
    return 0
