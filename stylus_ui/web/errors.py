"""The one place where domain errors become user-facing ``gr.Error`` messages.

Callbacks are wrapped with :func:`user_errors`: a ``StylusError``, ``CatalogError`` or
``SettingsError`` (and input errors such as ``ValueError``) turn into a readable message; any
other exception is logged with its traceback on the server and shown as a one-line message,
never as a stack trace.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import gradio as gr

log = logging.getLogger("stylus.web")


def _domain_errors() -> tuple[type[BaseException], ...]:
    from catalog.settings import SettingsError
    from catalog.store import CatalogError
    from components.types import StylusError
    return (StylusError, CatalogError, SettingsError, ValueError, FileNotFoundError, PermissionError)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a callback so that failures reach the page as short, readable ``gr.Error`` toasts."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except _domain_errors() as exc:
            raise gr.Error(_message(exc), title="Cannot do that") from None
        except Exception as exc:  # unexpected: full trace in the server log, one line in the page
            log.exception("callback %s failed", getattr(fn, "__name__", fn))
            raise gr.Error(f"internal error ({type(exc).__name__}): {_message(exc)}; "
                           f"the server log has details", title="Something went wrong") from None
    return wrapper


def _message(exc: BaseException) -> str:
    from components.redact import redact
    text = redact(str(exc)).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first[:500]
