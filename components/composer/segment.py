"""Split a prompt into keyword topics, for natural captions and for tag-soup prompts.

Conventions follow the Stylus paper's composer output on COCO / PartiPrompts: a topic is a noun
phrase with its adjectives ("small dog", "black and white cat", "knitted hats"); an action verb
after its subject starts a new topic ("dog" | "eating treat"); articles, prepositions, counts
("two", "a group of"), pronouns, auxiliaries, framing words ("a picture of", "in front of") and
quality boilerplate ("masterpiece", "8k") are never topics. Tag-soup prompts keep each short
comma item whole ("school uniform", "looking at viewer"). Deterministic; no models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from components.composer.tagger import Model, load_model, spans
from components.concepts import PEOPLE_WORDS
from components.prompt_text import (ADVERBS, ARTICLES, AUXILIARIES, BOILERPLATE, COLOURS, CONJUNCTIONS,  # noqa: F401
                                    FRAMING, GENERIC_VERBS, PREPOSITIONS, PRONOUNS, QUANTITIES, STOPWORDS,
                                    VERBS_3RD, content_words, lexer_words, normalize_phrase,
                                    normalize_word)

# A prompt copies a creator's template when the best-matching adapter's score leads the second's by
# this factor: its example prompts (and its creator's) match the prompt far better than any other
# adapter's. Creator split (dev), the creator's adapter first: median lead 1.83, 81 % at 1.2 or
# more; first candidate someone else's: median lead 1.04. A tag list a user wrote leads by about
# 1.1. The composer adds that adapter to a tag list's composition; the retriever keeps a copied
# sentence's whole-prompt ranking.
TEMPLATE_LEAD = 1.2


_TOKEN = re.compile(r"<[^<>]*>|\d+\.\d+|[^\W_]+(?:['’-][^\W_]+)*|\S")
_BREAK = ",.;:!?()[]{}|\"/\\"


@dataclass(frozen=True)
class Segment:
    """One keyword topic: its text as written, its normalized words, and where it is in the prompt."""
    text: str
    words: tuple[str, ...]  # lower case, singular, prompt order
    start: int  # character offsets into the prompt
    end: int

    @property
    def head(self) -> str:
        """The last word: the noun a phrase is about ("dog" in "small dog")."""
        return self.words[-1]


def tokenize(prompt: str) -> list[tuple[str, int, int]]:
    """Tokens of ``prompt`` with their character offsets: words, numbers, ``<...>`` tags and
    single punctuation marks."""
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(prompt)]


def split_clauses(tokens: list[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """Split at punctuation and at <lora:...> style tags; drop A1111 weights such as ':1.2'."""
    clauses: list[list[tuple[str, int, int]]] = [[]]
    prev = ""
    for tok in tokens:
        text = tok[0]
        is_weight = prev == ":" and re.fullmatch(r"\d+(?:\.\d+)?", text) is not None
        if text.startswith("<") or text in _BREAK or is_weight or not (text[0].isalnum()):
            if clauses[-1]:
                clauses.append([])
        else:
            clauses[-1].append(tok)
        prev = text
    return [c for c in clauses if c]


# the marks of a prompt written in the adapters' own (booru) vocabulary: "1girl", "2boys",
# "(tag:1.2)", "[tag]", "<lora:name:1>"
_BOORU_MARK = re.compile(r"\b\d+(?:girl|boy|other)s?\b|[()\[\]<>{}]|:\d", re.IGNORECASE)
MAX_MODIFIERS = 4  # "a caption, morning light, film photo": at most this many comma items follow it


PromptShape = Literal["sentence", "list", "template"]


def prompt_shape(prompt: str) -> PromptShape:
    """How a prompt is read.

    - ``template``: many short comma items ("1girl, school uniform, library"), written in the
      adapters' own vocabulary (a creator's template): ranked by the whole prompt, composed by
      concept, and given the adapter whose example prompts it copies
      (``composer.offline.creators_template``).
    - ``sentence``: a caption, also one followed by a few modifiers ("a cup of coffee on a wooden
      table, morning light, film photo": a first item of four words or more with an article or a
      preposition, at most ``MAX_MODIFIERS`` items after it): ranked and composed by concept.
    - ``list``: short items that plainly are no template ("castle, mountains, sunset,
      watercolor": no person, body part or garment (``concepts.PEOPLE_WORDS``), no quality
      boilerplate): ranked like a template (a creator may have written it), composed by concept.
    Anything in booru syntax ("1girl", "(tag:1.2)") is a template. Creator split: 8 of 2,072 dev
    queries are sentences with modifiers, 29 plain lists."""
    items = [i for i in prompt.split(",") if i.strip()]
    if len(items) < 3:
        return "sentence"
    short = sum(1 for i in items if len(i.split()) <= 4)
    if short < 0.6 * len(items):
        return "sentence"
    if _BOORU_MARK.search(prompt):
        return "template"
    if _caption_with_modifiers(items):
        return "sentence"
    return "list" if _plain_list_without_people(items) else "template"


def is_tag_soup(prompt: str) -> bool:
    """A creator's template (:func:`prompt_shape`): composed by concept, plus the adapter it copies."""
    return prompt_shape(prompt) == "template"


def _plain_list_without_people(items: list[str]) -> bool:
    texts = [i.strip().lower() for i in items]
    if "_" in "".join(texts) or any(t in BOILERPLATE for t in texts):
        return False
    return not {w for t in texts for w in lexer_words(t)} & PEOPLE_WORDS


def _caption_with_modifiers(items: list[str]) -> bool:
    first = lexer_words(items[0])
    return len(first) >= 4 and len(items) <= 1 + MAX_MODIFIERS and bool(set(first) & (ARTICLES | PREPOSITIONS))



def strip_boilerplate(clause: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Remove a leading or whole boilerplate phrase ("best quality", "ultra detailed")."""
    low = [t[0].lower() for t in clause]
    for n in range(len(clause), 0, -1):
        if " ".join(low[:n]) in BOILERPLATE:
            return clause[n:]
    return clause


def caption_words(clauses: list[list[tuple[str, int, int]]]) -> tuple[list[tuple[str, int, int]], list[bool]]:
    """The words of a caption's clauses in order, and for each whether a clause starts there."""
    words: list[tuple[str, int, int]] = []
    breaks: list[bool] = []
    for clause in clauses:
        for k, tok in enumerate(clause):
            words.append(tok)
            breaks.append(k == 0)
    return words, breaks


def _tagged(clauses: list[list[tuple[str, int, int]]], model: Model) -> list[list[tuple[str, int, int]]]:
    """Topics of caption clauses as the learned tagger marks them (see ``tagger.py``)."""
    words, breaks = caption_words(clauses)
    tags = model.decode([w[0] for w in words], breaks)
    found = spans(tags)
    covered = {i for a, b in found for i in range(a, b)}
    for i, (text, _, _) in enumerate(words):  # keep a noun the tagger dropped ("people")
        low = text.lower()
        run_end = i + 1 == len(words) or breaks[i + 1] or words[i + 1][0].lower() in STOPWORDS
        if (i not in covered and run_end and low not in STOPWORDS and low not in COLOURS
                and not low.endswith("ing") and text[0].isalpha()):
            found.append((i, i + 1))
    return [words[a:b] for a, b in sorted(found)]


def _make(prompt: str, toks: list[tuple[str, int, int]]) -> Segment | None:
    start, end = toks[0][1], toks[-1][2]
    words = content_words(prompt[start:end])  # the one lexer (components/prompt_text.py)
    if not words:
        return None
    return Segment(text=prompt[start:end], words=words, start=start, end=end)


def segment(prompt: str, *, tagger: Model | None = None) -> list[Segment]:
    """Topics of ``prompt`` in order, each distinct set of words once.

    Tag-soup items of up to four words stay whole; sentences go through the learned tagger
    (``tagger`` replaces the shipped model, for held-out evaluation).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    model = tagger if tagger is not None else load_model()
    soup = is_tag_soup(prompt)
    pieces: list[list[tuple[str, int, int]]] = []
    sentence: list[list[tuple[str, int, int]]] = []
    for clause in split_clauses(tokenize(prompt)):
        clause = strip_boilerplate(clause)
        if not clause or " ".join(t[0].lower() for t in clause) in BOILERPLATE:
            continue
        if soup and len(clause) <= 4:
            while clause and clause[0][0].lower() in ARTICLES | QUANTITIES:
                clause = clause[1:]
            pieces += [clause] if clause else []  # a tag: keep "looking at viewer" whole
        elif soup:
            pieces += _tagged([clause], model)
        else:
            sentence.append(clause)
    pieces += _tagged(sentence, model) if sentence else []
    pieces.sort(key=lambda p: p[0][1])
    out: list[Segment] = []
    seen: set[frozenset[str]] = set()
    for piece in pieces:
        seg = _make(prompt, piece)
        if seg is not None and frozenset(seg.words) not in seen:
            seen.add(frozenset(seg.words))
            out.append(seg)
    return out
