"""A card's category from its tags, name and description: the offline refiner records it and the
purpose extraction falls back to it (both import it from here)."""
from __future__ import annotations

import re

from catalog.card import AdapterCard

# tag or name word -> category; first match in card tag order wins
_CATEGORY_WORDS: dict[str, str] = {
    "character": "character", "characters": "character", "game character": "character",
    "anime character": "character", "vtuber": "character", "celebrity": "character", "person": "character",
    "style": "style", "art style": "style", "artstyle": "style", "styles": "style", "style lora": "style",
    "artist": "style", "illustration": "style", "painting": "style", "photorealistic": "style",
    "clothing": "clothing", "clothes": "clothing", "fashion": "clothing", "outfit": "clothing",
    "costume": "clothing", "uniform": "clothing", "dress": "clothing", "armor": "clothing", "cosplay": "clothing",
    "concept": "concept", "detailed": "concept", "tool": "tool", "slider": "tool", "utility": "tool",
    "background": "background", "backgrounds": "background", "scenery": "background", "landscape": "background",
    "environment": "background", "poses": "pose", "pose": "pose", "objects": "object", "object": "object",
    "weapon": "object", "vehicle": "vehicle", "car": "vehicle", "cars": "vehicle", "mecha": "vehicle",
    "animal": "animal", "animals": "animal", "creature": "animal", "pokemon": "animal",
    "building": "building", "buildings": "building", "architecture": "building",
    "action": "action", "food": "food", "plant": "plant", "flowers": "plant", "flower": "plant",
}


def category(card: AdapterCard) -> str:
    """The card's category: its first tag that names one, else the first category word in its name
    or description, else "other"."""
    for tag in card.tags:
        found = _CATEGORY_WORDS.get(tag.strip().lower())
        if found:
            return found
    text = f"{card.name} {card.description_clean[:400]}".lower()
    for word, cat in _CATEGORY_WORDS.items():
        if re.search(rf"\b{re.escape(word)}\b", text):
            return cat
    return "other"
