"""Every limit on a request, and the checks that enforce them.

One set for the web UI (slider ranges), the web API, the CLI and the engine: each entry checks
the values it receives with these functions before any work is done, so the same bad value gets
the same message everywhere: ``<param> <value> is not allowed; use <range>``, with the parameter
named as the caller passed it (``num_images`` through the API and the engine, ``--n`` on the
command line). Absent values (``None``) mean "the default" and are resolved by the caller;
zero is checked like any other value, never silently replaced.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Sized

from components.types import GenerationRequest, StylusError

_SHOWN_CHARS = 24  # how much of a too-long text a message quotes


@dataclass(frozen=True)
class IntRange:
    """Whole numbers ``low..high`` (both included), multiples of ``step``."""
    low: int
    high: int
    step: int = 1
    shown_high: str = ""  # how the upper end is written in messages, e.g. "2**63-17"

    def allowed(self) -> str:
        high = self.shown_high or str(self.high)
        if self.step > 1:
            return f"a multiple of {self.step} from {self.low} to {high}"
        return f"{self.low} to {high}"

    def check(self, name: str, value: Any) -> int:
        """``value`` as an ``int``; integral numbers such as JSON's ``4.0`` pass, anything else
        (a fraction, text, a bool, a value out of range) raises :class:`StylusError`."""
        number = _whole(value)
        if number is None or not self.low <= number <= self.high or number % self.step:
            raise StylusError(f"{name} {value!r} is not allowed; use {self.allowed()}")
        return number

    def check_or(self, name: str, value: Any, default: int) -> int:
        """``default`` when ``value`` is None (absent), else :meth:`check` (0 is a value)."""
        return default if value is None else self.check(name, value)


@dataclass(frozen=True)
class FloatRange:
    """Numbers ``low..high``; ``low`` itself is excluded when ``low_open``."""
    low: float
    high: float
    low_open: bool = False

    def allowed(self) -> str:
        if self.low_open:
            return f"a value in ({self.low:g}, {self.high:g}]"
        return f"{self.low} to {self.high}"

    def check(self, name: str, value: Any) -> float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
        number = float(value) if ok else math.nan
        above_low = number > self.low if self.low_open else number >= self.low
        if not (ok and above_low and number <= self.high):
            raise StylusError(f"{name} {value!r} is not allowed; use {self.allowed()}")
        return number


@dataclass(frozen=True)
class SizeLimit:
    """At most ``most`` characters of text (or items of a list)."""
    most: int
    unit: str = "characters"

    def allowed(self) -> str:
        return f"at most {self.most:,} {self.unit}"

    def check(self, name: str, value: Any) -> Any:
        if self.unit == "characters" and not isinstance(value, str):
            raise StylusError(f"{name} must be text, got {type(value).__name__}")
        if not isinstance(value, Sized):
            raise StylusError(f"{name} must be a list, got {type(value).__name__}")
        if len(value) > self.most:
            shown = (f"{value[:_SHOWN_CHARS]!r}... ({len(value):,} {self.unit})" if isinstance(value, str)
                     else f"with {len(value):,} {self.unit}")
            raise StylusError(f"{name} {shown} is not allowed; use {self.allowed()}")
        return value


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    return None


# ---- the limits -----------------------------------------------------------------------------
# Text: CLIP reads 77 tokens; retrieval and the composers read the first 4,000 characters.
PROMPT = SizeLimit(4000)
NEGATIVE_PROMPT = SizeLimit(2000)
DEBIAS = SizeLimit(500)  # appended to every variant's prompt: keep the answer small
MAPPING_ROWS = SizeLimit(64, "rows")  # keyword -> adapter rows of an edited composition

NUM_IMAGES = IntRange(1, 16)  # variants of one compose / generate request
STEPS = IntRange(1, 150)
GUIDANCE = FloatRange(0.0, 30.0)
SIDE = IntRange(64, 2048, step=8)  # width and height
# image i uses seed + i, and every seed must fit torch's signed 64-bit generator
SEED = IntRange(0, 2**63 - 1 - NUM_IMAGES.high, shown_high=f"2**63-{1 + NUM_IMAGES.high}")
STRENGTH = FloatRange(0.0, 1.0, low_open=True)  # img2img / inpaint
TOP_K = IntRange(1, 500)  # candidates retrieved
ADAPTERS_PER_TOPIC = IntRange(0, 10)


# ---- whole requests -------------------------------------------------------------------------
def check_selection(prompt: str, top_k: Any = None, adapters_per_topic: Any = None) -> tuple[int | None, int | None]:
    """A retrieve/compose request; returns (top_k, adapters_per_topic) as ints, None = default."""
    PROMPT.check("prompt", prompt)
    if not prompt.strip():
        raise StylusError("prompt is empty; give the text to find adapters for")
    return (None if top_k is None else TOP_K.check("top_k", top_k),
            None if adapters_per_topic is None else ADAPTERS_PER_TOPIC.check("adapters_per_topic",
                                                                             adapters_per_topic))


def check_variants(num_images: Any, seed: Any, debias: Any) -> tuple[int, int, str]:
    """The variants of a composition: returns (num_images, seed, debias), checked."""
    return (NUM_IMAGES.check("num_images", num_images), SEED.check("seed", seed),
            DEBIAS.check("debias", debias))


def check_request(r: GenerationRequest) -> GenerationRequest:
    """Texts and numbers of a generation request (images are checked where they are decoded);
    numbers are normalised in place (``4.0`` -> ``4``)."""
    PROMPT.check("prompt", r.prompt)
    NEGATIVE_PROMPT.check("negative_prompt", r.negative_prompt)
    r.width, r.height = SIDE.check("width", r.width), SIDE.check("height", r.height)
    r.steps = STEPS.check("steps", r.steps)
    r.guidance = GUIDANCE.check("guidance", r.guidance)
    r.num_images, r.seed, r.debias = check_variants(r.num_images, r.seed, r.debias)
    if r.mode != "txt2img":
        r.strength = STRENGTH.check("strength", r.strength)
    return r
