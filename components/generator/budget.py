"""A request's wall-clock budget and its cancel flag, checked wherever the work can stop.

Denoising cannot be interrupted inside a step, so :class:`Budget` is checked between steps
(``callback_on_step_end``), before each adapter file is fetched and while waiting for the
generator lock. Going over the budget or being cancelled raises :class:`GenerationStopped`
(a ``StylusError``: the caller gets a message, the lock and the base weights are released).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from components.types import StylusError

_LOCK_POLL_S = 0.2  # how often a request waiting for the generator lock looks at its budget


class GenerationStopped(StylusError):
    """A generation was cancelled or ran past its time budget."""


@dataclass
class Budget:
    seconds: float  # wall-clock limit of the whole request (setting generation_timeout_s)
    cancel: threading.Event = field(default_factory=threading.Event)  # set by the caller to stop
    start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise StylusError(f"generation_timeout_s={self.seconds!r} is not allowed; use a number of "
                              f"seconds > 0 (setting STYLUS_GENERATION_TIMEOUT_S)")

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` value at which the budget is spent."""
        return self.start + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise :class:`GenerationStopped` when cancelled or over the budget."""
        if self.cancel.is_set():
            raise GenerationStopped("generation cancelled")
        if time.monotonic() >= self.deadline:
            raise GenerationStopped(f"generation stopped: over the time budget of {self.seconds:g} s "
                                    f"(setting STYLUS_GENERATION_TIMEOUT_S)")

    def acquire(self, lock: threading.Lock) -> None:
        """Wait for ``lock`` while the budget lasts; a cancelled request leaves the wait."""
        while not lock.acquire(timeout=_LOCK_POLL_S):
            self.check()
        try:
            self.check()
        except GenerationStopped:
            lock.release()
            raise
