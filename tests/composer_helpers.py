"""Hand-made cards and candidates for composer tests."""
from __future__ import annotations

from catalog.card import AdapterCard, Curation, Refined
from components.types import Candidate


def card(cid: str, name: str, category: str = "object", tags=(), triggers=(), weight=None,
         description: str = "", character: bool | None = None) -> AdapterCard:
    return AdapterCard(id=cid, source="manual", name=name, tags=list(tags), trigger_words=list(triggers),
                       civitai_model_id=abs(hash(cid)) % 100000, recommended_weight=weight,
                       refined=Refined(category=category, description=description),
                       curation=Curation(character=character))


def cand(c: AdapterCard, score: float = 1.0, **evidence) -> Candidate:
    return Candidate(card=c, score=score, evidence={k: list(v) for k, v in evidence.items()})
