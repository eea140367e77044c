"""``compose``: retrieve candidates for a prompt and compose them into topics and adapters."""
from __future__ import annotations

import argparse
import sys

from ground.choices import CHARACTER_POLICIES, COMPOSERS
from stylus_ui.cli.common import add_common, add_prompt_or_queries, print_json, read_queries, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compose", help="retrieve and compose adapters for a prompt",
                       description="Split a prompt into keyword topics and assign each the adapters "
                                   "that fit it (retrieval, then the offline or LLM composer).")
    add_prompt_or_queries(p)
    p.add_argument("--composer", choices=COMPOSERS, default=None,
                   help="offline (default, deterministic) or llm (litellm; needs --model)")
    p.add_argument("--model", default=None, help="litellm model string, e.g. openai/gpt-4o-mini")
    p.add_argument("--top-k", type=int, default=None, help="adapters per topic (default 3)")
    p.add_argument("--candidates", type=int, default=None, help="retrieved candidates (default 150)")
    p.add_argument("--temperature", type=float, default=0.0, help="LLM temperature (diversity)")
    p.add_argument("--characters", choices=CHARACTER_POLICIES, default=None,
                   help="character/real-person adapters: named (default: only those the prompt names), "
                        "all (like any other adapter), none")
    p.add_argument("--json", action="store_true", help="print the composition as JSON")
    add_common(p)
    p.set_defaults(func=_run)


def record(query: str, comp, retrieval) -> dict:
    """The line format of ``--queries`` (and ``--json``)."""
    return {"query": query,
            "topics": [{"keywords": t.keywords,
                        "adapters": [{"id": a.card_id, "civitai_model_id": a.civitai_model_id,
                                      "weight": a.weight, "reason": a.reason} for a in t.adapters]}
                       for t in comp.topics],
            "unassigned": comp.unassigned,
            "unassigned_why": dict((comp.scores or {}).get("unassigned", {})),
            "retrieved": [{"id": c.id, "civitai_model_id": c.card.civitai_model_id}
                          for c in retrieval.candidates]}


def _run(args: argparse.Namespace) -> int:
    from components.api import SelectRequest, StylusEngine, limits
    from ground.errors import StylusError

    if (args.prompt is None) == (args.queries is None):
        raise StylusError("give either a PROMPT or --queries FILE.jsonl")
    if args.prompt is not None:  # lines of a --queries file are evaluation data: cut, not refused
        limits.PROMPT.check("prompt", args.prompt)
    if args.top_k is not None:
        limits.ADAPTERS_PER_TOPIC.check("--top-k", args.top_k)
    if args.candidates is not None:
        limits.TOP_K.check("--candidates", args.candidates)
    settings = settings_from_args(args)
    if args.characters:
        settings = settings.replace(characters=args.characters)  # retriever filter and composer rule
    engine = StylusEngine(settings)

    options = dict(composer=args.composer, llm_model=args.model, adapters_per_topic=args.top_k,
                   temperature=args.temperature)
    if args.queries:  # evaluation lines: the engine's two steps, so a long or empty line is not refused
        for query in read_queries(args.queries):
            retrieval = engine.retrieve(query, top_k=args.candidates)
            comp = engine.compose(query, retrieval, **options)
            print_json(record(query, comp, retrieval))
            sys.stdout.flush()
        return 0
    selection = engine.select(SelectRequest(args.prompt, top_k=args.candidates, **options))
    retrieval, comp = selection.retrieval, selection.composition
    if args.json:
        out = record(args.prompt, comp, retrieval)
        out.update(composer=comp.composer, seconds=round(comp.seconds, 4), notices=comp.notices)
        print_json(out)
        return 0
    print(f"composer: {comp.composer} ({comp.seconds * 1000:.1f} ms), "
          f"{len(retrieval.candidates)} candidates")
    for t in comp.topics:
        print(f"- {t.label()}")
        for a in t.adapters:
            print(f"    {a.name} [{a.card_id}] weight {a.weight:g}: {a.reason}")
    why = (comp.scores or {}).get("unassigned", {})
    for keyword in comp.unassigned:
        print(f"no adapter for {keyword!r}" + (f": {why[keyword]}" if why.get(keyword) else ""))
    for notice in comp.notices:
        print(f"note: {notice}")
    return 0
