"""Selection by concept: which adapters' purposes cover which concepts of the prompt.

A prompt's *concepts* are the segmenter's keyword topics ("castle", "Studio Ghibli"), each as its
content words (function words never carry evidence; "style" and "in the style of" only mark a
style). An adapter's *purpose* (components/refiner/purpose.py) is what it renders ("studio
ghibli", "castle"), its kind and what it brings along.

For every (concept, adapter) the index measures
- lexical cover: the share of the concept's information (IDF over the catalog's purpose words)
  that the adapter's purpose words hold, with the concept's head noun required; words of the
  adapter's *name* count fully, tag and trigger words a little less;
- dense similarity: MiniLM cosine of the concept text and the adapter's card text.
An adapter *fits* a concept when the lexical cover is high and the dense similarity confirms it
(or the dense similarity alone is very high), and *brings nothing the prompt lacks*: no person
into a prompt without people, no woman where nobody is named, no character or franchise, nothing
sexual, no slider. Everything is decided per concept, so an incidental word ("on the", "looks
like", "a") can never carry a match.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from catalog.safety import prompt_asks_for
from components.lexicon import artist_movements, category_of
from components.prompt_text import COLOURS, content_words, lexer_words, normalize_word, word_zipf
from components.refiner.purpose import (BODY_WORDS, LABELS, MAN_WORDS, NOBODY, PERSON_WORDS, WOMAN_WORDS,
                                       names_medium, real_word)

# words that mark a concept as a style or medium without being its subject
STYLE_MARKERS = frozenset("style styled styles art artwork aesthetic look theme themed inspired".split())
# words that name a look rather than a thing ("anime illustration", "abstract", "surreal")
STYLE_TERMS = frozenset("anime manga cartoon comic illustration realistic photorealistic abstract surreal "
                        "surrealist surrealism impressionist impressionism expressionist cubist cubism baroque "
                        "renaissance gothic retro vintage cyberpunk steampunk synthwave vaporwave "
                        "minimalist minimalism psychedelic noir pastel 2d 3d".split())
# media by family: an adapter of one family brings its look into a prompt that names another
MEDIUM_FAMILIES = {
    "photography": frozenset("photo photograph photography photographic polaroid".split()),
    "painting or drawing": frozenset("painting paint oil watercolor watercolour gouache acrylic fresco mural "
                                     "impasto drawing sketch pencil charcoal crayon pastel lineart ink".split()),
    "3d render": frozenset("render 3d cgi lowpoly voxel claymation".split()),
}


def shows_person(terms) -> bool:
    """Whether an example prompt, as its index terms (``prompt_terms``), puts a person in the
    image: "1girl, city street" does, "no humans, tree, mountain" does not."""
    ts = set(terms)
    return bool(ts & EXAMPLE_PERSON_WORDS) and not ts & NO_PEOPLE_TERMS


def media_of(words) -> frozenset[str]:
    """The medium families these words name ("oil painting" -> painting or drawing)."""
    ws = set(words)
    return frozenset(name for name, family in MEDIUM_FAMILIES.items() if ws & family)


# framing words: "a portrait of", "a painting of" name how, not what; alone they pick nothing
FRAMING_ONLY = frozenset("portrait painting drawing photo photograph picture image illustration render "
                         "artwork art close closeup shot scene view design style pose".split())
# name words that say what kind of adapter it is, not something extra it draws
KIND_WORDS = frozenset("animal animals object objects clothing clothes outfit background backgrounds scenery "
                       "scene landscape photography photo painting illustration effect effects concept "
                       "collection series pack set asset assets design element elements suit costume".split())
# name words that praise or say how the file was made, not what it draws
NAME_NOISE = frozenset("better best improved enhanced ultimate perfect super extraction extracted merge merged "
                       "mix mixed remix experimental official unofficial custom simple easy lite".split())
MAX_EXTRA_NAME_WORDS = 1  # real words in the matched name piece that the prompt lacks ("Death Knight")
# prompt words that put a person in the image (adapters that bring one are then no foreign concept)
PROMPT_PERSON = PERSON_WORDS | frozenset(
    "player knight warrior soldier astronaut chef doctor nurse teacher student pilot driver rider "
    "surfer skier skater skateboarder trainer worker farmer cowboy pirate ninja samurai wizard witch "
    "king queen prince princess priest monk officer police policeman fireman firefighter athlete "
    "dancer singer musician guitarist drummer painter artist couple family crowd mother father "
    "son daughter sister brother grandma grandpa elder teenager adult toddler infant bride groom "
    "businessman businesswoman someone everyone anyone hand hands face figure ranger hunter archer "
    "mage sorcerer sorceress paladin cleric thief rogue assassin adventurer hero heroine villain "
    "warrior knight viking gladiator spartan explorer traveler traveller hiker tourist".split())
# garments: a list of them is someone's outfit ("shirt, jeans, barista")
GARMENT_WORDS = frozenset(
    "shirt tshirt blouse jeans pants trousers shorts skirt miniskirt dress gown kimono yukata hanfu "
    "bikini swimsuit lingerie underwear bra panties stocking stockings thighhigh thighhighs pantyhose "
    "legwear sock socks boot boots shoe shoes heels sneaker sneakers glove gloves hat cap beret hood "
    "hoodie sweater jacket coat cloak cape vest suit tie uniform outfit costume armor armour apron "
    "scarf necklace earring earrings glasses sunglasses mask helmet crown tiara corset leotard "
    "bodysuit robe gi belt".split())
# prompt words that name someone, part of someone or what someone wears (segment.prompt_shape)
PEOPLE_WORDS = PROMPT_PERSON | BODY_WORDS | GARMENT_WORDS

LEXICAL_FIT = 0.75  # share of the concept's information the purpose must hold
DENSE_CONFIRM = 0.6  # cosine that confirms a lexical match (rejects incidental tag matches)
DENSE_CONFIRM_NAME = 0.5  # ... when the adapter's name holds the whole concept ("MG_CORGI" for "corgi")
DENSE_CONFIRM_RARE_NAME = 0.3  # ... and the concept is a rare name MiniLM hardly knows ("Ukiyo-e", "Kawase Hasui")
DENSE_ALONE = 0.72  # cosine at which a concept fits without shared words (ranked with the fits) ...
DENSE_ALONE_PICK = 0.8  # ... and at which such a fit is picked (dev: 0.72-0.78 were other looks)
DENSE_EXTRA = 0.7  # cosine at which other words of the name are the concept's own
DENSE_RELATED = 0.5  # closer than this without shared words: related (ranked), not picked
DENSE_POOL = 40  # nearest cards per concept considered without shared words
STYLE_WORD_MIN, STYLE_WORD_SHARE = 3, 0.5  # a word most of whose named cards are styles names a style
CATEGORY_FACTOR = 0.85  # a category adapter ("food") ranks below one about the concept itself
NAME_WORD_PENALTY = 0.05  # per name word beyond the concept (plainer names rank first among fits)
TAG_FACTOR = 0.85  # a concept word found in tags/trigger words only counts this much
# an adapter whose example prompts nearly all show someone was trained or shown on people: for a
# prompt without people it ranks below an equally fitting one shown on things (a soft signal, not
# a refusal: a style is shown on whatever its author liked to draw)
PEOPLE_SHARE_PENALTY = 0.1
# ... and one that fits only a part of a prompt concept ("abstract" of "abstract painting") while
# nearly all its examples show people brings mostly its people: not picked for a prompt without any
PEOPLE_PART_REFUSE = 0.8
# words of an example prompt that put a person in it, and phrases that say nobody is there
EXAMPLE_PERSON_WORDS = PROMPT_PERSON | WOMAN_WORDS | MAN_WORDS
NO_PEOPLE_TERMS = frozenset({"no_humans", "no_people", "no_person", "nobody"})


@dataclass(frozen=True)
class Concept:
    text: str  # as written in the prompt
    words: tuple[str, ...]  # content words, style markers removed
    is_style: bool  # "Minecraft style", "in the style of ..."
    via: str = ""  # for a category stand-in ("food"): the prompt's word it stands for ("pizza")
    part: bool = False  # a part of a prompt concept ("corgi" of "corgi astronaut"), not all of it

    @property
    def head(self) -> str:
        return self.words[-1]


def concepts_of(segments) -> list[Concept]:
    """Concepts from the segmenter's topics: style markers removed, framing-only topics kept (they
    can still be matched when specific, e.g. "sketch"), colours-only topics dropped."""
    out: list[Concept] = []
    seen: set[tuple[str, ...]] = set()
    after_style = False  # "in the style of Van Gogh": the topic after a lone "style" is a style
    for text in (piece for seg in segments for piece in _split_style(seg.text)):
        words = tuple(w for w in content_words(text) if w not in STYLE_MARKERS)
        is_style = after_style or any(w in STYLE_MARKERS for w in lexer_words(text))
        after_style = not words and any(w in STYLE_MARKERS for w in lexer_words(text))
        if not words or set(words) <= COLOURS or words in seen:
            continue
        seen.add(words)
        # a painter's name asks for their style: "water lilies by Claude Monet"
        out.append(Concept(text, words, is_style or bool(artists_named(words, False))))
    return out


_IN_STYLE = re.compile(r"^(.+?)\s+(?:in|with)\s+(?:(?:the|a|an)\s+)?(.+?\s+(?:style|art|aesthetic))$", re.I)


def _split_style(text: str) -> list[str]:
    """"field in Minecraft style" -> "field", "Minecraft style": a subject and the style it is in."""
    m = _IN_STYLE.match(text.strip())
    return [m.group(1), m.group(2)] if m else [text]


@dataclass
class PromptContext:
    """What the whole prompt contains, for the "brings nothing the prompt lacks" rule."""
    words: frozenset[str]
    person: bool
    woman: bool
    man: bool
    explicit: bool
    suggestive: bool
    any_character: bool = False
    media: frozenset[str] = frozenset()  # medium families the prompt names  # the characters policy "all": characters count like any adapter

    @classmethod
    def of(cls, prompt: str, characters: str = "named") -> "PromptContext":
        words = frozenset(lexer_words(NOBODY.sub(" ", prompt)))  # "no humans" puts nobody in it
        explicit, suggestive = prompt_asks_for(prompt)
        return cls(words=words, person=bool(words & PROMPT_PERSON), woman=bool(words & WOMAN_WORDS),
                   man=bool(words & MAN_WORDS), explicit=explicit, suggestive=suggestive or explicit,
                   any_character=characters == "all", media=media_of(words))


def foreign(brings: list[str] | tuple[str, ...], ctx: PromptContext, named: bool = False) -> list[str]:
    """What an adapter brings that the prompt does not ask for. ``named``: the prompt names the
    adapter's own character/franchise (then the character and the person it is are asked for)."""
    out = []
    for b in brings:
        if named and b in ("person", "woman", "man", "character", "franchise"):
            continue  # a prompt that names the character asks for that person
        if b == "person" and not ctx.person:
            out.append("a person")
        elif b == "woman" and not ctx.woman:
            out.append("a woman or girl")
        elif b == "man" and not (ctx.man or ctx.woman is False and ctx.person):
            out.append("a man or boy")
        elif b in ("character", "franchise") and not (named or ctx.any_character):
            out.append("a character the prompt does not name" if b == "character" else "a franchise")
        elif b == "sexual" and not ctx.explicit:
            out.append("sexual content")
        elif b == "suggestive" and not ctx.suggestive:
            out.append("suggestive content")
        elif b == "slider" and not ctx.words & {"slider", "detail", "detailed", "contrast", "saturation",
                                                "brightness", "lighting", "light"}:
            out.append("a slider effect")
    return out


@dataclass
class ConceptIndex:
    """Purpose words of every indexed card, as an inverted index, plus their dense vectors."""
    name_words: list[frozenset[str]]
    naming_words: list[frozenset[str]]
    name_phrases: list[tuple[tuple[str, ...], ...]]
    words: list[frozenset[str]]
    brings: list[tuple[str, ...]]
    kinds: list[str] = field(default_factory=list)  # purpose kind per card (style, medium, subject, ...)
    style_words: frozenset[str] = frozenset()  # name words that mostly name styles or media ("anime")
    media: list[frozenset[str]] = field(default_factory=list)  # medium families each name names
    idf: dict[str, float] = field(default_factory=dict)
    postings: dict[str, np.ndarray] = field(default_factory=dict)
    vectors: np.ndarray | None = None  # (dim, cards), unit columns (transposed once), or None: lexical only
    people: np.ndarray | None = None  # per card: share of its example prompts that show a person (0..1)
    thing_words: frozenset[str] = frozenset()  # name words that mostly name things, not styles ("map")

    def set_vectors(self, rows: np.ndarray) -> None:
        """Card vectors as ``(cards, dim)`` rows; kept transposed and contiguous (one fast matmul)."""
        self.vectors = np.ascontiguousarray(np.asarray(rows, dtype=np.float32).T)

    @classmethod
    def build(cls, facts: list, vectors: np.ndarray | None = None,
              people: np.ndarray | None = None) -> "ConceptIndex":
        name_words, naming_words, name_phrases, words, brings = [], [], [], [], []
        df: dict[str, list[int]] = {}
        for i, f in enumerate(facts):
            ph = tuple(tuple(content_words(c)) for c in f.concepts)
            ws = with_stems(tuple(w for p in ph for w in p))
            name_phrases.append(tuple(tuple(content_words(c)) for c in f.name_concepts))
            parts = {part for p in name_phrases[-1] for w in p for part in compound_parts(w)}
            name_words.append(with_stems(frozenset(w for p in name_phrases[-1] for w in p) | parts))
            naming_words.append(frozenset(w for n in getattr(f, "naming_words", ()) for w in content_words(n)))
            words.append(ws | name_words[-1])
            brings.append(tuple(f.brings))
            for w in words[-1]:
                df.setdefault(w, []).append(i)
        n = max(len(facts), 1)
        idf = {w: math.log((n + 1) / (len(v) + 1)) + 1.0 for w, v in df.items()}
        postings = {w: np.asarray(v, dtype=np.int64) for w, v in df.items()}
        kinds = [getattr(f, "kind", "subject") for f in facts]
        named: dict[str, list[int]] = {}
        for i, ws in enumerate(name_words):
            for w in ws:
                named.setdefault(w, [0, 0])
                named[w][0] += 1
                named[w][1] += kinds[i] in ("style", "medium")
        style_words = frozenset(w for w, (n, k) in named.items() if n >= STYLE_WORD_MIN and k >= STYLE_WORD_SHARE * n)
        thing_words = frozenset(w for w, (n, k) in named.items() if n >= STYLE_WORD_MIN and k < STYLE_WORD_SHARE * n)
        media = [media_of(w for n in f.name_concepts for w in lexer_words(n)) for f in facts]
        index = cls(name_words, naming_words, name_phrases, words, brings, kinds, style_words, media, idf, postings,
                    thing_words=thing_words)
        if people is not None:
            index.people = np.asarray(people, dtype=np.float32)
        if vectors is not None:
            index.set_vectors(vectors)
        return index

    def is_look(self, i: int) -> bool:
        """Whether card ``i``'s purpose is a style or a medium (a look, not a thing)."""
        return bool(self.kinds) and self.kinds[i] in ("style", "medium")

    def word_idf(self, word: str) -> float:
        return self.idf.get(word, math.log(len(self.words) + 1) + 1.0)

    def lexical(self, concept: Concept, allowed: np.ndarray | None = None) -> dict[int, tuple[float, tuple[str, ...], bool]]:
        """card position -> (cover 0..1, matched words, head word in the name) for cards that hold
        the concept's head word."""
        words = {self.known_form(w): word_forms(w) for w in concept.words}
        total = sum(self.word_idf(w) for w in words)
        head_forms = word_forms(concept.head)
        found = [self.postings[f] for f in head_forms if f in self.postings]
        if not found or total <= 0:
            return {}
        heads = found[0] if len(found) == 1 else np.unique(np.concatenate(found))
        out = {}
        for i in heads.tolist():
            if allowed is not None and not allowed[i]:
                continue
            have, name = self.words[i], self.name_words[i]
            got = 0.0
            matched = []
            for w, forms in words.items():
                if not forms.isdisjoint(name):
                    got += self.word_idf(w)
                    matched.append(w)
                elif not forms.isdisjoint(have):
                    got += TAG_FACTOR * self.word_idf(w)
                    matched.append(w)
            out[i] = (got / total, tuple(sorted(matched)), not head_forms.isdisjoint(name))
        return out

    def known_form(self, word: str) -> str:
        """``word``, or the form the catalog's purposes use when only that one is known:
        "egyptian" -> "egypt", "surrealist" -> "surreal" (see :func:`word_forms`)."""
        if word in self.postings:
            return word
        return next((f for f in word_forms(word) if f in self.postings), word)

    def extra_words(self, i: int, concept: Concept, prompt_words: frozenset[str]) -> list[str]:
        """Real words of the adapter's name that the prompt lacks, which decide whether it fits.
        For a thing, of the whole name ("Maps #8 - Modern city" is about a modern city as well);
        for a style or medium, of the name piece holding the concept's head (the other pieces name
        where the style comes from: "Watercolor - in the style of <artist>"), or of the whole
        name when only its tags match. Made-up tokens, kind words and labels do not count."""
        style = _is_medium_or_style(concept)
        return [w for w in self._other_name_words(i, concept, prompt_words, whole=not style, parts=False)
                if real_word(w)]

    def name_specificity(self, i: int, concept: Concept, prompt_words: frozenset[str]) -> int:
        """How many words of the whole name say something the concept does not, made-up tokens
        ("Fechin", "AARG") and the words run together in them ("GameIconResearch") included:
        among adapters that fit, the plainest name is the likeliest to be about just the concept."""
        return len(self._other_name_words(i, concept, prompt_words, whole=True, parts=True))

    def _other_name_words(self, i: int, concept: Concept, prompt_words: frozenset[str],
                          whole: bool, parts: bool) -> list[str]:
        phrases = self.name_phrases[i]
        if not whole:
            head = word_forms(concept.head)
            phrases = [p for p in phrases if not head.isdisjoint(with_stems(p))] or phrases
        prompt_forms = with_stems(prompt_words)
        own = with_stems(concept.words) | prompt_forms
        # the artist a style comes from ("Pollock", "Claude Monet") is no other subject
        artist = _artist_words(self.name_phrases[i]) if self.is_look(i) else frozenset()
        out = set()
        for w in (w for p in phrases for w in p):
            if len(w) < 3 or not w.isalpha() or not word_forms(w).isdisjoint(prompt_forms):
                continue
            if w in artist:
                continue
            pieces = (compound_parts(w) if parts else ()) or (w,)
            out.update(x for x in pieces if word_forms(x).isdisjoint(own) and x not in NAME_NOISE
                       and x not in KIND_WORDS and x not in LABELS and x not in STYLE_MARKERS)
        return sorted(out)

    def dense(self, concept_vectors: np.ndarray) -> np.ndarray | None:
        """(concepts, cards) cosine matrix, or None without vectors."""
        if self.vectors is None or not len(self.vectors):
            return None
        return np.asarray(concept_vectors, dtype=np.float32) @ self.vectors


_SPACE = re.compile(r"\s+")
NAME_WORD_ZIPF = 3.5  # words more frequent than this in English name things, not someone
RARE_NAME_ZIPF = 2.0  # a word rarer than this is a name or a borrowed word ("ukiyo", "gogh")


DERIVATIONAL = ("istic", "ian", "ist", "ism", "ic", "al", "ish", "ese")
COMPOUND_PART_ZIPF = 2.5  # a word inside a made-up name token ("horse" in "EdobHorse")


STEM_MAX_ZIPF = 5.0  # a stem more common than this is too general to join forms ("realistic" -> "real")


@lru_cache(maxsize=4096)
def _artist_words(phrases: tuple[tuple[str, ...], ...]) -> frozenset[str]:
    """The words of a name that name an artist the lexicon knows, first names included."""
    return frozenset(w for p in phrases for name in artist_movements(list(p)) for w in name.split())


@lru_cache(maxsize=200_000)
def word_forms(word: str) -> frozenset[str]:
    """``word`` and its derivational stem, when that is a rarer real word: "egyptian" -> egypt,
    "surrealist" and "surrealism" -> surreal; matching compares forms, so each finds the others."""
    if len(word) >= 6:
        for suffix in DERIVATIONAL:
            stem = word[: -len(suffix)]
            if word.endswith(suffix) and len(stem) >= 4 and 0 < word_zipf(stem) <= STEM_MAX_ZIPF:
                return frozenset((word, stem))
    return frozenset((word,))


@lru_cache(maxsize=100_000)
def with_stems(words: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """The words and their stems (see :func:`word_forms`)."""
    return frozenset(f for w in words for f in word_forms(w))


@lru_cache(maxsize=100_000)
def compound_parts(token: str) -> tuple[str, ...]:
    """Real words run together in a made-up name token: "spaceshipai" -> spaceship, "oldegyptai"
    -> egypt, "edobhorse" -> horse (the longest words that are not inside a longer one)."""
    if len(token) < 6 or not token.isalpha() or word_zipf(token) > 0:
        return ()
    found = [token[a:b] for a in range(len(token)) for b in range(a + 4, len(token) + 1)
             if word_zipf(token[a:b]) >= COMPOUND_PART_ZIPF]
    return tuple(sorted({normalize_word(w) for w in found if not any(w != o and w in o for o in found)}))


def _common_word(word: str) -> bool:
    return word_zipf(word) >= NAME_WORD_ZIPF


def concept_text(concept: Concept) -> str:
    """What is embedded for a concept: its content words as written ("pixel art", "minecraft
    style"); the style markers stay here (they place the text among styles), only matching drops them."""
    return _SPACE.sub(" ", " ".join(content_words(concept.text)) or " ".join(concept.words))


@dataclass
class ConceptHit:
    """How one adapter relates to one concept of the prompt, and whether it fits it."""
    position: int  # card position in the index
    concept: int  # index into the prompt's concepts
    lexical: float  # share of the concept's information its purpose holds (0..1)
    dense: float  # cosine of concept text and card text
    score: float
    matched: tuple[str, ...]
    fits: bool
    why: str  # what it covers, or why it does not fit
    brings_foreign: bool = False  # it brings something the prompt lacks (never ranked up)
    ranks_as_fit: bool = False  # it fits, but too weakly to be picked: ranked among the fitting ones


def looks_word(word: str, style_words: frozenset[str] = frozenset()) -> bool:
    """Whether a word names a look rather than a thing: a medium or style word ("ink", "mural",
    "anime"), or a word that mostly names styles and media in the catalog's adapter names."""
    forms = word_forms(word)
    return bool(forms & (STYLE_TERMS | STYLE_MARKERS | style_words)) or names_medium([word]) or \
        any(forms & family for family in MEDIUM_FAMILIES.values())


def _rare_name(concept: Concept) -> bool:
    """Every real word of the concept is rare in English ("ukiyo-e", "Beksinski"): an adapter
    whose name holds it is about it, however little MiniLM makes of either text."""
    words = [w for w in concept.words if len(w) >= 3]
    return bool(words) and all(word_zipf(w) < RARE_NAME_ZIPF for w in words)


def _is_medium_or_style(concept: Concept) -> bool:
    return concept.is_style or names_medium(list(concept.words)) or bool(set(concept.words) & STYLE_TERMS)


SUB_CONCEPT_ZIPF = 4.5  # a rarer word of a compound ("corgi" in "corgi astronaut") is a concept too


def expand(concepts: list[Concept]) -> list[tuple[int, Concept]]:
    """(index of the prompt concept, concept to match): every concept, and the rarer non-head
    words of compounds ("corgi astronaut" -> "corgi"), which an adapter may render on their own."""
    out = [(k, c) for k, c in enumerate(concepts)]
    for k, c in enumerate(concepts):
        if "of" in lexer_words(c.text):
            continue  # "statue of liberty", "field of flowers": one thing, not a compound
        if len(c.words) >= 3:  # "surrealist dream-like oil painting" -> "oil painting"
            out.append((k, Concept(" ".join(c.words[-2:]), c.words[-2:], c.is_style, part=True)))
        for w in c.words[:-1]:
            if w not in COLOURS and len(w) >= 3 and word_zipf(w) < SUB_CONCEPT_ZIPF:
                out.append((k, Concept(w, (w,), c.is_style, part=True)))
    for k, c in enumerate(concepts):
        # an adapter about the whole category serves the concept ("Food Photography" for "pizza")
        cat = category_of(c.words)
        if cat is not None and cat not in c.words and not c.is_style:
            out.append((k, Concept(cat, (cat,), False, via=" ".join(c.words))))
        # ... and one in the movement of the artist it names ("surrealism" for "in the style of Dali")
        for name, movements in artists_named(c.words, c.is_style).items():
            out += [(k, Concept(m, tuple(content_words(m)), True, via=name)) for m in movements
                    if content_words(m) and not set(content_words(m)) & set(c.words)]
    return out


# a surname alone names the painter only when it is this rare in English ("Kandinsky", "Klimt",
# "Cezanne"); a more frequent one may be something else ("pollock" the fish, "cornet" the horn,
# "Raphael" the turtle) and needs a full name ("Jackson Pollock") or a style ("Monet style")
ARTIST_SURNAME_ZIPF = 2.6


def artists_named(words: tuple[str, ...], as_style: bool) -> dict[str, tuple[str, ...]]:
    """{artist: movements} for the artists ``words`` name (components/lexicon.py): by a full name
    ("Claude Monet") or a rare surname ("Kandinsky"); a surname that is a commoner word ("Monet",
    "Pollock", "Davis") only when ``as_style`` ("in the style of Monet")."""
    return {name: ms for name, ms in artist_movements(list(words)).items()
            if as_style or " " in name or word_zipf(name) < ARTIST_SURNAME_ZIPF}


def widest_first(ranked: list, covers: Callable[[Any], frozenset[str]]) -> list:
    """``ranked`` (best first) reordered so that an item whose ``covers`` (the words of a prompt
    concept an adapter's purpose holds) strictly contains another's comes before it: for "dutch
    baroque painting", "Rubens - Style" (baroque, painting) before "BaroqueAI" (baroque), whatever
    their scores. Items that cover no word (fitting by their card's closeness) keep their place."""
    held = [covers(x) for x in ranked]
    out, rest = [], list(range(len(ranked)))
    while rest:
        pick = rest[0]
        while held[pick]:
            wider = next((x for x in rest if held[x] > held[pick]), None)
            if wider is None:
                break
            pick = wider
        out.append(ranked[pick])
        rest.remove(pick)
    return out


def match_concepts(index: ConceptIndex, concepts: list[tuple[int, Concept]], ctx: PromptContext,
                   dense: np.ndarray | None, allowed: np.ndarray | None) -> list[ConceptHit]:
    """Every (concept, adapter) pair with evidence: adapters holding the concept's head word in
    their purpose, and adapters whose card text is very close to the concept (dense alone).
    ``concepts`` as ``expand`` gives them; ``dense`` has one row per entry."""
    hits: list[ConceptHit] = []
    for row_n, (k, con) in enumerate(concepts):
        framing = set(con.words) <= FRAMING_ONLY
        extra_limit = MAX_EXTRA_NAME_WORDS if _is_medium_or_style(con) else 0
        row = dense[row_n] if dense is not None else None
        lexical = index.lexical(con, allowed)
        for i, (cover, matched, in_name) in lexical.items():
            if row is not None:
                d = float(row[i])
            else:  # no vectors (the vector store is down): only a name that holds the whole concept
                d = DENSE_CONFIRM if in_name and cover >= 0.999 else 0.0
            hits.append(_judge(index, con, k, i, cover, d, matched, in_name, ctx, framing, extra_limit))
        if row is not None and len(row) and not con.via:  # a category stand-in needs its word
            size = min(DENSE_POOL, len(row))
            pool = np.argpartition(-row, size - 1)[:size]
            for i in pool.tolist():
                if i in lexical or row[i] < DENSE_RELATED or (allowed is not None and not allowed[i]):
                    continue
                hits.append(_judge(index, con, k, i, 0.0, float(row[i]), (), False, ctx, framing, extra_limit))
    return hits


def _judge(index: ConceptIndex, con: Concept, k: int, i: int, cover: float, d: float,
           matched: tuple[str, ...], in_name: bool, ctx: PromptContext, framing: bool,
           extra_limit: int) -> ConceptHit:
    # a character or franchise adapter counts as named when the concept holds a word that names it
    # (the subject part of its name: "Asuna" in "Asuna | Sword Art Online", not the series; see
    # composer/naming.py), and a rare one ("castle" in "Castle Girl" names nobody)
    named = any(not _common_word(w) for w in set(con.words) & index.naming_words[i])
    # ... and a style or medium the prompt asks for by its name, a rare word that is no look
    # ("in the style of Van Gogh" for "Fake Van Gogh Style", not "sketch"), comes with whom its
    # creator showed it on
    named = named or (in_name and cover >= 0.999 and _is_medium_or_style(con) and not con.via and index.is_look(i)
                      and any(not _common_word(w) and not looks_word(w, index.style_words) for w in con.words))
    brought = foreign(index.brings[i], ctx, named=named)
    if index.kinds and index.kinds[i] == "style" and _common_word(con.head) and not _is_medium_or_style(con) \
            and not with_stems(con.words) & index.style_words:
        # a style adapter for a thing ("a game-icon style" for "a sword"); a name ("Studio Ghibli")
        # or a style word ("anime") asks for a look
        brought.append("a style the prompt does not ask for")
    if ctx.media and index.media and index.is_look(i):
        own = index.media[i]
        if own and not own & ctx.media:  # "Food Photography" for "a painting of food"
            brought.append(f"{' and '.join(sorted(own))} where the prompt asks for {' and '.join(sorted(ctx.media))}")
    extra = index.extra_words(i, con, ctx.words)
    # for a style or medium, the one other word its name may hold must not be a thing the catalog's
    # adapters are named for ("Map sketch", "Glass Sculptures" draw maps and glass); a look
    # ("Chinese Ink painting", "pen sketch") or a word seldom in names ("Dreamscape") may stay
    things = [w for w in extra if not word_forms(w).isdisjoint(index.thing_words)
              and not looks_word(w, index.style_words)] if extra_limit else []
    shown_on_people = float(index.people[i]) if index.people is not None and not ctx.person else 0.0
    score = round((cover * (1.0 if in_name else 0.9) * (CATEGORY_FACTOR if con.via else 1.0) if matched else 0.3) + 0.5 * d
                  - NAME_WORD_PENALTY * min(index.name_specificity(i, con, ctx.words), 3)
                  - PEOPLE_SHARE_PENALTY * shown_on_people, 4)
    if brought:
        return ConceptHit(i, k, round(cover, 3), round(d, 3), score, matched, False,
                          f"brings {', '.join(brought)}", brings_foreign=True)
    if framing:
        why = f"{con.text!r} only says how the image is framed; too general to pick an adapter for"
    elif (len(extra) > extra_limit or (extra and not in_name and matched) or things) and not (
            ctx.any_character and "character" in index.brings[i]) and d < DENSE_EXTRA:
        # a character's name is no extra; a card very close to the concept ("Lunar Landscape" for
        # "moon") says the other words belong to it
        why = f"about {' '.join(extra)} as well: narrower than or beside {con.text!r}"
    elif not matched and d < DENSE_ALONE:
        why = f"close to {con.text!r} ({d:.2f}) but shares no word of it"
    elif matched and cover < LEXICAL_FIT:
        why = f"covers only {', '.join(matched)} of {con.text!r}"
    elif matched and d < (DENSE_CONFIRM if not (in_name and cover >= 0.999) else
                          DENSE_CONFIRM_RARE_NAME if _rare_name(con) else DENSE_CONFIRM_NAME):
        why = f"shares {', '.join(matched)} but its card is about something else (similarity {d:.2f})"
    elif con.part and shown_on_people >= PEOPLE_PART_REFUSE:
        # it fits, but not well enough to pick: ranked with the fitting ones, never composed
        return ConceptHit(i, k, round(cover, 3), round(d, 3), score, matched, False,
                          f"fits only {con.text!r} of the prompt's concept, and {shown_on_people:.0%} of its "
                          f"example prompts show people where the prompt has none", ranks_as_fit=True)
    elif not matched and d < DENSE_ALONE_PICK:
        return ConceptHit(i, k, round(cover, 3), round(d, 3), score, matched, False,
                          f"close to {con.text!r} ({d:.2f}) but shares no word of it: too little to pick",
                          ranks_as_fit=True)
    else:
        what = f"its purpose covers {', '.join(matched)}" if matched else f"its card is close to it ({d:.2f})"
        said = f"{con.via!r} as {con.text}" if con.via else repr(con.text)
        return ConceptHit(i, k, round(cover, 3), round(d, 3), score, matched, True, f"fits {said}: {what}")
    return ConceptHit(i, k, round(cover, 3), round(d, 3), score, matched, False, why)
