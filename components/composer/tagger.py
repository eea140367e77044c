"""A small BIO tagger that marks keyword topics in natural captions, learned from the paper.

The Stylus paper's composer (an LLM) splits COCO / PartiPrompts captions into keyword topics.
Its choices follow habits that rules capture badly (which adjectives stay with their noun,
when an action joins its subject, which counts and colours stand alone), so we learn them:
an averaged structured perceptron over word, suffix, shape, neighbour and lexicon features,
first-order Viterbi over the tags B (a topic starts), I (inside a topic) and O (no topic).
The weights are built by ``python -m tools.train_tagger`` from ../shared/data/stylus/ and
ship as ``segment_tagger.json.gz`` (feature -> three weights; no caption text is stored
beyond single words and word pairs); ``bench/segmentation.py`` measures them.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from components.prompt_text import COLOURS, STOPWORDS, normalize_word

TAGS = ("B", "I", "O")
B, I, O = 0, 1, 2
WEIGHTS = Path(__file__).with_name("segment_tagger.json.gz")
_NEG = float("-inf")


def _shape(word: str) -> str:
    if word.isdigit():
        return "d"
    if "-" in word:
        return "hyph"
    if word[:1].isupper():
        return "X" if len(word) == 1 or word[1:].islower() else "XX"
    return "x"


def sentence_features(words: list[str], breaks: list[bool]) -> list[list[str]]:
    """Feature names of every token; ``breaks[i]`` says a clause starts at token ``i``."""
    low = [w.lower() for w in words]
    return [_features(words, low, breaks, i, STOPWORDS, COLOURS, normalize_word) for i in range(len(words))]


def _features(words, low, breaks, i, stop, colours, norm) -> list[str]:  # noqa: ANN001 (hot path)
    w = low[i]
    prev = low[i - 1] if i > 0 else "<s>"
    prev2 = low[i - 2] if i > 1 else "<s>"
    nxt = low[i + 1] if i + 1 < len(low) else "</s>"
    nxt2 = low[i + 2] if i + 2 < len(low) else "</s>"
    brk_after = i + 1 < len(words) and breaks[i + 1]
    return [
        "b", "w=" + w, "n=" + norm(w), "s2=" + w[-2:], "s3=" + w[-3:], "sh=" + _shape(words[i]),
        "p=" + prev, "p2=" + prev2, "x=" + nxt, "x2=" + nxt2, "pw=" + prev + "|" + w, "wx=" + w + "|" + nxt,
        "ps3=" + prev[-3:], "xs3=" + nxt[-3:],
        f"stop={w in stop}", f"pstop={prev in stop}", f"xstop={nxt in stop}",
        f"col={w in colours}", f"xcol={nxt in colours}", f"ing={w.endswith('ing')}",
        f"brk={breaks[i]}", f"brka={brk_after}", f"first={i == 0}", f"last={i + 1 == len(words)}",
    ]


@dataclass
class Model:
    """Emission weights per feature (one per tag) and transition weights [prev][tag]."""
    emit: dict[str, list[float]]
    trans: list[list[float]]  # rows B, I, O and a fourth row for the sequence start

    def scores(self, feats: list[str]) -> list[float]:
        out = [0.0, 0.0, 0.0]
        for f in feats:
            ws = self.emit.get(f)
            if ws is not None:
                out[0] += ws[0]
                out[1] += ws[1]
                out[2] += ws[2]
        return out

    def decode(self, words: list[str], breaks: list[bool]) -> list[int]:
        """Best tag sequence; a topic never continues across punctuation (no I after a break)."""
        if not words:
            return []
        emissions = [self.scores(f) for f in sentence_features(words, breaks)]
        return viterbi(emissions, self.trans, breaks)

    def to_json(self) -> dict:
        return {"tags": list(TAGS), "trans": self.trans, "emit": self.emit}


def viterbi(emissions: list[list[float]], trans: list[list[float]], breaks: list[bool]) -> list[int]:
    """Best tag sequence for per-token ``emissions`` (one score per tag) under ``trans``.

    ``trans[p][t]`` scores tag ``t`` after tag ``p``; its fourth row scores the first tag. A topic
    never starts with I, I never follows O, and no I follows a clause start (``breaks[i]``)."""
    start = trans[3]
    best = [emissions[0][t] + start[t] if t != I else _NEG for t in range(3)]
    back: list[list[int]] = []
    for i in range(1, len(emissions)):
        row, ptr = [], []
        for t in range(3):
            if t == I and breaks[i]:
                row.append(_NEG)
                ptr.append(O)
                continue
            cands = [best[p] + trans[p][t] if not (t == I and p == O) else _NEG for p in range(3)]
            p = max(range(3), key=cands.__getitem__)
            row.append(cands[p] + emissions[i][t])
            ptr.append(p)
        best = row
        back.append(ptr)
    tag = max(range(3), key=best.__getitem__)
    path = [tag]
    for ptr in reversed(back):
        tag = ptr[tag]
        path.append(tag)
    return path[::-1]


def spans(tags: list[int]) -> list[tuple[int, int]]:
    """Token ranges [start, end) of the topics a tag sequence marks."""
    out: list[tuple[int, int]] = []
    start = None
    for i, t in enumerate(tags):
        if t == B or (t == I and start is None):
            if start is not None:
                out.append((start, i))
            start = i
        elif t == O and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(tags)))
    return out


@lru_cache(maxsize=2)
def load_model(path: Path = WEIGHTS) -> Model:
    """The shipped weights; a missing or broken file is a clear error, not a silent fallback."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        return Model(emit=data["emit"], trans=data["trans"])
    except (OSError, ValueError, KeyError) as exc:
        raise RuntimeError(f"segment tagger weights {path} are missing or unreadable ({exc}); "
                           "rebuild them with `python -m tools.train_tagger`") from exc
