"""Compose retrieved adapters into keyword topics: ``compose(prompt, candidates, options)``.

Two composers behind the small ``Composer`` protocol: ``offline`` (default, deterministic, fast)
and ``llm`` (litellm; falls back to offline on failure).
"""
from __future__ import annotations

from components.composer.llm import LLMComposer
from components.composer.offline import OfflineComposer
from components.composer.options import ComposeOptions, Composer
from components.composer.segment import Segment, segment
from components.types import Candidate, Composition
from ground.choices import COMPOSERS
from ground.errors import StylusError


def get_composer(name: str) -> Composer:
    if name == "offline":
        return OfflineComposer()
    if name == "llm":
        return LLMComposer()
    raise StylusError(f"composer {name!r} is not known; use one of {', '.join(COMPOSERS)}")


def compose(prompt: str, candidates: list[Candidate], options: ComposeOptions | None = None,
            composer: str | None = None) -> Composition:
    """Topics and adapters for ``prompt``; ``composer`` overrides ``options.composer``."""
    if not isinstance(prompt, str):
        raise StylusError(f"prompt must be text, got {type(prompt).__name__}")
    options = options or ComposeOptions()
    return get_composer(composer or options.composer).compose(prompt, list(candidates), options)


__all__ = ["COMPOSERS", "ComposeOptions", "Composer", "LLMComposer", "OfflineComposer", "Segment",
           "compose", "get_composer", "segment"]
