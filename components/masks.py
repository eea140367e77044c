"""Masks over a composition's adapters, the weights they give, and per-variant prompts.

Strategies (the paper's): ``all`` keeps every adapter on; ``one_hot_loras`` draws one on/off
combination of the adapters inside each topic, independently per topic (uniform over the cross
product, drawn without building it); ``one_hot_concepts`` turns whole topics on or off. N masks
are drawn from ``random.Random(seed)``, so the same seed gives the same variants; a grid repeats
a combination only when every distinct one has been drawn (``all`` has one: its images differ only
by seed), and :func:`repeated_masks_notice` says so.
Applied weight of an active adapter = recommended weight x base weight / active adapters in its
topic (:data:`WEIGHT_RULE`), or the adapter's ``applied_weight`` when the user fixed one.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from components.limits import check_variants
from components.types import Composition, Variant
from ground.choices import DEFAULT_MASK_STRATEGY, MASK_STRATEGIES, MaskStrategy
from ground.errors import StylusError

MAX_VARIANTS = 256  # the sampler's own bound; a request's limit is components.limits.NUM_IMAGES
Mask = list[list[bool]]  # per topic, per adapter: on/off
_REDRAWS = 64  # draws per mask to find a combination the grid does not have yet
# how a recommended weight becomes the applied one (said in the UI, the CLI and the API docs)
WEIGHT_RULE = ("applied weight = recommended weight x base weight {base_weight:g} / adapters on in "
               "its topic, unless an applied weight is set")


@dataclass
class VariantOptions:
    base_weight: float = 0.8
    debias: str = ""  # appended to every prompt, e.g. "realistic, best quality"
    restore_emphasis: bool = False  # emphasize keywords that no active adapter covers
    emphasis: float = 1.1


def sample_masks(composition: Composition, strategy: MaskStrategy, n: int, seed: int) -> list[Mask]:
    """``n`` masks; never enumerates the combinations. A mask already in the grid is redrawn
    (up to ``_REDRAWS`` times) until every distinct combination has been drawn once."""
    if strategy not in MASK_STRATEGIES:
        raise StylusError(f"mask strategy {strategy!r} is not known; use one of {', '.join(MASK_STRATEGIES)}")
    if not 0 <= n <= MAX_VARIANTS:
        raise StylusError(f"number of variants {n} is not allowed; use 0..{MAX_VARIANTS}")
    rng = random.Random(seed)
    sizes = [len(t.adapters) for t in composition.topics]
    distinct = _distinct_masks(strategy, sizes)
    masks: list[Mask] = []
    drawn: set[tuple[tuple[bool, ...], ...]] = set()  # combinations of the current round
    for _ in range(n):
        if len(drawn) >= distinct:
            drawn.clear()  # every combination is in the grid: the next round repeats them
        mask = _draw(strategy, sizes, rng)
        for _redraw in range(_REDRAWS):
            if _key(mask) not in drawn:
                break
            mask = _draw(strategy, sizes, rng)
        drawn.add(_key(mask))
        masks.append(mask)
    return masks


def _draw(strategy: MaskStrategy, sizes: list[int], rng: random.Random) -> Mask:
    if strategy == "all":
        return [[True] * k for k in sizes]
    if strategy == "one_hot_loras":
        return [[bool(b) for b in _bits(rng.getrandbits(k) if k else 0, k)] for k in sizes]
    return [[on] * k for k, on in zip(sizes, [rng.random() < 0.5 for _ in sizes])]


def _distinct_masks(strategy: MaskStrategy, sizes: list[int]) -> int:
    """How many different masks ``strategy`` can draw for topics of these sizes."""
    if strategy == "all":
        return 1
    if strategy == "one_hot_loras":
        return 2 ** sum(sizes)
    return 2 ** sum(1 for k in sizes if k)


def _key(mask: Mask) -> tuple[tuple[bool, ...], ...]:
    return tuple(tuple(row) for row in mask)


def _bits(value: int, k: int) -> list[int]:
    return [(value >> i) & 1 for i in range(k)]


def weights_for(composition: Composition, mask: Mask, base_weight: float = 0.8) -> dict[str, float]:
    """Card id -> applied weight for the adapters the mask turns on."""
    if len(mask) != len(composition.topics):
        raise StylusError(f"mask has {len(mask)} topics, the composition {len(composition.topics)}")
    out: dict[str, float] = {}
    for topic, row in zip(composition.topics, mask):
        active = [a for a, on in zip(topic.adapters, row) if on]
        for a in active:
            out[a.card_id] = (float(a.applied_weight) if a.applied_weight is not None
                              else round(a.weight * base_weight / len(active), 4))
    return out


def applied_weights(composition: Composition, base_weight: float = 0.8) -> dict[str, float]:
    """Card id -> applied weight with every adapter on (the ``all`` mask): what the mapping shows."""
    return weights_for(composition, [[True] * len(t.adapters) for t in composition.topics], base_weight)


def repeated_masks_notice(variants: list[Variant]) -> str | None:
    """A sentence naming the images that repeat another's adapters and weights, or None."""
    groups: dict[tuple[tuple[str, float], ...], list[int]] = {}
    for v in variants:
        groups.setdefault(tuple(sorted((c, w) for c, w in v.weights.items() if w)), []).append(v.index)
    same = [indices for indices in groups.values() if len(indices) > 1]
    if not same:
        return None
    listed = "; ".join(", ".join(f"#{i}" for i in indices) for indices in same)
    return (f"images with the same adapters at the same weights (they differ only by seed): {listed}; "
            f"the mapping and mask strategy give fewer distinct combinations than images")


def emphasize(prompt: str, keywords: list[str], factor: float) -> str:
    """Wrap the first plain occurrence of each keyword in A1111 emphasis ``(keyword:1.1)``."""
    for kw in keywords:
        pattern = re.compile(r"(?<![\w(])" + re.escape(kw) + r"(?![\w:])", re.I)
        prompt = pattern.sub(lambda m: f"({m.group(0)}:{factor:g})", prompt, count=1)
    return prompt


def export_string(prompt: str, composition: Composition, weights: dict[str, float]) -> str:
    """The prompt followed by ``<lora:NAME:W>`` tags, to reproduce the variant in A1111/ComfyUI."""
    names = {a.card_id: (a.lora_name or a.name) for t in composition.topics for a in t.adapters}
    tags = [f"<lora:{names[cid]}:{w:g}>" for cid, w in weights.items()]
    return " ".join([prompt] + tags)


def build_variants(composition: Composition, strategy: MaskStrategy, n: int, seed: int,
                   options: VariantOptions | None = None) -> list[Variant]:
    """``n`` variants; ``n``, ``seed`` and the debias text within :mod:`components.limits`."""
    options = options or VariantOptions()
    n, seed, _ = check_variants(n, seed, options.debias)  # before any work: the answer stays small
    variants = []
    for index, mask in enumerate(sample_masks(composition, strategy, n, seed)):
        weights = weights_for(composition, mask, options.base_weight)
        prompt = composition.prompt
        if options.restore_emphasis and weights:
            bare = list(composition.unassigned)
            bare += [k for t, row in zip(composition.topics, mask) if not any(row) for k in t.keywords]
            prompt = emphasize(prompt, bare, options.emphasis)
        if options.debias.strip():
            prompt = f"{prompt.rstrip().rstrip(',')}, {options.debias.strip()}"
        variants.append(Variant(index=index, weights=weights, prompt=prompt,
                                export=export_string(prompt, composition, weights)))
    return variants


def sample_variants(composition: Composition, n: int, strategy: MaskStrategy = DEFAULT_MASK_STRATEGY,
                    seed: int = 0, base_weight: float = 0.8, debias: str = "",
                    restore_emphasis: bool = False) -> list[Variant]:
    """Keyword form of :func:`build_variants` (what the engine calls); it checks the limits."""
    return build_variants(composition, strategy, n, seed,
                          VariantOptions(base_weight=base_weight, debias=debias,
                                         restore_emphasis=restore_emphasis))
