"""Prompt text as retrieval terms: A1111 syntax stripped, words, bigrams and tag phrases.

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

_NETWORK_TAG = re.compile(r"<\s*(?:lora|lyco|lycoris|locon|hypernet)\s*:[^>]*>", re.I)
_ANY_ANGLE = re.compile(r"<[^<>]{0,200}>")
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?")
_PHRASE_SPLIT = re.compile(r"[,()\[\]{}|\n;.!?]+|\bBREAK\b|\bAND\b")
_WORD = re.compile(r"[^\W_]+", re.U)  # a word: letters/digits; any other character, "_" too, splits
MAX_PROMPT_CHARS = 4000  # longer prompts are cut: CLIP reads 77 tokens, retrieval needs no more
MAX_PHRASE_WORDS = 6  # longer "phrases" are sentences: words and bigrams cover them


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
