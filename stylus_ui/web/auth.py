"""Who may curate the catalog from the web app.

A private instance (``public=False``, the default) lets every user curate, as before. On a
public instance (``STYLUS_PUBLIC=1``) anonymous users select, compose and generate only; edits,
blocks, imports and re-indexing need a signed-in curator:

- **Hugging Face login** (Gradio's ``LoginButton``, on a Space or with ``hf_login=on``): the
  user's Hugging Face name must be listed in the ``curators`` setting;
- **admin token** (``STYLUS_ADMIN_TOKEN``), typed into the Catalog tab's sign-in box or sent to
  the ``/curator_login`` API endpoint: it marks that browser / gradio_client session as a
  curator for as long as the session lives.

The session's sign-in lives in a ``gr.State`` (kept on the server, per session); callers cannot
set it except through :func:`sign_in`. Every write callback checks :func:`require_curator`
itself, so hiding or disabling widgets is only a convenience for the page.
"""
from __future__ import annotations

import hmac
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

log = logging.getLogger("stylus.web")

FAILED_SIGN_IN_DELAY_S = 1.0  # slows guessing; the token itself should be long and random


@dataclass(frozen=True)
class Curator:
    name: str
    how: str  # "private instance", "Hugging Face", "admin token"


def hf_login_enabled(settings) -> bool:
    """Show Gradio's Hugging Face login button: only on a public instance that lists curators,
    on a Space (``auto``) or when asked (``on``; off a Space Gradio signs in with the machine's
    own Hugging Face login)."""
    if not settings.public or not settings.curators or settings.hf_login == "off":
        return False
    return settings.hf_login == "on" or bool(os.environ.get("SPACE_ID"))


def curator(settings, session: dict | None, profile: gr.OAuthProfile | None) -> Curator | None:
    """The signed-in curator of this request, or None (an anonymous user of a public instance)."""
    if not settings.public:
        return Curator("local", "private instance")
    if profile is not None and hf_login_enabled(settings):
        name = getattr(profile, "username", None) or profile.get("preferred_username")
        if name and name in settings.curators:
            return Curator(name, "Hugging Face")
    if isinstance(session, dict) and session.get("curator"):
        return Curator(str(session["curator"]), "admin token")
    return None


def require_curator(settings, session: dict | None, profile: gr.OAuthProfile | None, action: str) -> Curator:
    """The curator, or a readable refusal saying how to sign in."""
    who = curator(settings, session, profile)
    if who is None:
        raise gr.Error(f"{action} needs a signed-in curator on this public instance. {how_to_sign_in(settings)}",
                       title="Curators only", print_exception=False)
    return who


def how_to_sign_in(settings) -> str:
    ways = []
    if hf_login_enabled(settings):
        ways.append("sign in with Hugging Face (curators: " + ", ".join(settings.curators) + ")")
    if settings.admin_token:
        ways.append("type the admin token in 'Curator sign-in' (API: /curator_login)")
    if not ways:
        return ("No curator sign-in is configured: set STYLUS_CURATORS (Hugging Face user names, on a "
                "Space) or STYLUS_ADMIN_TOKEN.")
    return "To curate, " + " or ".join(ways) + "."


def sign_in(settings, token: str, session: dict | None) -> tuple[dict, str]:
    """Check an admin token; returns the new session state and a status line."""
    session = dict(session or {})
    given = (token or "").strip()
    if not settings.admin_token:
        raise gr.Error("This instance has no admin token (STYLUS_ADMIN_TOKEN); " + how_to_sign_in(settings),
                       print_exception=False)
    if not given or not hmac.compare_digest(given.encode(), settings.admin_token.encode()):
        time.sleep(FAILED_SIGN_IN_DELAY_S)
        log.warning("curator sign-in refused: wrong admin token")
        raise gr.Error("That admin token is not right; nothing was signed in.", title="Sign-in refused",
                       print_exception=False)
    session["curator"] = "admin"
    log.info("curator signed in with the admin token")
    return session, access_line(settings, Curator("admin", "admin token"))


def access_line(settings, who: Curator | None) -> str:
    if not settings.public:
        return ""
    if who is None:
        return ("**Read-only**: this is a public instance, so the catalog can be searched and read but only "
                f"curators can edit, block, import or re-index. {how_to_sign_in(settings)}")
    return f"Signed in as curator **{who.name}** ({who.how}): edits, imports and re-indexing are open."


def access_updates(who: Curator | None, allowed: list[bool]) -> list[Any]:
    """``interactive`` for each editable widget: on for a curator where ``allowed`` (e.g. folder
    import may be off on this server whoever asks)."""
    return [gr.update(interactive=who is not None and ok) for ok in allowed]
