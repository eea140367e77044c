"""Segmentation against the Stylus paper's topics: the metric, the naive baseline, the tagger.

    python bench/segmentation.py [--epochs N] [--folds K]

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

``held_out()`` gives the honest figures (cross-corpus and 5-fold COCO), retraining the tagger with
``tools/train_tagger.py`` (which also builds the shipped weights: ``python -m tools.train_tagger``).
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.composer.segment import segment  # noqa: E402
from components.composer.tagger import Model  # noqa: E402
from tools.train_tagger import PUNCTUATION, Row, load_paper, train, words  # noqa: E402

FUNCTION_WORDS = frozenset(
    "a an the of in on at to with and or is are was were be been being it its it's this that these "
    "those there their his her some has have had for from by as into onto over under next near "
    "while through up down out off about above below around behind between".split())


def naive(caption: str) -> list[str]:
    out, cur = [], []
    for tok in caption.split():
        if tok.lower().strip(PUNCTUATION) in FUNCTION_WORDS:
            out, cur = out + ([" ".join(cur)] if cur else []), []
        else:
            cur.append(tok)
    return out + ([" ".join(cur)] if cur else [])


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
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    coco, parti = load_paper("coco_rank.csv"), load_paper("parti_prompts.csv")
    for name, (t, k) in held_out(coco, parti, args.folds, args.epochs).items():
        print(f"held out {name:24} topic {t:.3f} token {k:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
