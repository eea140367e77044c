"""Image inputs that check an upload before Gradio decodes it.

Gradio decodes an upload (``PIL.Image.open`` and conversion to an array) before a callback
runs, so a 5000x5000 image is decoded in full before any size check, and a file that is not an
image fails inside Gradio with its generic "Error". :func:`checked` makes an image input read
the file's size and header first (``components.generator.checks.probe_image``) and refuse with
a message that names the input and the limit; the page shows it like any other error.

(The check wraps the instance's ``preprocess``: a subclass of a Gradio component would make
Gradio write a ``.pyi`` stub next to this file at import time.)
"""
from __future__ import annotations

import functools
from typing import Any, TypeVar

import gradio as gr

from ground.errors import StylusError

C = TypeVar("C", gr.Image, gr.ImageEditor)


def checked(component: C, what: str, settings: Any) -> C:
    """``component`` (a ``gr.Image`` or ``gr.ImageEditor``/``gr.ImageMask``) with every uploaded
    file (an editor's background and layers) checked against the upload limits of ``settings``."""
    limits = {"max_pixels": settings.max_upload_pixels, "max_bytes": settings.max_upload_mb * 2**20}
    decode = component.preprocess

    def probe(file: Any, name: str) -> None:
        from components.api import probe_image
        source = file if isinstance(file, (bytes, bytearray, memoryview)) else getattr(file, "path", None)
        if source is None:
            return
        try:
            probe_image(source, name, **limits)
        except StylusError as exc:
            raise gr.Error(str(exc), title="Cannot use that upload", print_exception=False) from None

    @functools.wraps(decode)
    def preprocess(payload: Any) -> Any:
        if payload is None:
            return decode(payload)
        if isinstance(component, gr.ImageEditor):
            parts = payload
            if getattr(payload, "id", None) is not None:  # background and layers sent as blobs earlier
                parts = component.blob_storage.get(payload.id)
            if parts is not None:
                probe(parts.background, what)
                for i, layer in enumerate(parts.layers or [], 1):
                    probe(layer, f"mask layer {i}")
        elif not (getattr(payload, "url", None) or "").startswith("data:"):
            probe(payload, what)
        return decode(payload)

    component.preprocess = preprocess
    return component
