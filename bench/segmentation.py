"""Segmentation against the Stylus paper's topics: the metric, the naive baseline, the tagger.

    python bench/segmentation.py [--write] [--epochs N]

Metric (calibrated so that the naive baseline reproduces issue 4's figures: topic 0.38 / 0.44,
token 0.74 / 0.75 on COCO / Parti; measured 0.380 / 0.436 and 0.737 / 0.752):
- gold: the keys of the paper's ``ranked_adapters`` per caption; a row whose output is empty or
  unparsable has no gold topics (and scores 1 only when we predict nothing);
- words: whitespace tokens, lower case, punctuation stripped at both ends, light singular
  (``normalize_word``); stopwords are *kept* (the paper's "holding a white frisbee" is four words);
- topic-level F1 of a caption: a predicted topic counts when its set of words equals the set of
  one of the paper's topics; token-level F1: the set of words inside predicted topics against
  the set of words inside the paper's topics;
- both averaged over all captions (macro), 10,000 COCO and 1,632 Parti rows.
Naive baseline: split the caption at the words of ``FUNCTION_WORDS`` (only there, not at
punctuation); every run of other words is a topic.

``--write`` trains the tagger on all COCO + Parti captions and writes the shipped weights;
``held_out()`` gives the honest figures (cross-corpus and 5-fold COCO).
"""
from __future__ import annotations

import argparse
import ast
import csv
import gzip
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "stylus"

from components.composer.segment import (_clauses, _strip_boilerplate, _tokens,  # noqa: E402
                                          caption_words, normalize_word, segment)
from components.composer.tagger import TAGS, WEIGHTS, Model, sentence_features, viterbi  # noqa: E402

FUNCTION_WORDS = frozenset(
    "a an the of in on at to with and or is are was were be been being it its it's this that these "
    "those there their his her some has have had for from by as into onto over under next near "
    "while through up down out off about above below around behind between".split())
_STRIP = ".,;:!?\"()"
Row = tuple[str, list[str]]  # caption, the paper's topics (empty when none or unparsable)


def words(text: str) -> list[str]:
    return [normalize_word(w) for w in (t.strip(_STRIP) for t in text.lower().split()) if w]


def naive(caption: str) -> list[str]:
    out, cur = [], []
    for tok in caption.split():
        if tok.lower().strip(_STRIP) in FUNCTION_WORDS:
            out, cur = out + ([" ".join(cur)] if cur else []), []
        else:
            cur.append(tok)
    return out + ([" ".join(cur)] if cur else [])


def load_paper(name: str) -> list[Row]:
    rows = []
    with open(DATA / name, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                topics = ast.literal_eval(row["ranked_adapters"])
            except (ValueError, SyntaxError):
                topics = {}
            rows.append((row["caption"], list(topics) if isinstance(topics, dict) else []))
    return rows


def _f1(tp: int, fp: int, fn: int) -> float:
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_scores(rows: list[Row], segmenter) -> tuple[float, float]:
    """Macro topic-level and token-level F1 of ``segmenter(caption) -> list[str]`` (see above)."""
    topic = token = 0.0
    for caption, keys in rows:
        gold = {frozenset(words(k)) for k in keys} - {frozenset()}
        pred = {frozenset(words(k)) for k in segmenter(caption)} - {frozenset()}
        m = len(gold & pred)
        topic += _f1(m, len(pred) - m, len(gold) - m)
        gw, pw = set().union(*gold), set().union(*pred)
        token += _f1(len(gw & pw), len(pw - gw), len(gw - pw))
    return topic / max(1, len(rows)), token / max(1, len(rows))


def example(caption: str, keys: list[str]) -> tuple[list[str], list[bool], list[int]] | None:
    """Caption words, clause starts and gold tags, or None when a paper topic is not a span."""
    clauses = [c for c in (_strip_boilerplate(c) for c in _clauses(_tokens(caption))) if c]
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


def tagger_segmenter(model: Model):
    return lambda caption: [s.text for s in segment(caption, tagger=model)]


def held_out(coco: list[Row], parti: list[Row], folds: int = 5, epochs: int = 6) -> dict[str, tuple]:
    """Honest figures: train on one corpus and test on the other, and k-fold within COCO."""
    out = {"coco<-parti": f1_scores(coco, tagger_segmenter(train(parti, epochs))),
           "parti<-coco": f1_scores(parti, tagger_segmenter(train(coco, epochs)))}
    order = list(range(len(coco)))
    random.Random(1).shuffle(order)
    tot = [0.0, 0.0]
    for k in range(folds):
        test = [coco[i] for i in order[k::folds]]
        rest = [coco[i] for j, i in enumerate(order) if j % folds != k]
        t = f1_scores(test, tagger_segmenter(train(rest + parti, epochs)))
        tot = [tot[0] + t[0] * len(test), tot[1] + t[1] * len(test)]
    out[f"coco {folds}-fold (+parti)"] = (tot[0] / len(coco), tot[1] / len(coco))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"train on all captions and write {WEIGHTS.name}")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    coco, parti = load_paper("coco_rank.csv"), load_paper("parti_prompts.csv")
    if args.write:
        model = train(coco + parti, args.epochs)
        with gzip.open(WEIGHTS, "wt", encoding="utf-8") as fh:
            json.dump(model.to_json(), fh, separators=(",", ":"), sort_keys=True)
        print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size / 1e6:.2f} MB, {len(model.emit)} features)")
    for name, (t, k) in held_out(coco, parti, args.folds, args.epochs).items():
        print(f"held out {name:24} topic {t:.3f} token {k:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
