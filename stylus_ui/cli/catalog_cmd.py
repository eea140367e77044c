"""``catalog`` subcommands: import, identify, list, show, stats, block/unblock, edit, index."""
from __future__ import annotations

import argparse
import json

from catalog.search import CardQuery
from catalog.service import CatalogService
from stylus_ui.cli.common import add_common, print_json, secret_arg, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="import, browse and curate the adapter catalog",
                       description="Import, browse and curate the adapter catalog.")
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)

    imp = csub.add_parser("import", help="import adapters (civitai-file, civitai-api, folder, hf)")
    isub = imp.add_subparsers(dest="importer", metavar="SOURCE", required=True)

    q = isub.add_parser("civitai-file", help="a Civitai API dump: JSON array, JSONL, optionally .gz")
    q.add_argument("path")
    add_common(q)
    q.set_defaults(func=_import_civitai_file)

    q = isub.add_parser("civitai-api", help="live from the Civitai REST API (/api/v1/models, types=LORA)")
    q.add_argument("--base-url", default="https://civitai.com", help="API host (default %(default)s)")
    q.add_argument("--token", default=None, help="Civitai API token (default: $STYLUS_CIVITAI_TOKEN)")
    q.add_argument("--base-model", action="append", default=None,
                   help="base model filter, repeatable (default: $STYLUS_BASE_MODEL_FILTER, SD 1.5)")
    q.add_argument("--query", default=None, help="search text")
    q.add_argument("--limit", type=int, default=None, help="stop after this many models")
    q.add_argument("--restart", action="store_true", help="ignore saved progress and start from page one")
    add_common(q)
    q.set_defaults(func=_import_civitai_api)

    q = isub.add_parser("folder", help="a folder of LoRA files as A1111/ComfyUI keep them")
    q.add_argument("dir")
    q.add_argument("--allow-pickle", action="store_true",
                   help="also import .ckpt/.pt/.bin files (unsafe: pickles can run code)")
    add_common(q)
    q.set_defaults(func=_import_folder)

    q = isub.add_parser("hf", help="a Hugging Face model repository (hub id or local directory)")
    q.add_argument("repo", metavar="REPO_OR_DIR")
    add_common(q)
    q.set_defaults(func=_import_hf)

    q = csub.add_parser("identify", help="look up a folder's LoRA files on Civitai by SHA256 and fill their cards",
                        description="Hash each adapter file under DIR once (cached), look the hashes up with "
                                    "Civitai's by-hash API and import the cards with Civitai's facts and the "
                                    "local path. Unknown files keep the card their header describes. Answers "
                                    "are saved: a second run only asks about new files.")
    q.add_argument("dir")
    q.add_argument("--base-url", default="https://civitai.com", help="API host (default %(default)s)")
    q.add_argument("--token", default=None, help="Civitai API token (default: $STYLUS_CIVITAI_TOKEN)")
    q.add_argument("--workers", type=int, default=4, help="requests and hashes at a time, 1-16 (default %(default)s)")
    q.add_argument("--refresh", action="store_true", help="ask again about files already answered")
    q.add_argument("--offline", action="store_true", help="no lookups: saved answers and file headers only")
    q.add_argument("--allow-pickle", action="store_true",
                   help="also record .ckpt/.pt/.bin files (unsafe: pickles can run code)")
    add_common(q)
    q.set_defaults(func=_identify)

    q = csub.add_parser("list", help="list cards")
    q.add_argument("--base-model", default=None)
    q.add_argument("--blocked", action="store_true", help="only blocked cards")
    q.add_argument("--search", default=None, help="substring of the id, name, creator, tags or trigger words")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true")
    add_common(q)
    q.set_defaults(func=_list)

    q = csub.add_parser("show", help="show one card")
    q.add_argument("id")
    add_common(q)
    q.set_defaults(func=_show)

    q = csub.add_parser("stats", help="counts by base model, adapter type, flags and content rating")
    q.add_argument("--json", action="store_true")
    add_common(q)
    q.set_defaults(func=_stats)

    for name, blocked in (("block", True), ("unblock", False)):
        q = csub.add_parser(name, help=f"{name} a card (blocked cards are never retrieved)")
        q.add_argument("id")
        q.add_argument("--by", default="cli", help="editor name recorded with the edit")
        add_common(q)
        q.set_defaults(func=_block, blocked=blocked)

    q = csub.add_parser("edit", help="curate a card: --set FIELD=VALUE (JSON values allowed)")
    q.add_argument("id")
    q.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", required=True)
    q.add_argument("--by", default="cli")
    add_common(q)
    q.set_defaults(func=_edit)

    from stylus_ui.cli import refine_cmd  # catalog refine (offline or --vlm)
    refine_cmd.register(csub)

    try:
        from stylus_ui.cli import index_cmd
    except ImportError:
        return
    index_cmd.register(csub)


def _open(args: argparse.Namespace, seed: bool = True) -> CatalogService:
    """The catalog service; imports do not seed a new catalog with the starter cards (the user
    picks the source). Its policies (import roots, token and pickle defaults) are the web app's."""
    return CatalogService.open(settings_from_args(args), seed=seed)


def _report(report) -> int:
    print(report.summary())
    for item, reason in report.skipped[:50]:
        print(f"  skipped {item}: {reason}")
    if len(report.skipped) > 50:
        print(f"  ... and {len(report.skipped) - 50} more skipped")
    for notice in report.notices[:50]:
        print(f"  notice: {notice}")
    return 0


def _import_civitai_file(args):
    with _open(args, seed=False) as catalog:
        return _report(catalog.import_civitai_file(args.path, progress=True))


def _import_civitai_api(args):
    with _open(args, seed=False) as catalog:
        return _report(catalog.import_civitai_api(
            token=secret_arg(args.token), query=args.query, limit=args.limit, base_url=args.base_url,
            base_models=args.base_model, restart=args.restart, progress=True))


def _import_folder(args):
    _folder_import_allowed(args)
    with _open(args, seed=False) as catalog:
        return _report(catalog.import_folder(args.dir, allow_pickle=args.allow_pickle, progress=True))


def _identify(args):
    _folder_import_allowed(args)
    with _open(args, seed=False) as catalog:
        return _report(catalog.identify_folder(
            args.dir, base_url=args.base_url, token=secret_arg(args.token), offline=args.offline,
            refresh=args.refresh, workers=args.workers, allow_pickle=args.allow_pickle, progress=True))


def _folder_import_allowed(args) -> None:
    """The server-folder policy, checked before the catalog is opened (a refused import creates nothing)."""
    from catalog.importers.folder import allowed_roots
    allowed_roots(settings_from_args(args))


def _import_hf(args):
    with _open(args, seed=False) as catalog:
        return _report(catalog.import_hf(args.repo, progress=True))


def _list(args):
    query = CardQuery(text=args.search or "", base_model=args.base_model or "",
                      status="blocked" if args.blocked else "all", limit=None)
    with _open(args) as catalog:
        cards = catalog.search(query)
    rows = cards[: args.limit]
    if args.json:
        print_json([{"id": c.id, "name": c.name, "base_model": c.base_model, "type": c.adapter_type,
                     "category": c.effective_category(), "blocked": c.blocked} for c in rows])
        return 0
    for c in rows:
        flag = " [blocked]" if c.blocked else ""
        print(f"{c.id:28} {c.base_model:9} {c.adapter_type:7} {c.effective_category():10} {c.name[:60]}{flag}")
    print(f"({len(rows)} of {len(cards)} shown)")
    return 0


def _show(args):
    with _open(args) as catalog:
        card = catalog.card(args.id)
    print(json.dumps(card.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return 0


def _stats(args):
    with _open(args) as catalog:
        stats = catalog.stats()
    if args.json:
        print_json(stats)
        return 0
    print(f"cards: {stats['cards']}  civitai models: {stats['civitai_models']} "
          f"(with an SD 1.5 version: {stats['civitai_models_sd15']})")
    for title, key in (("base model", "by_base_model"), ("adapter type", "by_adapter_type"),
                       ("source", "by_source"), ("flags", "flags")):
        print(f"by {title}:")
        for k, v in stats[key].items():
            print(f"  {str(k):20} {v}")
    print(screen_line(stats))
    return 0


def screen_line(stats: dict) -> str:
    """What the content screen rates beyond the source's nsfw flag (see catalog/safety.py)."""
    screen = stats.get("content_screen") or {}
    return (f"content screen: {screen.get('explicit', 0)} explicit (not flagged by the source), "
            f"{screen.get('suggestive', 0)} suggestive")


def _block(args):
    with _open(args) as catalog:
        card = catalog.set_blocked(args.id, args.blocked, editor=args.by)
    print(f"{card.id} {'blocked' if card.blocked else 'unblocked'}")
    return 0


def _edit(args):
    changes = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is not FIELD=VALUE")
        key, _, raw = item.partition("=")
        try:
            changes[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key.strip()] = raw
    with _open(args) as catalog:
        card = catalog.edit(args.id, editor=args.by, **changes)
    print(f"{card.id} edited: {', '.join(changes)}")
    return 0
