"""The public face of the method: everything a front end (``stylus_ui``) may use from components/.

A front end talks to one :class:`StylusEngine` with the typed requests and results of
:mod:`components.types`, checks its widgets' values with the limits of :mod:`components.limits`,
and turns results into text, files and pictures with the few presentation helpers listed here.
Nothing else in components/ is imported by a front end (``tests/test_foundation.py`` holds to it),
so the inside of the method can change without touching a tab or a command.

Names resolve on first use (module ``__getattr__``): importing this module loads no model, no
torch and no index, so the web app and the CLI start quickly; a type checker reads the imports
under ``TYPE_CHECKING`` below.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # the engine and its start-up status
    "StylusEngine": "components.engine", "StartupStatus": "components.engine",
    # typed requests and results
    "SelectRequest": "components.types", "Selection": "components.types",
    "GenerationRequest": "components.types", "GenerationResult": "components.types",
    "GeneratedImage": "components.types", "RetrievalResult": "components.types",
    "Candidate": "components.types", "Composition": "components.types", "Topic": "components.types",
    "TopicAdapter": "components.types", "Variant": "components.types",
    # the limits every entry checks its values against (slider ranges, argument checks)
    "limits": "components",
    # the weight rule and the masks' notices, as the user reads them
    "WEIGHT_RULE": "components.masks", "applied_weights": "components.masks",
    "repeated_masks_notice": "components.masks",
    # what an adapter is for (shown on its card, edited in the Catalog tab)
    "purpose_of": "components.refiner.purpose",
    # results as files and pictures
    "variant_label": "components.generator.grid", "result_grid": "components.generator.grid",
    "save_result": "components.generator.output", "served_by": "components.generator.output",
    "comfy_files": "components.generator.comfy", "save_workflow": "components.generator.comfy",
    # uploads: decoded and checked once, with the messages the generator gives
    "to_image": "components.generator.checks", "probe_image": "components.generator.checks",
    # the device a pipeline would run on (About tab)
    "resolve_device": "components.generator.pipeline",
}

# the keys of _EXPORTS, written out for readers and linters (tests/test_foundation.py compares them)
__all__ = ["Candidate", "Composition", "GeneratedImage", "GenerationRequest", "GenerationResult",
           "RetrievalResult", "SelectRequest", "Selection", "StartupStatus", "StylusEngine", "Topic",
           "TopicAdapter", "Variant", "WEIGHT_RULE", "applied_weights", "comfy_files", "limits",
           "probe_image", "purpose_of", "repeated_masks_notice", "resolve_device", "result_grid",
           "save_result", "save_workflow", "served_by", "to_image", "variant_label"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"components.api has no {name!r}; the public names are: {', '.join(__all__)}")
    value = importlib.import_module(f"{module}.{name}" if module == "components" else module)
    value = value if module == "components" else getattr(value, name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what the names are, for readers and type checkers; nothing is imported at run time
    from components import limits
    from components.engine import StartupStatus, StylusEngine
    from components.generator.checks import probe_image, to_image
    from components.generator.comfy import comfy_files, save_workflow
    from components.generator.grid import result_grid, variant_label
    from components.generator.output import save_result, served_by
    from components.generator.pipeline import resolve_device
    from components.masks import WEIGHT_RULE, applied_weights, repeated_masks_notice
    from components.refiner.purpose import purpose_of
    from components.types import (Candidate, Composition, GeneratedImage, GenerationRequest, GenerationResult,
                                  RetrievalResult, SelectRequest, Selection, Topic, TopicAdapter, Variant)
