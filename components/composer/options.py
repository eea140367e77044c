"""Options of a compose call and the small protocol both composers implement."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from components.types import Candidate, Composition, StylusError
from ground.choices import CHARACTER_POLICIES

MAX_PROMPT_CHARS = 4000  # longer prompts are cut (with a notice); CLIP reads 77 tokens anyway
MAX_TOPICS = 32


@dataclass
class ComposeOptions:
    composer: str = "offline"  # offline | llm
    top_k: int = 3  # adapters per topic
    max_adapters: int = 3  # adapters per composition (the paper's images use a handful)
    max_styles: int = 2
    characters: str = "named"  # named: only characters the prompt names | all | none
    min_relative_score: float = 0.35  # drop adapters far below the best candidate's score (dev: 0.25-0.45 change hit by <0.005; 0.45 gives 1.6 adapters, 0.35 2.0)
    # LLM composer
    llm_model: str = ""  # litellm model string, e.g. "openai/gpt-4o-mini"
    api_base: str = ""
    api_key: str = ""
    temperature: float = 0.0
    timeout: float = 30.0  # per network read (litellm's own timeout)
    total_timeout: float = 60.0  # the whole call, retries and review turn included
    retries: int = 1
    refine: bool = False  # second LLM turn that reviews the first answer
    max_candidates_llm: int = 40  # candidates described to the LLM

    def validate(self) -> None:
        if not 0 <= self.top_k <= 10:
            raise StylusError(f"top_k={self.top_k} is not allowed; use 0..10 adapters per topic")
        if not 0 <= self.max_adapters <= 30:
            raise StylusError(f"max_adapters={self.max_adapters} is not allowed; use 0..30")
        if not 0 <= self.max_styles <= 10:
            raise StylusError(f"max_styles={self.max_styles} is not allowed; use 0..10")
        if self.characters not in CHARACTER_POLICIES:
            raise StylusError(f"characters={self.characters!r} is not allowed; use {', '.join(CHARACTER_POLICIES)}")
        if not 0.0 <= self.temperature <= 2.0:
            raise StylusError(f"temperature={self.temperature} is not allowed; use 0.0..2.0")
        if self.timeout <= 0 or self.retries < 0:
            raise StylusError(f"timeout={self.timeout} must be > 0 and retries={self.retries} >= 0")
        if not self.total_timeout > 0:
            raise StylusError(f"total_timeout={self.total_timeout} is not allowed; use a number of "
                              f"seconds > 0 (setting STYLUS_LLM_TOTAL_TIMEOUT_S)")


class Composer(Protocol):
    name: str

    def compose(self, prompt: str, candidates: list[Candidate], options: ComposeOptions) -> Composition:
        ...
