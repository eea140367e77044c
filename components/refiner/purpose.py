"""What an adapter is for: the concepts it renders, their kind, and what it brings along.

Read from the card's facts, in the project's own words (never the author's sentences):
- *concepts*: the subject part of the name ("Studio Ghibli Style LoRA" -> "studio ghibli"), the
  tags that say what it draws (not labels such as "style", "concept", "lora" or tags that a large
  share of the catalog carries), and trigger words that are real words (not "rzp4ss4ge");
- *kind*: style, medium, subject, object, clothing, place, pose, effect, utility or character;
- *brings*: what every image made with it gets whether the prompt asks or not: a person, a woman or
  man, a named character or franchise, sexual or suggestive content, a slider's effect.
Example prompts are weighed for one thing only: an adapter whose examples nearly all show a girl
brings a girl, even when its name does not say so (a "summer dress" trained on one model).

``purpose_of(card)`` is what selection reads: the curator's purpose, else the refiner's, else
one computed on the spot (a card imported but not refined yet).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

from catalog.card import AdapterCard, Purpose
from components.lexicon import artist_movements
from components.prompt_text import content_words, lexer_words, strip_syntax, word_zipf
from components.refiner.categories import category as derive_category

# tags and name words that label an adapter rather than say what it draws
LABELS = frozenset(
    "lora locon loha lycoris lyco dora model models concept concepts style styles art artstyle "
    "art style artist character characters anime tool tools utility slider sliders helper "
    "base model sd sd1 sd15 sd1.5 v1 v2 v3 v4 v5 version final test beta alpha edition pack "
    "collection beautiful cute realistic photorealistic illustration digital art digital "
    "highly detailed detailed high quality quality masterpiece 2d 3d meme memes trained "
    "by for the of and with in".split()) | {"style art", "art style", "anime style", "highly detailed"}
PERSON_WORDS = frozenset(
    "person people human humans man men woman women girl girls boy boys lady ladies female male "
    "1girl 2girls 3girls 1boy 2boys solo waifu husbando guy guys gentleman gentlemen kid kids child "
    "children teen teenager teenagers baby babies idol model face faces portrait portraits "
    "selfie cosplay cosplayer".split()) - {"model"}
WOMAN_WORDS = frozenset("woman women girl girls lady ladies female 1girl 2girls 3girls waifu "
                        "maid gyaru idol girlfriend wife bride princess queen witch nun schoolgirl".split())
# words of tags / trigger words that describe a body: the adapter draws a person
BODY_WORDS = frozenset("hair eyes eye skin sweat anatomy lips bangs ponytail twintails braid smile blush legs "
                       "thighs arms body breasts chest abs makeup eyelashes freckles".split())
MAN_WORDS = frozenset("man men boy boys male 1boy 2boys husbando guy guys gentleman king prince".split())
CHARACTER_TAGS = frozenset({
    "character", "characters", "anime character", "game character", "video game character",
    "cartoon character", "vtuber", "celebrity", "celebrities", "real person", "actor", "actress",
    "singer", "streamer", "oc", "original character", "waifu", "consistent character"})
FRANCHISE_TAGS = frozenset({
    "genshin impact", "genshin", "honkai", "honkai impact", "honkai star rail", "blue archive",
    "arknights", "azur lane", "kancolle", "hololive", "nijisanji", "pokemon", "league of legends",
    "fate", "fate/grand order", "touhou", "naruto", "one piece", "bleach", "jujutsu kaisen",
    "demon slayer", "kimetsu no yaiba", "my hero academia", "overwatch", "final fantasy",
    "star wars", "marvel", "dc comics", "disney", "dragon ball", "evangelion", "chainsaw man",
    "spy x family", "uma musume", "idolmaster", "love live", "princess connect", "nikke",
    "girls frontline", "girls' frontline", "vocaloid", "sword art online", "re:zero",
    "attack on titan", "jojo", "sailor moon", "zelda", "the legend of zelda", "elden ring",
    "cyberpunk 2077", "harry potter", "lord of the rings", "warhammer", "warhammer 40k",
})
SLIDER_WORDS = frozenset(
    "slider sliders tweaker enhancer detailer detail add_detail adddetail saturation contrast "
    "brightness exposure age weight fatness muscle offset noise offset lighting".split())
MEDIUM_WORDS = frozenset(
    "painting paint oil watercolor watercolour gouache acrylic ink sketch sketches drawing charcoal "
    "pencil pastel crayon marker lineart pixel pixelart mosaic woodcut "
    "engraving etching lithograph ukiyo ukiyo-e origami papercut clay claymation "
    "plasticine embroidery needlepoint photo photograph photography polaroid "
    "render 3d cgi lowpoly voxel graffiti mural chalk tattoo comic manga "
    "cartoon storybook illustration hieroglyphics fresco statue sculpture marble".split())
# media named by two words whose parts alone name something else ("art", "glass", "paper", "line")
MEDIUM_PHRASES = frozenset({"line art", "stained glass", "paper cut", "low poly", "oil painting", "pixel art",
                            "flat color", "vector art", "film photography", "analog film", "felt art"})


def names_medium(words: list[str]) -> bool:
    """Whether these words (a name, a tag, a concept) name a medium: one medium word, or a medium
    phrase such as "stained glass" (whose words alone do not: "Rope art", "Paper Mario")."""
    return bool(set(words) & MEDIUM_WORDS) or any(" ".join(words[n:n + 2]) in MEDIUM_PHRASES
                                                  for n in range(len(words) - 1))


KIND_BY_CATEGORY = {
    "style": "style", "character": "character", "clothing": "clothing", "background": "place",
    "building": "place", "pose": "pose", "action": "pose", "object": "object", "vehicle": "object",
    "food": "object", "tool": "utility", "animal": "subject", "plant": "subject", "concept": "effect",
}
# separators after which a name carries a version, a series or a note
_NAME_SPLIT = re.compile(r"\s[|/\-–—:]\s|[|/\[\](){}【】「」（）,]|\s-|:\s|\bby\s+\w+|\bv\d+(?:\.\d+)*\b", re.I)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
MAX_CONCEPTS = 10
PERSON_KINDS = ("character", "pose", "clothing")  # a pose or an outfit comes with someone in it
GIRL_EXAMPLE_SHARE = 0.8  # examples showing a woman, above which the adapter brings one
COMMON_TAG_SHARE = 0.04  # tags on more cards than this label rather than describe


@dataclass
class TagStats:
    """How many cards carry each tag: very common tags ("style", "anime") describe nothing."""
    cards: int = 0
    df: Counter = field(default_factory=Counter)

    def add(self, card: AdapterCard) -> None:
        self.cards += 1
        self.df.update({t.strip().lower() for t in card.effective_tags()})

    @classmethod
    def from_cards(cls, cards: Iterable[AdapterCard]) -> "TagStats":
        stats = cls()
        for card in cards:
            stats.add(card)
        return stats

    def common(self, tag: str) -> bool:
        return self.cards >= 200 and self.df.get(tag, 0) > COMMON_TAG_SHARE * self.cards


@lru_cache(maxsize=50_000)
def real_word(word: str) -> bool:
    """A word people write (not a made-up trigger token such as "rzp4ss4ge")."""
    return bool(re.fullmatch(r"[a-z][a-z'-]*", word)) and word_zipf(word) >= 1.5


def name_concepts(name: str) -> list[str]:
    """Pieces of the name that say what the adapter draws, labels removed."""
    out = []
    for piece in _NAME_SPLIT.split(name.replace("_", " ")):
        piece = _CJK.sub(" ", piece or "")
        words = [w for w in lexer_words(piece) if w not in LABELS and not re.fullmatch(r"v?\d+(\.\d+)*", w)]
        if words:
            out.append(" ".join(words))
    return out


def _phrase_ok(phrase: str) -> bool:
    words = content_words(phrase)
    return bool(words) and all(real_word(w) for w in words)


# "no humans", "no_people", "without people", "nobody": the image has no one in it (a card's tag or
# trigger word, or a phrase of a prompt: components/concepts.py PromptContext)
NOBODY = re.compile(r"\b(?:no|without)[\s_-]+(?:humans?|people|persons?|characters?)\b|\bnobody\b", re.I)


def says_nobody(text: str) -> bool:
    """A tag such as "no humans" or "no_people": the image has no one in it."""
    return bool(NOBODY.fullmatch(text.strip()))


def extract_purpose(card: AdapterCard, tag_stats: TagStats | None = None, category: str | None = None) -> Purpose:
    """The card's purpose from its facts (see the module docstring). ``category``: the one the
    refiner has just derived (default: the card's effective category, else derived from its tags)."""
    if category is None:
        category = card.curation.category or card.refined.category
        if not category or category == "other":
            category = derive_category(card)
    # a tag or trigger that says nobody is there ("no humans") names no person
    tags = [t.strip().lower() for t in card.effective_tags() if t and t.strip() and not says_nobody(t)]
    triggers = [p.strip().lower() for t in card.effective_trigger_words() for p in strip_syntax(t).split(",")]
    triggers = [t for t in triggers if t and len(t) <= 40 and not says_nobody(t)]
    from_name = name_concepts(card.name)
    label_tags = {t for t in tags if t in LABELS or (tag_stats is not None and tag_stats.common(t))}
    concepts = list(from_name)
    identity_words = set()
    for text in [card.name, *tags, *triggers]:
        identity_words.update(lexer_words(text.replace("_", " ")))
    kind = _kind(card, category, tags, bool(identity_words & SLIDER_WORDS) or category == "tool")
    concepts += movements_of(card.name, kind)
    concepts += [t for t in tags if t not in label_tags and not _CJK.search(t) and t not in CHARACTER_TAGS
                 and not set(t.split()) <= PERSON_WORDS]
    concepts += [t for t in triggers if _phrase_ok(t) and not set(content_words(t)) <= PERSON_WORDS | LABELS]
    concepts = [c for c in dict.fromkeys(concepts) if content_words(c)][:MAX_CONCEPTS]

    brings: list[str] = []
    if card.is_character() or set(tags) & CHARACTER_TAGS:
        brings.append("character")
    if set(tags) & FRANCHISE_TAGS:
        brings.append("franchise")
    # a style or medium is shown on whatever its author liked to draw; a subject adapter whose
    # examples are nearly all girls draws one
    girls_in_examples = kind not in ("style", "medium") and _examples_share(card, WOMAN_WORDS) >= GIRL_EXAMPLE_SHARE
    if identity_words & WOMAN_WORDS or girls_in_examples:
        brings.append("woman")
    if identity_words & MAN_WORDS:
        brings.append("man")
    trigger_tag_words = {w for t in [*tags, *triggers] for w in lexer_words(t.replace("_", " "))}
    if identity_words & PERSON_WORDS or trigger_tag_words & BODY_WORDS or kind in PERSON_KINDS or "woman" in brings or "man" in brings or "character" in brings:
        brings.append("person")
    rating = card.effective_rating()
    if rating == "explicit":
        brings.append("sexual")
    elif rating == "suggestive":
        brings.append("suggestive")
    if kind == "utility":
        brings.append("slider")
    return Purpose(concepts=concepts, kind=kind, brings=brings)


def movements_of(name: str, kind: str) -> list[str]:
    """The art movements of the artist a style or medium is named for ("Pollock/NewYorkSchool":
    abstract expressionism; components/lexicon.py), none for other kinds."""
    if kind not in ("style", "medium"):
        return []
    return [m for ms in artist_movements(lexer_words(name.replace("_", " "))).values() for m in ms]


def _examples_share(card: AdapterCard, words: frozenset[str]) -> float:
    prompts = [ex.prompt for ex in card.examples if ex.prompt.strip()]
    if len(prompts) < 2:
        return 0.0
    return sum(1 for p in prompts if set(lexer_words(p)) & words) / len(prompts)


def _kind(card: AdapterCard, category: str, tags: list[str], slider: bool) -> str:
    if card.is_character() or set(tags) & CHARACTER_TAGS:
        return "character"
    if slider:
        return "utility"
    if names_medium(lexer_words(card.name.replace("_", " "))) or any(names_medium(t.split()) for t in tags):
        return "medium"
    return KIND_BY_CATEGORY.get(category, "subject")


def purpose_of(card: AdapterCard) -> Purpose:
    """The purpose selection uses: curator's, else refiner's, else computed now."""
    if card.curation.purpose is not None:
        return card.curation.purpose
    if card.refined.purpose is not None:
        return card.refined.purpose
    return extract_purpose(card)
