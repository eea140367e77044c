"""Content rating of an adapter from all its evidence, not only the source's ``nsfw`` flag.

Civitai's flag is set by the uploader and is often false on adapters that are plainly sexual:
in the shared 2023 catalog about 300 of the 6,383 SD 1.5 models flagged SFW carry explicit words
in their name, tags or trigger words, and more show explicit example prompts. The screen reads

- the name, tags and trigger words (what the adapter *is*), and
- the positive example prompts (what its author makes with it),

and rates a card
- ``explicit``: sexual content (explicit words anywhere in that evidence, or the source flag),
- ``suggestive``: sexy / underwear / swimwear flavour in the name, tags or trigger words: kept
  out of a composition unless the prompt asks for that itself,
- ``sfw``: neither.
A curator's rating (``Curation.rating``, or the older ``Curation.nsfw`` switch) always wins.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from catalog.card import AdapterCard

Rating = Literal["sfw", "suggestive", "explicit"]
RATINGS: tuple[str, ...] = ("sfw", "suggestive", "explicit")

EXPLICIT_WORDS = (
    "nsfw", "nude", "nudes", "nudity", "naked", "porn", "porno", "pornographic", "pornography", "sex",
    "sexual", "sexually", "hentai", "pussy", "pussies", "vagina", "vaginal", "penis", "penises",
    "dick", "nipple", "nipples", "areola", "areolae", "cum", "cumshot", "semen", "fellatio", "blowjob",
    "handjob", "footjob", "paizuri", "titjob", "creampie", "bukkake", "orgasm", "masturbation",
    "masturbating", "erotic", "erotica", "lewd", "ahegao", "bdsm", "bondage", "genital", "genitals",
    "anus", "anal", "futanari", "futa", "topless", "bottomless", "ejaculation", "clitoris", "labia",
    "testicles", "xxx", "r18", "r-18", "18+", "doggystyle", "gangbang", "orgy", "rape",
    "tentacle sex", "spread legs", "spread pussy", "sex toy", "dildo", "vibrator", "cameltoe",
    "pubic hair", "see-through nipples", "no panties", "no bra", "exhibitionism", "uncensored",
    "shibari", "kinbaku", "rope bondage", "bdsm", "latex bondage", "boob", "boobs", "tits", "titties",
    "titty", "booty call", "milf", "hentai style",
)
SUGGESTIVE_WORDS = (
    "sexy", "seductive", "lingerie", "underwear", "panties", "panty", "bra", "thong", "bikini",
    "micro bikini", "swimsuit", "cleavage", "busty", "huge breasts", "large breasts", "big breasts",
    "gigantic breasts", "breasts", "ass", "butt", "thighs", "thick thighs", "fishnet", "fishnets",
    "garter belt", "pantyhose", "stockings", "leotard", "latex", "bunny suit", "bunnysuit",
    "pinup", "pin-up", "boudoir", "bimbo", "succubus", "skimpy", "revealing", "sideboob", "underboob",
    "upskirt", "wet clothes", "onsen", "undressing",
    "harness", "collar and leash", "tight clothes", "gravure",
)


def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = sorted({re.escape(w).replace(r"\ ", r"[\s_]+") for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + r")(?![^\W_])", re.I)


_EXPLICIT = _pattern(EXPLICIT_WORDS)
_SUGGESTIVE = _pattern(SUGGESTIVE_WORDS)
_NETWORK_TAG = re.compile(r"<[^<>]{0,200}>")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")  # "BoobShowerPress" -> "Boob Shower Press"


def explicit_words(text: str) -> list[str]:
    """Explicit words of ``text`` in lower case (each once, in order)."""
    return list(dict.fromkeys(m.group(0).lower().replace("_", " ") for m in _EXPLICIT.finditer(text)))


def suggestive_words(text: str) -> list[str]:
    return list(dict.fromkeys(m.group(0).lower().replace("_", " ") for m in _SUGGESTIVE.finditer(text)))


def screen(card: "AdapterCard") -> tuple[Rating, list[str]]:
    """(rating, reasons) of ``card`` from its source flag and its text, ignoring curation."""
    identity = " , ".join([card.name, *card.effective_tags(), *card.effective_trigger_words()])
    identity = identity + " , " + _CAMEL.sub(" ", identity)  # names run words together
    reasons: list[str] = []
    if card.nsfw:
        reasons.append("flagged nsfw by its source")
    found = explicit_words(identity)
    if found:
        reasons.append(f"explicit words in its name/tags/trigger words: {', '.join(found[:5])}")
    prompts = [ex.prompt for ex in card.examples if ex.prompt]
    in_examples = [w for p in prompts for w in explicit_words(_NETWORK_TAG.sub(" ", p))]
    if in_examples:
        words = list(dict.fromkeys(in_examples))
        reasons.append(f"explicit words in its example prompts: {', '.join(words[:5])}")
    if reasons:
        return "explicit", reasons
    found = suggestive_words(identity)
    if found:
        return "suggestive", [f"suggestive words in its name/tags/trigger words: {', '.join(found[:5])}"]
    return "sfw", []


_NEGATED = re.compile(r"\b(?:no|not|without|never|non|sfw|safe)[\s_-]+(?:\w+[\s_-]+)?\w+", re.I)


def prompt_asks_for(prompt: str) -> tuple[bool, bool]:
    """(explicit, suggestive): does the prompt itself ask for such content? Negated words
    ("no nudity", "without lingerie") ask for nothing."""
    text = _NEGATED.sub(" ", prompt)
    return bool(_EXPLICIT.search(text)), bool(_SUGGESTIVE.search(text))
