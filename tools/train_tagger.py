"""Train the composer's topic tagger on the Stylus paper's topics and write its shipped weights.

    python -m tools.train_tagger [--epochs N] [--data DIR] [--out FILE]

Reads the paper's composer output for COCO and PartiPrompts captions (``coco_rank.csv``,
``parti_prompts.csv`` in ../shared/data/stylus/: a caption and its ``ranked_adapters``, whose
keys are the topics), turns every caption whose topics are spans of it into B/I/O tags and
trains the averaged structured perceptron of ``components/composer/tagger.py`` on all of them.
Writes ``components/composer/segment_tagger.json.gz`` unless ``--out`` names another file; the
same data and epochs give the same bytes. ``bench/segmentation.py`` measures the result
(held-out figures retrain with ``train`` below).
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: python tools/train_tagger.py
    sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "stylus"
CORPORA = ("coco_rank.csv", "parti_prompts.csv")

from components.composer.segment import caption_words, split_clauses, strip_boilerplate, tokenize  # noqa: E402
from components.composer.tagger import TAGS, WEIGHTS, Model, sentence_features, viterbi  # noqa: E402
from tools.shipped_files import reproducible_gzip  # noqa: E402
from components.prompt_text import normalize_word  # noqa: E402

PUNCTUATION = ".,;:!?\"()"  # stripped from both ends of a word before comparing
Row = tuple[str, list[str]]  # caption, the paper's topics (empty when none or unparsable)


def words(text: str) -> list[str]:
    """Whitespace tokens, lower case, punctuation stripped at both ends, light singular: how a
    paper topic is compared with a caption span (and, in the benchmark, with a predicted topic)."""
    return [normalize_word(w) for w in (t.strip(PUNCTUATION) for t in text.lower().split()) if w]


def load_paper(name: str, data: Path = DATA) -> list[Row]:
    """Rows of one of the paper's CSV files: each caption with the keys of its ``ranked_adapters``."""
    rows = []
    with open(data / name, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                topics = ast.literal_eval(row["ranked_adapters"])
            except (ValueError, SyntaxError):
                topics = {}
            rows.append((row["caption"], list(topics) if isinstance(topics, dict) else []))
    return rows


def example(caption: str, keys: list[str]) -> tuple[list[str], list[bool], list[int]] | None:
    """Caption words, clause starts and gold tags, or None when a paper topic is not a span."""
    clauses = [c for c in (strip_boilerplate(c) for c in split_clauses(tokenize(caption))) if c]
    toks, breaks = caption_words(clauses)
    norm = [normalize_word(t[0]) for t in toks]
    tags = [TAGS.index("O")] * len(toks)
    taken = [False] * len(toks)
    for key in sorted({k for k in keys if words(k)}, key=lambda k: -len(words(k))):
        want = frozenset(words(key))
        found = next(((a, b) for n in range(len(want), len(toks) + 1) for a in range(len(toks) - n + 1)
                      for b in [a + n] if frozenset(norm[a:b]) == want and not any(taken[a:b])), None)
        if found is None:
            return None
        a, b = found
        if any(breaks[a + 1:b]):
            return None  # the paper joined words across punctuation: not a span we can tag
        tags[a:b] = [TAGS.index("B")] + [TAGS.index("I")] * (b - a - 1)
        taken[a:b] = [True] * (b - a)
    return [t[0] for t in toks], breaks, tags


def train(rows: list[Row], epochs: int = 6, seed: int = 0) -> Model:
    """Averaged structured perceptron on the rows whose paper topics are spans of the caption."""
    data = []
    for caption, keys in rows:
        ex = example(caption, keys) if keys else None
        if ex is not None and ex[0]:
            data.append((sentence_features(ex[0], ex[1]), ex[1], ex[2]))
    emit: dict[str, list[float]] = {}
    acc: dict[str, list[float]] = {}  # sum of c * update, for averaging
    trans = [[0.0] * 3 for _ in range(4)]
    tacc = [[0.0] * 3 for _ in range(4)]
    model, c = Model(emit, trans), 1
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(data)
        for feats, breaks, gold in data:
            pred = viterbi([model.scores(f) for f in feats], trans, breaks)
            if pred != gold:
                for i, (g, p) in enumerate(zip(gold, pred)):
                    if g != p:
                        for f in feats[i]:
                            w, a = emit.setdefault(f, [0.0] * 3), acc.setdefault(f, [0.0] * 3)
                            w[g] += 1
                            w[p] -= 1
                            a[g] += c
                            a[p] -= c
                    gp, pp = (gold[i - 1], pred[i - 1]) if i else (3, 3)
                    if (gp, g) != (pp, p):
                        trans[gp][g] += 1
                        trans[pp][p] -= 1
                        tacc[gp][g] += c
                        tacc[pp][p] -= c
            c += 1
    avg = {f: [round(w[t] - acc[f][t] / c, 3) for t in range(3)] for f, w in emit.items()}
    avg = {f: w for f, w in avg.items() if max(map(abs, w)) >= 0.05}
    return Model(avg, [[round(trans[p][t] - tacc[p][t] / c, 3) for t in range(3)] for p in range(4)])


def write_weights(model: Model, path: Path = WEIGHTS) -> None:
    """Write ``model`` as gzipped JSON (sorted keys; the same model gives the same bytes)."""
    with reproducible_gzip(path) as gz:
        gz.write(json.dumps(model.to_json(), separators=(",", ":"), sort_keys=True).encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--data", type=Path, default=DATA, help=f"folder of {' and '.join(CORPORA)}")
    ap.add_argument("--out", type=Path, default=WEIGHTS, help="weights file to write (default: the shipped one)")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be 1 or more, got {args.epochs}")
    missing = [name for name in CORPORA if not (args.data / name).is_file()]
    if missing:
        ap.error(f"--data {args.data}: {', '.join(missing)} not found there")
    model = train([row for name in CORPORA for row in load_paper(name, args.data)], args.epochs)
    write_weights(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(model.emit)} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
