"""Keep API tokens out of everything a user or a log reader sees.

Secrets are registered once (the engine registers its settings' tokens and the usual
provider variables of the environment); :func:`redact` replaces them in any text, and
:func:`install_log_redaction` makes every log record of the process pass through it, its
traceback included (an auth error often echoes the key it was given).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Iterable

MASK = "***"
MIN_SECRET_CHARS = 6  # shorter values ("x", "1") would mask ordinary words
_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_ACCESS_KEY")
_ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_TOKEN", "OPENAI_API_KEY")

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def register_secrets(values: Iterable[str]) -> None:
    """Add values to mask everywhere (empty and very short ones are ignored)."""
    with _lock:
        _secrets.update(v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_CHARS)


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
        secrets = set(_secrets)
    secrets.update(v for v in extra if v and len(v) >= MIN_SECRET_CHARS)
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
