"""One root for every error Stylus raises on purpose.

A front end catches :class:`StylusError` (plus the builtins it lists, such as
``FileNotFoundError``) and shows the message: the message names the value and what is allowed.
Errors of the layers subclass it where they are raised (``CatalogError`` in catalog/store.py,
``SettingsError`` in catalog/settings.py, ``DownloadError``, ``AdapterFileError`` ... in
components/), keeping any builtin base they had (``ValueError``, ``RuntimeError``) so that code
catching those still catches them.
"""
from __future__ import annotations


class StylusError(Exception):
    """A request Stylus cannot serve; the message says which value and what is allowed."""
