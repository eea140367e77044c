"""The one prompt lexer: A1111 syntax stripped, words, retrieval terms, content words.

Every part that splits text into words goes through here: ``raw_words`` (lower case as
written), ``lexer_words`` (plural and possessive removed) and ``content_words`` (without function
words: the words that can carry evidence) for the composer, naming, concepts and purposes;
``terms``/``prompt_terms`` (below) for the lexical indexes. The segmenter adds only structure
(clauses, topics) on top and takes its words from ``content_words``.

Prompt text as retrieval terms: A1111 syntax stripped, words, bigrams and tag phrases.

Real prompts are "tag soup" (``masterpiece, (school uniform:1.2), <lora:x:0.8>``). One prompt
becomes three kinds of terms, all lower case:
- words (``school``, ``uniform``; ``_`` splits words like a space does),
- bigrams inside one comma-separated phrase (``school_uniform``),
- whole phrases (``#school uniform``), which carry a creator's tag vocabulary.
Measured on the dev split (per-example-prompt BM25): words R@10 0.76, + bigrams 0.79,
+ phrases 0.80 (see bench/retrieval.py).

Prompts (the query and each example prompt, not card fields) also give *sequence* terms:
neighbouring phrases in order (``#masterpiece>#best quality``), runs of three, and the opening
three phrases (``^...``). They carry a creator's prompt template and tag order, which a user who
copies an example keeps: + R@10 0.018, R@150 0.016, MRR 0.022 on the dev split.
"""
from __future__ import annotations

import re
from functools import lru_cache

_NETWORK_TAG = re.compile(r"<\s*(?:lora|lyco|lycoris|locon|hypernet)\s*:[^>]*>", re.I)
_ANY_ANGLE = re.compile(r"<[^<>]{0,200}>")
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?")
_PHRASE_SPLIT = re.compile(r"[,()\[\]{}|\n;.!?]+|\bBREAK\b|\bAND\b")
_WORD = re.compile(r"[^\W_]+", re.U)  # a word: letters/digits; any other character, "_" too, splits
MAX_PROMPT_CHARS = 4000  # longer prompts are cut: CLIP reads 77 tokens, retrieval needs no more
MAX_PHRASE_WORDS = 6  # longer "phrases" are sentences: words and bigrams cover them


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ARTICLES = _words("a an the this that these those some any each every another other others such "
                  "its his her their our my your no own")
PREPOSITIONS = _words(
    "in on at to with of from by for into onto over under near beside behind between through "
    "across along against around above below inside outside during upon within without via toward "
    "towards past beneath atop underneath amongst among after before like next")
CONJUNCTIONS = _words("and or but while as so than then nor yet because if when where whereas though "
                      "although plus")
PRONOUNS = _words("it it's they them he she him we us you i me theirs hers who whom whose which what "
                  "there here someone something somebody anyone everyone anything everything itself "
                  "themselves himself herself")
AUXILIARIES = _words("is are was were be been being am has have had do does did can could will would "
                     "shall should may might must get gets got getting seems seem appears appear")
QUANTITIES = _words(
    "one two three four five six seven eight nine ten eleven twelve several many few couple bunch "
    "group pair lot lots number various different multiple all both dozen dozens herd set piece pieces "
    "variety bunches numerous plenty much more most less least single lone assortment array row rows "
    "stack pile flock")
ADVERBS = _words("very really just also only almost together ready about too quite rather nearly "
                 "mostly partially fully slightly extremely highly well still even up down out off "
                 "away back not")
FRAMING = _words("image picture photo photograph shot view close closeup front top side middle edge "
                 "left right background foreground kind type sort large big looking")
GENERIC_VERBS = _words(
    "sits sit sat stands stand holds hold holding wearing wears wear filled topped covered made "
    "dressed looks look shows show showing shown seen displayed displaying features featuring "
    "containing contains contain sitting standing placed located parked full")
VERBS_3RD = _words(
    "rides walks swims flies eats plays lies lays waits perches wades grazes runs jumps sleeps rests "
    "drinks poses smiles talks reads watches leans hangs lands travels drives pulls carries throws "
    "catches hits swings skates surfs skis makes takes goes comes uses works cuts prepares cooks")
STOPWORDS = (ARTICLES | PREPOSITIONS | CONJUNCTIONS | PRONOUNS | AUXILIARIES | QUANTITIES | ADVERBS
             | FRAMING | GENERIC_VERBS | VERBS_3RD)
COLOURS = _words("white black red blue green yellow orange pink purple brown gray grey silver gold "
                 "golden beige tan teal cyan magenta violet maroon navy turquoise blond blonde")
# quality / rendering boilerplate of tag-soup prompts: never a topic
BOILERPLATE = frozenset({
    "masterpiece", "best quality", "high quality", "highest quality", "top quality", "good quality",
    "normal quality", "quality", "ultra detailed", "ultra-detailed", "highly detailed",
    "extremely detailed", "very detailed", "detailed", "intricate details", "intricate detail",
    "intricate", "8k", "4k", "16k", "8k uhd", "uhd", "hdr", "hd", "highres", "high res", "absurdres",
    "high resolution", "ultra high res", "ultra high resolution", "best resolution", "sharp focus",
    "official art", "award winning", "award-winning", "trending on artstation", "raw photo",
    "extremely detailed cg unity 8k wallpaper", "unity 8k wallpaper", "8k wallpaper", "wallpaper",
    "incredibly absurdres", "huge filesize", "beautiful detailed", "perfect", "amazing",
    "professional", "high detail", "hyper detailed", "hyperdetailed", "super detailed",
    "insanely detailed", "ultra realistic details", "ultra quality", "masterwork", "best illustration",
    "finely detailed", "depth of field", "dof", "film grain",
})

def normalize_word(word: str) -> str:
    """Lower case and a light singular form ("bears" -> "bear", "glasses" stays), for matching."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "xes", "sses")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is", "sses")):
        return w[:-1]
    return w


@lru_cache(maxsize=100_000)
def word_zipf(word: str) -> float:
    """How common ``word`` is in English (wordfreq's Zipf scale: "the" 7.7, "castle" 4.5, a
    made-up token 0): which words name a concept, a person or nothing at all."""
    from wordfreq import zipf_frequency  # imported on first use: its word list takes a moment
    return zipf_frequency(word, "en")


def raw_words(text: str) -> list[str]:
    """The words of ``text`` in lower case as written (no plural or syntax handling): names, ids."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=8192)
def lexer_words(text: str) -> tuple[str, ...]:
    """Every word of ``text`` as selection matches it: A1111 syntax stripped, lower case, possessive
    and plural removed ("Conductor's hats" -> conductor, hat); ``_`` and ``-`` split words."""
    low = _POSSESSIVE.sub("", strip_syntax(text).lower())
    return tuple(normalize_word(w) for w in _WORD.findall(low))


@lru_cache(maxsize=8192)
def content_words(text: str) -> tuple[str, ...]:
    """``lexer_words`` without function words: the words that can carry evidence."""
    return tuple(w for w in lexer_words(text) if w not in STOPWORDS)


def normalize_phrase(text: str) -> tuple[str, ...]:
    """The matching words of a phrase (the composer's name for ``content_words``)."""
    return content_words(text)


_POSSESSIVE = re.compile(r"['’]s\b")


def strip_syntax(prompt: str) -> str:
    """Prompt without network tags (``<lora:NAME:W>``) and attention weights (``(x:1.2)``)."""
    text = _NETWORK_TAG.sub(" , ", prompt[:MAX_PROMPT_CHARS])
    text = _ANY_ANGLE.sub(" , ", text)
    return _WEIGHT.sub(" ", text)


def phrases(prompt: str) -> list[list[str]]:
    """Comma/bracket-separated phrases of a prompt, each as its list of lower-case words."""
    out = []
    for chunk in _PHRASE_SPLIT.split(strip_syntax(prompt)):
        words = _WORD.findall(chunk.lower())
        if words:
            out.append(words)
    return out


def phrase_key(words: list[str]) -> str:
    return "#" + " ".join(words)


def terms(text: str) -> list[str]:
    """Retrieval terms of a prompt or card field: words + in-phrase bigrams + phrase keys."""
    out: list[str] = []
    for words in phrases(text):
        out += words
        if len(words) > 1:
            out += [f"{a}_{b}" for a, b in zip(words, words[1:])]
        if len(words) <= MAX_PHRASE_WORDS:
            out.append(phrase_key(words))
    return out


def is_sequence_term(term: str) -> bool:
    return term.startswith("^") or ">" in term


def prompt_terms(prompt: str, skip: frozenset[str] = frozenset()) -> list[str]:
    """``terms`` plus the sequence terms of a prompt (phrase pairs, triples and its opening).
    ``skip``: phrase keys left out of the sequence (an adapter's own trigger words: users who do
    not know them write the creator's template without them)."""
    out = terms(prompt)
    keys = [k for k in (phrase_key(words) for words in phrases(prompt) if len(words) <= MAX_PHRASE_WORDS)
            if k not in skip]
    out += [f"{a}>{b}" for a, b in zip(keys, keys[1:])]
    out += [f"{a}>{b}>{c}" for a, b, c in zip(keys, keys[1:], keys[2:])]
    if len(keys) >= 3:
        out.append("^" + ">".join(keys[:3]))
    return out


def display_term(term: str) -> str:
    """A term as a user reads it (evidence): ``school_uniform`` -> ``school uniform``."""
    return term.lstrip("#").replace("_", " ")
