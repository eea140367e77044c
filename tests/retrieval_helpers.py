"""Hand-made, real-shaped adapter cards and a deterministic embedder for the retrieval tests."""
from __future__ import annotations

import hashlib
import re

import numpy as np

from catalog.card import AdapterCard, AdapterFile, ExampleImage


class HashEmbedder:
    """Bag of hashed words: same text, same vector; shared words, closer vectors."""

    def __init__(self, name: str = "test-hash-32", dim: int = 32):
        self.name = name
        self.dim = dim

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[i, 0] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def card(card_id: str, name: str, *, model_id: int, prompts: list[str] = (), tags: list[str] = (),
         triggers: list[str] = (), description: str = "", base_model: str = "SD 1.5", nsfw: bool = False,
         adapter_type: str = "LoRA", weights: list[float | None] | None = None, file: str | None = None,
         downloads: int = 100) -> AdapterCard:
    file = file or re.sub(r"\W+", "_", name.lower()) + ".safetensors"
    stem = file.rsplit(".", 1)[0]
    weights = list(weights) if weights is not None else [None] * len(prompts)
    examples = [ExampleImage(url=f"https://image.example/{card_id}/{i}.jpeg", prompt=p, lora_weight=w,
                             lora_names=[stem]) for i, (p, w) in enumerate(zip(prompts, weights))]
    return AdapterCard(
        id=card_id, source="civitai", civitai_model_id=model_id, civitai_version_id=int(re.sub(r"\D", "", card_id) or 0),
        name=name, base_model=base_model, base_model_raw=base_model, adapter_type=adapter_type,
        tags=list(tags), trigger_words=list(triggers), description_raw=description,
        description_clean=description, examples=examples, nsfw=nsfw, download_count=downloads,
        files=[AdapterFile(name=file, primary=True)])


def small_catalog() -> list[AdapterCard]:
    return [
        card("civitai-1", "Watercolor Wash Style", model_id=1, tags=["style", "watercolor"],
             triggers=["wcwash"], description="Soft watercolor look. Use weight 0.6-0.8.",
             prompts=["masterpiece, best quality, wcwash, watercolor, a fox in a meadow <lora:watercolor_wash_style:0.7>",
                      "best quality, (watercolor:1.2), paper texture, lighthouse by the sea"]),
        card("civitai-2", "Cyber Samurai Armor", model_id=2, tags=["clothing", "armor"],
             prompts=["masterpiece, best quality, 1boy, samurai armor, neon city, rain <lora:cyber_samurai_armor:0.8>",
                      "1girl, (cyber samurai armor:1.1), katana, glowing visor <lora:cyber_samurai_armor:0.9>"],
             weights=[0.8, 0.9]),
        card("civitai-3", "Hatsune Miku (Vocaloid)", model_id=3, tags=["character", "anime"],
             triggers=["hatsune miku"],
             prompts=["masterpiece, best quality, hatsune miku, twintails, aqua hair, stage, microphone"]),
        card("civitai-4", "Retro Diner Interior", model_id=4, tags=["background", "buildings"],
             description="Trigger word: retrodiner. 1950s diner backgrounds.",
             prompts=["retro diner, checkered floor, neon sign, booth seats, chrome stools"]),
        card("civitai-5", "Pinup Poster SDXL", model_id=5, base_model="SDXL 1.0", tags=["style"],
             prompts=["pinup poster, retro diner, 1girl, vintage"]),
        card("civitai-6", "Spicy Pose", model_id=6, nsfw=True, tags=["poses"],
             prompts=["1girl, lying on bed, retro diner, neon sign"]),
        card("civitai-7", "Lanterns Embedding", model_id=7, adapter_type="other", tags=["concept"],
             prompts=["paper lanterns, night market, festival, retro diner"]),
        card("civitai-8", "Watercolor Wash Style v2", model_id=1, tags=["style", "watercolor"],
             prompts=["watercolor, lighthouse, seagulls"]),
    ]


def retriever_over(cards: list[AdapterCard], home, embedder):
    """(a real Retriever, its store) over ``cards`` in a new catalog under ``home``; close the store."""
    from catalog.settings import Settings
    from catalog.store import CatalogStore
    from components.retriever import Retriever

    settings = Settings(home=home / "stylus", catalog_dir=home / "catalog")
    store = CatalogStore(settings.catalog_dir)
    for c in cards:
        store.upsert(c)
    return Retriever(settings, store, embedder=embedder), store


def select(retriever, prompt: str, top_k: int = 150):
    """(picked adapter ids, composition, retrieval) of ``prompt`` at the composer's defaults."""
    from components.composer import ComposeOptions, compose

    res = retriever.retrieve(prompt, top_k=top_k)
    comp = compose(prompt, res.candidates, ComposeOptions())
    return comp.adapter_ids(), comp, res
