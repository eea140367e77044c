"""What the adapter tests on the preview model share: a small request and a card for a local file."""
from __future__ import annotations

from catalog.card import AdapterCard, AdapterFile
from catalog.lora_file import sha256_file as file_sha256
from components.types import GenerationRequest


def lighthouse_request(**kw) -> GenerationRequest:
    """One 64x64 image in two steps (plus the baseline); ``kw`` overrides any field."""
    return GenerationRequest(**{**dict(prompt="a lighthouse", steps=2, width=64, height=64,
                                       num_images=1, seed=3, include_baseline=True), **kw})


def folder_card(card_id: str, path) -> AdapterCard:
    """A card for an adapter file on disk (as a folder import makes it)."""
    f = AdapterFile(name=path.name, sha256=file_sha256(path), primary=True)
    return AdapterCard(id=card_id, source="folder", name=card_id, local_path=str(path), files=[f])
