"""The choices that settings, the CLI and the web widgets are built from, each spelled once.

A tuple per choice (the order is the order shown to users; the first is not necessarily the
default). Where code is typed with a ``Literal``, the tuple is read from it (``get_args``), so
each choice is spelled once.
"""
from __future__ import annotations

from typing import Literal, get_args

# composition: the offline composer (segments + tagger) or an LLM through litellm
ComposerName = Literal["offline", "llm"]
COMPOSERS: tuple[str, ...] = get_args(ComposerName)

# masks over a composition's adapters (components/masks.py; the paper's strategies)
MaskStrategy = Literal["all", "one_hot_loras", "one_hot_concepts"]
MASK_STRATEGIES: tuple[str, ...] = get_args(MaskStrategy)
DEFAULT_MASK_STRATEGY: MaskStrategy = "one_hot_loras"

# character / real-person adapters: named (only those the prompt names; the paper's rule),
# all (treated like any adapter), none
CharacterPolicy = Literal["named", "all", "none"]
CHARACTER_POLICIES: tuple[str, ...] = get_args(CharacterPolicy)

# what a generation starts from
Mode = Literal["txt2img", "img2img", "inpaint"]
MODES: tuple[str, ...] = get_args(Mode)

# settings of the generator and the index
SCHEDULERS: tuple[str, ...] = ("euler", "ddim", "dpm")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")  # and "cuda:N"
DTYPES: tuple[str, ...] = ("auto", "float32", "float16", "bfloat16")
CHROMA_MODES: tuple[str, ...] = ("embedded", "server")
# fused: merge a variant's adapters for its batch, exact restore afterwards; unfused: scalings only
ADAPTER_MODES: tuple[str, ...] = ("fused", "unfused")
HF_LOGIN: tuple[str, ...] = ("auto", "on", "off")
