"""``generate``: retrieve -> compose -> generate a grid of masked variants, and save it."""
from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from ground.choices import DEFAULT_MASK_STRATEGY, MASK_STRATEGIES, MODES, SCHEDULERS
from stylus_ui.cli.common import add_common, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="select adapters for a prompt and generate images",
                       description="Retrieve and compose adapters for PROMPT, then generate a grid "
                                   "of masked variants plus a baseline without adapters. Writes the "
                                   "grid, one PNG per image (A1111 'parameters' metadata) and a "
                                   "JSON summary.")
    p.add_argument("prompt")
    p.add_argument("--mode", choices=MODES, default="txt2img")
    p.add_argument("--image", metavar="FILE", help="init image (img2img, inpaint)")
    p.add_argument("--mask", metavar="FILE", help="mask image, white = repaint (inpaint)")
    p.add_argument("--strength", type=float, default=0.75, help="img2img/inpaint strength (0, 1]")
    p.add_argument("--n", type=int, default=4, help="number of images (1-16, default 4)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default 20; 4 on the preview model)")
    p.add_argument("--guidance", type=float, default=7.0)
    p.add_argument("--size", type=int, default=None, help="width = height (default 512; 64 on the preview model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--masks", dest="mask_strategy", default=DEFAULT_MASK_STRATEGY, choices=MASK_STRATEGIES)
    p.add_argument("--no-baseline", action="store_true", help="skip the image without adapters")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default: output_dir/<time>)")
    p.add_argument("--model", metavar="ID_OR_PATH", default=None,
                   help="hub id, diffusers folder, .safetensors checkpoint, random:sd15-full; "
                        "empty = untrained preview model")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=None)
    p.add_argument("--comfy-workflow", action="store_true",
                   help="also write each variant's ComfyUI workflow (API format) beside its PNG, "
                        "as <png name>.comfyui.json")
    add_common(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from components.api import StylusEngine, repeated_masks_notice, save_result, served_by

    settings = settings_from_args(args, model=args.model, scheduler=args.scheduler)
    preview = not settings.model
    steps, size = _checked(args, preview)  # before any work
    engine = StylusEngine(settings)
    t0 = time.perf_counter()
    selection = engine.select(args.prompt)
    retrieval, comp = selection.retrieval, selection.composition
    t_select = time.perf_counter() - t0
    _print_composition(comp, settings.base_weight)
    request = engine.generation_request(
        args.prompt, comp, negative_prompt=args.negative, mode=args.mode, init_image=args.image,
        mask_image=args.mask, strength=args.strength, steps=steps,
        guidance=args.guidance, width=size, height=size, seed=args.seed, num_images=args.n,
        mask_strategy=args.mask_strategy, include_baseline=not args.no_baseline)
    bar = tqdm(total=0, unit="step", desc="denoising", leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = engine.generate(request, progress=progress)
    finally:
        bar.close()
    result.timings = {"retrieve+compose": t_select, **result.timings}
    out = Path(args.out) if args.out else Path(settings.output_dir) / datetime.now().strftime("%Y%m%d-%H%M%S")
    names = {a.card_id: a.name for t in comp.topics for a in t.adapters}
    repeated = repeated_masks_notice([i.variant for i in result.images if i.variant is not None])
    result.notices += [repeated] if repeated else []
    summary = save_result(result, out, extra={"prompt": args.prompt, "composition": _comp_dict(comp),
                                              "retrieved": len(retrieval.candidates)}, names=names,
                          comfy=_comfy_files(args, settings, result))
    if result.preview_model:
        print("NOTE: images come from the untrained preview model (random weights, noise-like "
              "pictures); set --model or STYLUS_MODEL to a real SD-1.5 model for real images.")
    for notice in result.notices:
        print(f"  notice: {notice}")
    for row in summary["images"]:
        print(f"  {row['path']}" + (f"\n  {row['comfy_workflow']}" if "comfy_workflow" in row else ""))
    print(f"labelled grid: {summary.get('grid')}\nsummary: {out / 'stylus-summary.json'}")
    print("timings: " + ", ".join(f"{k} {v:.3f}s" for k, v in result.timings.items()))
    if result.worker:
        print(served_by(result.worker))
    return 0


def _comfy_files(args: argparse.Namespace, settings, result):
    """What the ComfyUI workflows load (--comfy-workflow), or None: the checkpoint, each adapter's
    file and the init image / mask under the names given here."""
    if not args.comfy_workflow:
        return None
    from components.api import comfy_files

    return comfy_files(settings.model, result.model, result.cards.values(),
                       init_image=Path(args.image).name if args.image else None,
                       mask_image=Path(args.mask).name if args.mask else None)


def _checked(args: argparse.Namespace, preview: bool) -> tuple[int, int]:
    """The options against components.limits, named as typed (exit 2 and the message otherwise);
    returns (steps, size) with an absent option replaced by its default (0 is not absent)."""
    from components.api import limits

    limits.PROMPT.check("prompt", args.prompt)
    limits.NEGATIVE_PROMPT.check("--negative", args.negative)
    limits.NUM_IMAGES.check("--n", args.n)
    limits.SEED.check("--seed", args.seed)
    limits.GUIDANCE.check("--guidance", args.guidance)
    if args.mode != "txt2img":
        limits.STRENGTH.check("--strength", args.strength)
    return (limits.STEPS.check_or("--steps", args.steps, 4 if preview else 20),
            limits.SIDE.check_or("--size", args.size, 64 if preview else 512))


def _print_composition(comp, base_weight: float) -> None:
    """Each topic's adapters with their recommended and applied weights (all adapters on)."""
    from components.api import WEIGHT_RULE, applied_weights

    applied = applied_weights(comp, base_weight)
    print(f"composer: {comp.composer} ({WEIGHT_RULE.format(base_weight=base_weight)})")
    for topic in comp.topics:
        names = ", ".join(f"{a.name} ({a.card_id}, recommended weight {a.weight:g}, applied weight "
                          f"{applied[a.card_id]:g})" for a in topic.adapters) or "-"
        print(f"  {topic.label()}: {names}")


def _comp_dict(comp) -> dict:
    return {"composer": comp.composer, "unassigned": comp.unassigned,
            "topics": [{"keywords": t.keywords,
                        "adapters": [{"id": a.card_id, "name": a.name, "weight": a.weight}
                                     for a in t.adapters]} for t in comp.topics]}
