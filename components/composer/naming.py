"""Does a prompt name a character adapter's character? (characters only when named: issue 4)

A character counts as named when the prompt contains
- one of its trigger phrases that is about the character itself: the phrase shares a word with
  the card's name, or is that name run together ("ahsokatano" for "Ahsoka Tano"); generic
  triggers that authors list beside the name ("dress", "twintails", "1girl") name nobody, or
- a distinctive word of the part of the card's name that names the subject: the text before the
  first separator ("Annie" in "Annie from League of Legends", "Kisaki" in "Kisaki | Blue
  Archive"), so a series or franchise ("league of legends", "genshin impact") alone names no
  character; words that describe rather than name ("realistic", "outfits", "girl") never count.
Measured on the dev split (bench/composer.py): see the "unnamed char" column.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from catalog.card import AdapterCard
from components.prompt_text import STOPWORDS, normalize_phrase, raw_words

# separators after which a card name usually carries the series, outfit or version
_SUBJECT_END = re.compile(r"\s[|/\-–—:]\s|\s(?:from|of|in)\s|[|(\[{/【「（]|\s-|:\s|,")
_LEADING_TAG = re.compile(r"^\s*(?:\[[^\]]*\]|【[^】]*】|\([^)]*\))\s*")
# words in character-card names that describe the adapter, not who it is
NOT_A_NAME = frozenset(
    "lora locon loha lycoris character characters chara girl girls boy boys woman women man men "
    "female male lady cute sexy beautiful beauty pretty realistic real anime manga cartoon style "
    "outfit outfits costume costumes skin skins cosplay uniform dress version ver full pack "
    "collection multiple various mix face likeness photo portrait guide complete all new old "
    "original default official fanart oc model models art artist concept dark light fantasy "
    "school idol maid princess queen king knight witch hero heroine villain mother sister "
    "family team series game games movie the and with "
    # franchises that head many character-card names; they name no one character
    "pokemon hololive nijisanji vtuber touhou kancolle genshin arknights".split())
MIN_WORD = 3  # shorter name words ("ai", "mo") match too much by chance
MIN_COMPACT = 4


def prompt_words(prompt: str) -> set[str]:
    """The prompt's words as the composer matches them: normalized, and raw lower-case tokens."""
    low = prompt.lower()
    return set(normalize_phrase(prompt)) | {w for w in raw_words(low) if w not in STOPWORDS}


def _distinctive(text: str) -> set[str]:
    return {w for w in normalize_phrase(text) if len(w) >= MIN_WORD
            and not re.fullmatch(r"v?\d+(\.\d+)*", w)} - NOT_A_NAME


@dataclass(frozen=True)
class Subject:
    """Distinctive words of the part of a card name that names its subject ("Annie" in "Annie
    from League of Legends"), and which of them belong to a several-word tag (likely a series:
    "genshin impact" in "Lisa Genshin Impact")."""
    words: frozenset[str] = frozenset()
    series: frozenset[str] = frozenset()

    def named_by(self, prompt_words: set[str]) -> bool:
        """A word outside the series tags, or the whole (Latin-script) name, is in the prompt."""
        hit = self.words & prompt_words
        if not hit:
            return False
        latin = {w for w in self.words if w.isascii()}
        return bool(hit - self.series) or latin <= hit


def subject_words(card: AdapterCard) -> Subject:
    """The first piece of the card name with a distinctive word ("Pokemon - Dawn" -> "Dawn")."""
    text = _LEADING_TAG.sub("", _LEADING_TAG.sub("", card.name))  # "[a] [b] Power | ..."
    series = {w for t in card.effective_tags() if len(t.split()) >= 2 for w in normalize_phrase(t)}
    for piece in _SUBJECT_END.split(text):
        words = _distinctive(piece)
        if words:
            return Subject(frozenset(words), frozenset(words & series))
    return Subject()


def _compact(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def naming_triggers(card: AdapterCard) -> tuple[str, ...]:
    """Trigger phrases (lower case) that name the character rather than describe it."""
    name_words = {w for w in normalize_phrase(card.name) if len(w) >= MIN_WORD} - NOT_A_NAME
    compact_name = _compact(card.name)
    out = []
    for phrase in (p for trig in card.effective_trigger_words() for p in trig.split(",")):
        low = phrase.strip().lower()
        if len(low) < MIN_WORD:
            continue
        words = set(normalize_phrase(low))
        compact = _compact(low)
        if (words & name_words
                or (len(compact) >= MIN_COMPACT and compact in compact_name)
                or any(len(w) >= MIN_COMPACT and w in compact for w in name_words)):
            out.append(low)
    return tuple(out)


def names_character(triggers: tuple[str, ...], subject: Subject, prompt_low: str,
                    words: set[str]) -> bool:
    """True when the prompt holds a naming trigger phrase or names the subject (``Subject``)."""
    spaced = prompt_low.replace("_", " ")  # booru tags: "amane_kanata" is "amane kanata"
    for trig in triggers:
        if trig.replace("_", " ") in spaced and re.search(r"(?<!\w)" + re.escape(trig.replace("_", " ")) + r"(?!\w)", spaced):
            return True
    return subject.named_by(words)
