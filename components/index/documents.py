"""What the index stores for one card: lexical documents, the dense text and filter facts.

Each card gives
- one lexical *card document*: name, lora file name, tags, trigger words, category, refined
  description and keywords, and its example prompts (name/trigger words count twice),
- one lexical *prompt document* per example prompt (scored separately, max per card: the
  prompt a user writes usually resembles one example, not the average of all of them),
- one short dense text (MiniLM reads 256 tokens at most; short texts embed fast),
- the facts the retriever filters on.
``index_hash`` (stored with the vector) identifies what was embedded; which cards need
re-indexing is decided by the catalog hash of source + refined + curation (``store.hashes``).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from catalog.card import LOADABLE_TYPES, AdapterCard, Purpose
from components.prompt_text import is_sequence_term, phrase_key, phrases, prompt_terms, raw_words, terms
from components.composer.naming import subject_words
from components.refiner.purpose import movements_of, name_concepts, purpose_of

MAX_DENSE_CHARS = 80  # ~20 tokens: MiniLM cost grows fast with length (CPU, 2 cores)
INDEX_FORMAT = 11  # 6: purpose facts (concepts, name concepts, kind, brings); 7: naming words; 8: screen v2; 9: LoHa, LoKr, DoRA loadable; 10: an artist style's movements in its dense text; 11: run-together name words apart. Bump when documents change shape: every card is then re-indexed


@dataclass
class CardFacts:
    """Per-card facts the retriever needs without opening the catalog."""
    id: str
    civitai_model_id: int | None
    base_model: str
    nsfw: bool
    loadable: bool
    character: bool
    name_terms: list[str] = field(default_factory=list)  # words that name a character card
    download_count: int = 0
    creator: str = ""  # whose adapters share a prompt vocabulary (the retriever's creator signal)
    # the adapter's purpose (components/refiner/purpose.py), for selection by concept
    concepts: list[str] = field(default_factory=list)
    name_concepts: list[str] = field(default_factory=list)
    kind: str = "subject"
    brings: list[str] = field(default_factory=list)
    naming_words: list[str] = field(default_factory=list)  # words that name this character (naming.py)

    def to_dict(self) -> dict:
        # by hand: dataclasses.asdict deep-copies every field (half a second for 10K cards)
        return {"id": self.id, "civitai_model_id": self.civitai_model_id, "base_model": self.base_model,
                "nsfw": self.nsfw, "loadable": self.loadable, "character": self.character,
                "name_terms": list(self.name_terms), "download_count": self.download_count,
                "creator": self.creator, "concepts": list(self.concepts),
                "name_concepts": list(self.name_concepts), "kind": self.kind, "brings": list(self.brings),
                "naming_words": list(self.naming_words)}


@dataclass
class CardDocuments:
    facts: CardFacts
    card_terms: list[str]
    prompt_terms: list[list[str]]
    dense_text: str
    index_hash: str


def _name_words(card: AdapterCard) -> list[str]:
    text = " ".join([card.name, *card.effective_trigger_words()])
    words = {w for w in raw_words(text) if len(w) >= 3 and not w.isdigit()}
    return sorted(words)


def dense_text(card: AdapterCard, purpose: Purpose | None = None) -> str:
    """The text MiniLM embeds for a card; ``purpose``: its purpose when the caller has it already."""
    # the movements of an artist a style is named for say what the name alone does not to MiniLM
    movements = movements_of(card.name, (purpose or purpose_of(card)).kind)
    # words run together in a name ("EdobHorse", "OldEgyptAI") are read apart: MiniLM's word
    # pieces of the run-together form miss the words ("horse")
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", card.name)
    parts = [name, card.effective_category(), ", ".join(card.effective_tags()[:3]), ", ".join(movements)]
    text = ". ".join(p.strip() for p in parts if p and p.strip())
    return re.sub(r"[_()\[\]{}<>]", " ", text)[:MAX_DENSE_CHARS]


def card_documents(card: AdapterCard) -> CardDocuments:
    identity = [t for text in (card.name, card.lora_name, *card.effective_trigger_words()) for t in terms(text)]
    fields = [*card.effective_tags(), card.effective_category(), card.effective_description(), *card.refined.keywords]
    triggers = frozenset(phrase_key(words) for w in card.effective_trigger_words() for words in phrases(w))
    examples = [t for t in (prompt_terms(ex.prompt, triggers) for ex in card.examples if ex.prompt.strip()) if t]
    card_terms = identity + identity + [t for text in fields for t in terms(text)]
    card_terms += [t for p in examples for t in p if not is_sequence_term(t)]
    facts = CardFacts(
        id=card.id, civitai_model_id=card.civitai_model_id, base_model=card.base_model,
        nsfw=card.effective_nsfw(), loadable=card.adapter_type in LOADABLE_TYPES, character=card.is_character(),
        name_terms=_name_words(card) if card.is_character() else [], download_count=card.download_count,
        creator=card.creator)
    purpose = purpose_of(card)
    facts.concepts, facts.kind, facts.brings = list(purpose.concepts), purpose.kind, list(purpose.brings)
    facts.name_concepts = name_concepts(card.name)
    if "character" in purpose.brings or "franchise" in purpose.brings:
        subject = subject_words(card)  # the composer's own test of "the prompt names it"
        facts.naming_words = sorted(subject.words - subject.series)
    text = dense_text(card, purpose)
    blob = json.dumps([INDEX_FORMAT, facts.to_dict(), text, len(card_terms), len(examples)], ensure_ascii=False)
    return CardDocuments(facts=facts, card_terms=card_terms, prompt_terms=examples, dense_text=text,
                         index_hash=hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24])


def field_terms(card: AdapterCard, examples: bool = True) -> dict[str, set[str]]:
    """Terms per card field, for the evidence a candidate shows ("why was this retrieved");
    ``examples=False`` leaves out the example prompts (the retriever reads those from the index)."""
    fields = {
        "name": set(terms(f"{card.name}, {card.lora_name}")),
        "trigger_words": set(t for w in card.effective_trigger_words() for t in terms(w)),
        "tags": set(t for w in card.effective_tags() for t in terms(w)),
        "keywords": set(t for w in card.refined.keywords for t in terms(w)),
        "description": set(terms(card.effective_description())),
    }
    if examples:
        fields["examples"] = set(t for ex in card.examples for t in terms(ex.prompt))
    return fields
