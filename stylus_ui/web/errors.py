"""The one place where domain errors become user-facing ``gr.Error`` messages.

Callbacks are wrapped with :func:`user_errors`: a ``StylusError``, ``CatalogError`` or
``SettingsError`` (and input errors such as ``ValueError``) turn into a readable message; any
other exception is logged with its traceback on the server and shown as a one-line message,
never as a stack trace. A user's mistake writes one line to the server log, no traceback (Gradio
prints one for every ``gr.Error`` unless told not to); only real faults log a traceback.
"""
from __future__ import annotations

import functools
import logging
import typing
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
    name = getattr(getattr(fn, "func", fn), "__name__", str(fn))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            log.info("%s: refused: %s", name, _message(exc))
            if not exc.print_exception:
                raise
            raise gr.Error(exc.message, duration=exc.duration, visible=exc.visible, title=exc.title,
                           print_exception=False) from None
        except _domain_errors() as exc:
            log.info("%s: refused: %s", name, _message(exc))
            raise gr.Error(_message(exc), title="Cannot do that", print_exception=False) from None
        except Exception as exc:  # unexpected: full trace in the server log, one line in the page
            log.exception("callback %s failed", name)
            raise gr.Error(f"internal error ({type(exc).__name__}): {_message(exc)}; "
                           f"the server log has details", title="Something went wrong",
                           print_exception=False) from None
    _keep_injected_hints(fn, wrapper)
    wrapper.__name__ = name  # Gradio names unnamed endpoints after it (/on_import_api, not /wrapper_7)
    return wrapper


def _keep_injected_hints(fn: Callable[..., Any], wrapper: Callable[..., Any]) -> None:
    """Gradio injects ``gr.Request``, ``gr.OAuthProfile``, ``gr.SelectData`` by type hint; a
    ``functools.partial`` carries no annotations, so the wrapper gets the resolved hints of the
    function inside it."""
    inner = fn.func if isinstance(fn, functools.partial) else fn
    try:
        hints = typing.get_type_hints(inner)
    except Exception:  # unresolvable hints: Gradio would not see them either
        return
    wrapper.__annotations__ = hints


def _message(exc: BaseException) -> str:
    from components.redact import redact
    text = redact(exc.message if isinstance(exc, gr.Error) else str(exc)).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first[:500]
