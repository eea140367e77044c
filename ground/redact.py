"""Keep API tokens out of everything a user or a log reader sees.

Secrets are registered once (the engine registers its settings' tokens and the usual
provider variables of the environment), or for the life of one request with
:func:`secrets_registered` (a token a user typed into a form); :func:`redact` replaces them
in any text, :func:`install_log_redaction` makes every log record of the process pass
through it, its traceback included (an auth error often echoes the key it was given), and
:class:`RedactingStream` does the same for everything a command line program prints.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterable, Iterator, TextIO

MASK = "***"
MIN_SECRET_CHARS = 6  # shorter values ("x", "1") would mask ordinary words
_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_ACCESS_KEY")
_ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_TOKEN", "OPENAI_API_KEY")

_lock = threading.Lock()
_secrets: set[str] = set()
_temporary: Counter[str] = Counter()  # secrets_registered() values -> how many blocks hold them
_installed = False


def _maskable(values: Iterable[str]) -> list[str]:
    """The values worth masking: strings, not empty and not very short."""
    return [v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_CHARS]


def register_secrets(values: Iterable[str]) -> None:
    """Add values to mask everywhere (empty and very short ones are ignored)."""
    with _lock:
        _secrets.update(_maskable(values))


@contextmanager
def secrets_registered(values: Iterable[str]) -> Iterator[None]:
    """Mask ``values`` everywhere while the block runs, e.g. the token of one web request.

    Counted: a value two overlapping blocks hold stays masked until both have left, and a
    value :func:`register_secrets` registered stays masked after the block."""
    held = _maskable(values)
    with _lock:
        _temporary.update(held)
    try:
        yield
    finally:
        with _lock:
            _temporary.subtract(held)
            for value in held:
                if _temporary[value] <= 0:
                    del _temporary[value]


def environment_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Values of provider keys and tokens in the environment (``*_API_KEY``, ``*_TOKEN``, ...)."""
    environ = os.environ if environ is None else environ
    return [v for k, v in environ.items()
            if k.upper() in _ENV_NAMES or k.upper().endswith(_ENV_SUFFIXES)]


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and each of ``extra``) replaced by ``***``."""
    if not text:
        return text
    with _lock:
        secrets = _secrets | set(_temporary)
    secrets.update(_maskable(extra))
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        text = text.replace(secret, MASK)
    return text


def install_log_redaction() -> None:
    """Every log record of the process is redacted when it is made (message and traceback)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: keep the raw parts, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


class RedactingStream:
    """A text stream that redacts whatever is written to it and passes it on (the command line
    wraps stdout and stderr in one). Each ``write`` is redacted on its own, so a secret split
    over two writes would pass; ``print`` and tracebacks write every message in one piece."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding, ...: the wrapped stream's
        return getattr(self.stream, name)
