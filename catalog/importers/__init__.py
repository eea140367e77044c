"""Importers: Civitai dumps and API, local folders, Hugging Face repositories."""
from __future__ import annotations

from ground.redact import MASK as TOKEN_MASK  # the same mask as every other redaction


def without_token(text: str, token: str) -> str:
    """``text`` with ``token`` masked: a server's error reply may echo the token it was sent.
    Mask before cutting a reply short, or a cut token's first part would remain."""
    return text.replace(token, TOKEN_MASK) if token else text
