"""The one place where domain errors become user-facing ``gr.Error`` messages.

Callbacks are wrapped with :func:`user_errors`: a ``StylusError`` (the one root of the catalog's,
the settings' and the method's errors, ground/errors.py) and input errors such as ``ValueError``
turn into a readable message; any other exception is logged with its traceback on the server and
shown as a one-line message, never as a stack trace. A user's mistake writes one line to the
server log, no traceback (Gradio prints one for every ``gr.Error`` unless told not to); only real
faults log a traceback.
"""
from __future__ import annotations

import functools
import logging
import typing
from typing import Any, Callable

import gradio as gr

from ground.errors import StylusError

log = logging.getLogger("stylus.web")


DOMAIN_ERRORS: tuple[type[BaseException], ...] = (StylusError, ValueError, FileNotFoundError, PermissionError)


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
        except DOMAIN_ERRORS as exc:
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
    from ground.redact import redact
    text = redact(exc.message if isinstance(exc, gr.Error) else str(exc)).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first[:500]



ERROR_CLASS = "stylus-error"  # the status line under a tab's buttons holds a refusal in this element
FAILED = "failed"  # session-state key: the first step of a chain was refused, with its message


def shown_near(fn: Callable[..., Any], outputs: int, state_out: int, state_arg: int,
               after_failure: bool = False) -> Callable[..., Any]:
    """For a tab's main buttons: a refused or failed request changes nothing on the page (the
    previous images and mapping stay, no red "Error" badge on every output) and its one readable
    message goes to the status line under the buttons, the event's last output.

    ``fn`` returns every output but the status line (``outputs - 1`` values); the session state
    is output ``state_out`` and positional input ``state_arg``. A refusal is also written into the
    state, so the next step of a chain (Select + generate) sees it: with ``after_failure`` a step
    does nothing when the step before it was refused. A successful first step clears the mark."""
    wrapped = user_errors(fn)

    @functools.wraps(wrapped)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = args[state_arg] if len(args) > state_arg and isinstance(args[state_arg], dict) else {}
        if after_failure and state.get(FAILED):
            return [gr.skip()] * outputs  # the message of the step before stays on the status line
        try:
            values = list(wrapped(*args, **kwargs))
        except gr.Error as exc:
            values = [gr.skip()] * outputs
            values[-1] = error_html(exc.message)
            values[state_out] = {**state, FAILED: exc.message}
            return values
        if isinstance(values[state_out], dict):
            values[state_out] = {k: v for k, v in values[state_out].items() if k != FAILED}
        elif state.get(FAILED):  # the step left the state as it was: only clear the mark
            values[state_out] = {k: v for k, v in state.items() if k != FAILED}
        return [*values, ""]
    return wrapper


def error_html(message: str) -> str:
    from stylus_ui.web.render import esc
    return f'<div class="{ERROR_CLASS}" role="alert">{esc(message)}</div>'
