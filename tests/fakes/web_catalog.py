"""A small adapter catalog and a launched web app for the web tests (no network, preview model)."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from catalog.card import AdapterCard, ExampleImage

XSS_DESCRIPTION = ('<img src=x onerror="window.__stylus_xss=1;alert(1)">'
                   '<script>window.__stylus_xss=2</script>Draws things in a test style.')

# (id, name, category, tags, trigger words, description) -- written for these tests
CARDS = [
    ("test-watercolor", "Watercolor Wash", "style", ["watercolor", "painting", "art style"],
     ["wtrclr"], "A soft watercolor painting style with paper texture."),
    ("test-corgi", "Corgi Dog", "animal", ["corgi", "dog", "animal"], ["corgi dog"],
     "A corgi dog with short legs and a fluffy tail."),
    ("test-astronaut", "Astronaut Suit", "clothing", ["astronaut", "space suit", "helmet"],
     ["astro suit"], "A white astronaut space suit with helmet."),
    ("test-moon", "Lunar Landscape", "background", ["moon", "lunar", "craters", "space"],
     ["moonscape"], "A grey lunar landscape with craters under a black sky."),
    ("test-neon", "Neon City", "background", ["neon", "cyberpunk", "city", "night"],
     ["neon city"], "Neon signs and rainy cyberpunk streets at night."),
    ("test-knight", "Silver Knight Armor", "clothing", ["knight", "armor", "silver"],
     ["slvr armor"], "Ornate silver plate armor of a knight."),
    ("test-pixel", "Pixel Art", "style", ["pixel art", "8-bit", "retro"], ["pixel style"],
     "Retro 8-bit pixel art style."),
    ("test-xss", "Injected Card", "concept", ["injection", "moon"], ["xss trigger"], XSS_DESCRIPTION),
    ("test-ranger", "Ranger Kiri (Moonfall)", "character", ["character", "ranger", "green cloak"],
     ["ranger kiri"], "A character: the ranger Kiri in a green cloak."),
]


def card(card_id: str, name: str, category: str, tags: list[str], triggers: list[str], desc: str) -> AdapterCard:
    c = AdapterCard(id=card_id, source="manual", name=name, base_model="SD 1.5", adapter_type="LoRA",
                    tags=tags, trigger_words=triggers, description_raw=desc, description_clean=desc,
                    recommended_weight=0.8, download_count=1000 - len(card_id),
                    examples=[ExampleImage(prompt=f"{' '.join(tags)}, {name.lower()}")])
    c.refined.category = category
    c.refined.description = desc
    c.refined.refiner = "test"
    return c


def write_catalog(catalog_dir: Path) -> list[str]:
    from catalog.store import CatalogStore
    with CatalogStore(catalog_dir) as store:
        with store.transaction() as tx:
            for row in CARDS:
                c = card(*row)
                store.upsert(c, tx)
                store.set_refined(c.id, c.refined, tx)
    return [row[0] for row in CARDS]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched_app(home: Path) -> Iterator[str]:
    """The real app (settings -> engine -> create_demo) on 127.0.0.1:<free port>; yields its URL."""
    from catalog.settings import Settings
    from stylus_ui.web import build_app

    demo, kwargs = build_app(Settings(home=home, torch_threads=1))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **kwargs)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
