"""``retrieve``: the adapters that match a prompt (or every line of a JSONL file), best first."""
from __future__ import annotations

import argparse
import sys

from ground.choices import CHARACTER_POLICIES
from stylus_ui.cli.common import add_common, add_prompt_or_queries, print_json, read_queries, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrieve", help="find the adapters that match a prompt",
                       description="Rank the catalog's adapters for a prompt (hybrid lexical + dense "
                                   "retrieval; the index is brought up to date first).")
    add_prompt_or_queries(p)
    p.add_argument("--top-k", type=int, default=None, help="adapters to return (default: $STYLUS_TOP_K or 150)")
    p.add_argument("--characters", choices=CHARACTER_POLICIES, default="all",
                   help="character/real-person adapters: all (default here: this command measures "
                        "recall), only those the prompt names (what the composer and UI use), or none")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_common(p)
    p.set_defaults(func=_run)


def candidate_record(c) -> dict:
    return {"id": c.id, "civitai_model_id": c.card.civitai_model_id, "score": c.score}


def _run(args: argparse.Namespace) -> int:
    from components.api import StylusEngine, limits
    from ground.errors import StylusError

    if (args.prompt is None) == (args.queries is None):
        raise StylusError("give either a PROMPT or --queries FILE.jsonl")
    if args.prompt is not None:  # lines of a --queries file are evaluation data: cut, not refused
        limits.PROMPT.check("prompt", args.prompt)
    if args.top_k is not None:
        limits.TOP_K.check("--top-k", args.top_k)
    queries = read_queries(args.queries) if args.queries else None
    engine = StylusEngine(settings_from_args(args))
    changes = engine.index_changes()  # opens the index, brought up to date first
    if changes:
        print(changes, file=sys.stderr)
    if queries is not None:  # ranking only: ids, model ids and scores come from the index
        for query, ranked in zip(queries, engine.rank(queries, top_k=args.top_k, characters=args.characters)):
            print_json({"query": query, "adapters": [
                {"id": r.id, "civitai_model_id": r.civitai_model_id, "score": round(r.score, 4)} for r in ranked]})
        return 0
    if not args.prompt.strip():
        raise StylusError("the prompt is empty: type what the image should show")
    result = engine.retrieve(args.prompt, top_k=args.top_k, characters=args.characters)
    if args.json:
        print_json({"query": result.query, "seconds": round(result.seconds, 4), "notices": result.notices,
                    "adapters": [candidate_record(c) | {"name": c.card.name, "evidence": c.evidence,
                                                        "concepts": c.concepts, "signals": c.scores}
                                 for c in result.candidates]})
        return 0
    for notice in result.notices:
        print(f"notice: {notice}", file=sys.stderr)
    for c in result.candidates:
        why = (c.concepts[0]["why"] if c.concepts else
               "; ".join(f"{field}: {', '.join(terms[:4])}" for field, terms in c.evidence.items()))
        print(f"{c.rank:4d} {c.score:6.3f}  {c.id:24} {c.card.name[:48]:48}  {why[:80]}")
    print(f"({len(result.candidates)} adapters in {result.seconds * 1000:.0f} ms)", file=sys.stderr)
    return 0
