"""Typed values exchanged between the layers (retriever -> composer -> masks -> generator -> UI).

Plain dataclasses of ids, weights, seeds and images: no widgets, no tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalog.card import AdapterCard
from ground.choices import DEFAULT_MASK_STRATEGY, MaskStrategy, Mode
from ground.errors import StylusError

# Mode, MaskStrategy and StylusError live in ground/ and are re-exported here for old imports
__all__ = ["Candidate", "Composition", "GeneratedImage", "GenerationRequest", "GenerationResult", "MaskStrategy",
           "Mode", "RetrievalResult", "SelectRequest", "Selection", "StylusError", "Topic", "TopicAdapter", "Variant"]


@dataclass
class SelectRequest:
    """A "Select adapters" request (retrieve, then compose). ``None``: the setting of the same name.

    Checked once where it enters, by :meth:`components.engine.StylusEngine.select`: the limits of
    :mod:`components.limits` and the choices of :mod:`ground.choices`, each message naming the value."""
    prompt: str
    top_k: int | None = None  # candidates retrieved
    composer: str | None = None  # offline | llm
    llm_model: str | None = None  # litellm model string, for the llm composer
    adapters_per_topic: int | None = None
    characters: str | None = None  # named | all | none: character adapters the selection may use
    temperature: float = 0.0  # the llm composer's


@dataclass
class Candidate:
    """A retrieved adapter with its score and why it matched."""
    card: AdapterCard
    score: float
    rank: int = 0
    # field name -> matched terms, e.g. {"examples": ["school uniform"], "tags": ["clothing"]}
    evidence: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # per signal: lexical, dense, prior
    # per prompt concept it was weighed for, one row per part of it matched: {"concept", "fits",
    # "why", "lexical", "dense", "score", "covers": the words of that part its purpose holds};
    # None: the retriever did not weigh concepts (a tag-style prompt, or candidates from elsewhere)
    concepts: list[dict[str, Any]] | None = None

    def fitting_concepts(self) -> list[str]:
        return [c["concept"] for c in self.concepts or () if c.get("fits")]

    @property
    def id(self) -> str:
        return self.card.id


@dataclass
class RetrievalResult:
    query: str
    candidates: list[Candidate]
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)


@dataclass
class TopicAdapter:
    """One adapter assigned to a topic.

    ``weight`` is the adapter's recommended weight; what a variant applies is, by default,
    recommended weight x base weight / adapters on in the topic (see :mod:`components.masks`).
    ``applied_weight``, when set, replaces that rule: the exact weight applied whenever the
    adapter is on (a user's choice in the mapping), never divided."""
    card_id: str
    name: str
    weight: float
    reason: str = ""
    score: float = 0.0
    civitai_model_id: int | None = None
    lora_name: str = ""  # name for the A1111 <lora:NAME:W> export
    applied_weight: float | None = None  # fixed applied weight (see above); None: the rule


@dataclass
class Topic:
    keywords: list[str]
    adapters: list[TopicAdapter] = field(default_factory=list)

    def label(self) -> str:
        """The topic's keywords as one text (a mapping row's keyword cell); :func:`split_keywords`
        reads it back."""
        return KEYWORD_JOIN.join(self.keywords)


KEYWORD_JOIN = " + "  # how one mapping row names a topic of several keywords


def split_keywords(label: str) -> list[str]:
    """A topic's keywords from its label (:meth:`Topic.label`); a label without keywords is kept whole."""
    return [k.strip() for k in label.split(KEYWORD_JOIN.strip()) if k.strip()] or [label]


@dataclass
class Composition:
    prompt: str
    topics: list[Topic]
    unassigned: list[str] = field(default_factory=list)  # prompt keywords left without adapters
    composer: str = "offline"
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)  # composer internals for the UI

    def adapter_ids(self) -> list[str]:
        return [a.card_id for t in self.topics for a in t.adapters]


@dataclass
class Selection:
    """What a select gives: the retrieved candidates and the composition made from them, with the
    request as checked (every ``None`` replaced by the setting it stood for)."""
    request: SelectRequest
    retrieval: RetrievalResult
    composition: Composition


@dataclass
class Variant:
    """One masked composition: which adapters are on, at which weights, and the prompt."""
    index: int
    weights: dict[str, float]  # card id -> applied weight (after the mask and topic division)
    prompt: str
    export: str = ""  # the prompt with A1111 <lora:NAME:W> tags


@dataclass
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    mode: Mode = "txt2img"
    init_image: Any = None  # PIL.Image for img2img / inpaint
    mask_image: Any = None  # PIL.Image (white = repaint) for inpaint
    strength: float = 0.75
    steps: int = 20
    guidance: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = 0
    num_images: int = 4
    mask_strategy: MaskStrategy = DEFAULT_MASK_STRATEGY
    composition: Composition | None = None
    debias: str = ""
    include_baseline: bool = True


@dataclass
class GeneratedImage:
    image: Any  # PIL.Image
    seed: int
    variant: Variant | None  # None for the baseline (no adapters)
    parameters: str = ""  # A1111-style PNG "parameters" text
    path: str | None = None


@dataclass
class GenerationResult:
    images: list[GeneratedImage]
    baseline: GeneratedImage | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    model: str = ""
    preview_model: bool = False  # images come from the untrained preview model
    # the catalog cards of the adapters the request used (card id -> card), read once by the engine
    cards: dict[str, AdapterCard] = field(default_factory=dict)
    # served by a worker pool (components/workers): replica, node, queue_position, retries,
    # adapter_set, adapter cache hits/misses; None when generated in this process. Not in the PNG.
    worker: dict[str, Any] | None = None
