"""Hybrid retrieval: the adapters whose examples and card match a prompt, with evidence.

Score of a card (each signal divided by its best value for this query, then summed):
  1.00 x best BM25 match among its example prompts   (users write prompts like the examples)
  0.05 x mean BM25 match over its example prompts
  0.30 x BM25 match of its card document             (name, tags, triggers, refined text, prompts)
  0.10 x MiniLM cosine of prompt and card text       (top 300 from chromadb)
  0.50 x best match of the query's prompt template (sequence terms: tag order, opening phrases)
         among the example prompts of any card by the same creator: a creator's adapters share a
         template, and a user who copies one keeps it (dev split R@150 0.92 -> 0.95; natural
         captions carry no template, so they are not flooded with one creator's adapters)
Weights tuned on the dev split (bench/retrieval.py prints the comparison).
A sentence (not a tag-style prompt) is also weighed *by concept* (components/concepts.py): the
adapters whose purpose fits one of its concepts rank first, then those related to a concept,
with the signals above (without the whole-prompt vector) added at equal weight. Then filters
(base model, NSFW, blocked - not indexed at all -, unloadable types, characters/real persons
unless the prompt names one), one card per Civitai model (its best version), top-K.
"""
from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import httpx
import numpy as np
from chromadb.errors import ChromaError

from catalog.card import AdapterCard
from catalog.safety import prompt_asks_for
from catalog.settings import Settings
from components.composer.segment import TEMPLATE_LEAD, prompt_shape, segment
from components.concepts import (EXAMPLE_PERSON_WORDS, NAME_WORD_ZIPF, NO_PEOPLE_TERMS, ConceptHit, ConceptIndex,
                                 PromptContext, concept_text, concepts_of, expand, match_concepts,
                                 widest_first)
from components.encoder import Embedder, make_embedder
from components.index.card_index import CardIndex, IndexReport, Progress
from components.index.documents import field_terms
from components.prompt_text import (MAX_PROMPT_CHARS, content_words, display_term, is_sequence_term, prompt_terms,
                                    strip_syntax, terms, word_zipf)
from components.types import Candidate, RetrievalResult, StylusError
from ground.choices import CHARACTER_POLICIES, CharacterPolicy

# what a stopped chroma server raises through HttpClient (httpx), or chromadb's own errors
VECTOR_STORE_DOWN: tuple[type[BaseException], ...] = (httpx.HTTPError, ConnectionError, ChromaError)
CARD_CACHE = 4096
DETAILED_EVIDENCE = 20  # candidates with per-field evidence; the rest say which card terms matched
DENSE_QUERY_CHARS = 120  # ~30 tokens: the query embedding stays a few ms on a CPU
EVIDENCE_TERMS = 12  # matched terms shown per field
COMMON_NAME_WORD = 12  # a name word shared by more character cards than this names nobody


@dataclass(frozen=True)
class Filters:
    base_model: str | None = "SD 1.5"  # None: any base model
    allow_nsfw: bool = False
    loadable_only: bool = True
    characters: CharacterPolicy = "named"  # named: only characters the prompt names
    one_per_model: bool = True  # show the best version of each Civitai model once

    def __post_init__(self) -> None:
        if self.characters not in CHARACTER_POLICIES:
            raise StylusError(f"character filter {self.characters!r} is not one of {', '.join(CHARACTER_POLICIES)}")


@dataclass(frozen=True)
class Fusion:
    prompt_max: float = 1.0
    prompt_mean: float = 0.05
    card: float = 0.3
    dense: float = 0.1
    creator: float = 0.5
    dense_pool: int = 300
    # selection by concept (components/concepts.py): for natural prompts the adapters whose purpose
    # fits a concept of the prompt come first; the whole-prompt signals above order the rest
    # (and keep ranking tag-style prompts written in a creator's template)
    concept: float = 1.0
    # of the whole-prompt signals, for sentences. Fitting adapters come first whatever it is; it
    # decides between the merely related ones and the unrelated adapters whose example prompts
    # share the sentence's words. A sentence that copies a creator's example prompts (its
    # whole-prompt leader leads every other model by TEMPLATE_LEAD) keeps weight 1 and no related
    # bonus. Dev, (weight, related bonus) (0.5, 0.5) / (0.6, 0.4) / (0.8, 0.4): natural nDCG@10
    # 0.549 / 0.549 / 0.540 (0.499 with (1.0, 0), before the artists' movements); the 143
    # creator-split sentences (all characters, no content filter): MRR 0.335 / 0.339 / -, R@10
    # hits 75 / 76 / 76 (0.351 and 81 with (1.0, 0); 2,072 queries in all)
    natural_prompt_weight: float = 0.6

    @classmethod
    def lexical_only(cls) -> "Fusion":
        return cls(dense=0.0)

    @classmethod
    def dense_only(cls) -> "Fusion":
        return cls(prompt_max=0.0, prompt_mean=0.0, card=0.0, dense=1.0, creator=0.0, dense_pool=2000, concept=0.0)

    @classmethod
    def whole_prompt(cls) -> "Fusion":
        """The hybrid ranking without selection by concept (the project before it)."""
        return cls(concept=0.0)


WHOLE_PROMPT_SIGNALS = ("prompt_max", "prompt_mean", "card", "dense", "creator")
FIT_BONUS = 2.0  # an adapter that fits a concept ranks above every one that is only related
# an adapter related to a concept (it shares the concept's words or its card is close to it, and
# brings nothing the prompt lacks) ranks above the adapters related to none; dev: of the judged
# related adapters 59 % are plausible or fit, of the unrelated ones in the top 10, 13 %
RELATED_BONUS = 0.4


def _leads(scores: np.ndarray, allowed: np.ndarray, groups: np.ndarray) -> bool:
    """Whether the best allowed score leads the best of every other model (``groups``: the model
    of each card; its other versions do not count) by ``TEMPLATE_LEAD``: a creator's template."""
    ok = np.where(allowed, scores, -np.inf)
    first = int(np.argmax(ok)) if ok.size else -1
    if first < 0 or not np.isfinite(ok[first]) or ok[first] <= 0:
        return False
    others = ok[groups != groups[first]]
    second = float(others.max()) if others.size else 0.0
    return float(ok[first]) >= TEMPLATE_LEAD * max(second, 0.0)


def _concept_values(found: list[ConceptHit], related: float) -> list[tuple[int, float]]:
    """(card position, value) of every hit that brings nothing foreign: its score plus
    ``FIT_BONUS`` when it fits (``related`` when it is only related). Among the adapters that fit
    one concept, an adapter whose purpose holds more of its words than another's takes the
    better value (``widest_first``), as the composer picks it."""
    covers: dict[tuple[int, int], frozenset[str]] = {}
    out: list[tuple[int, float]] = []
    fitting: dict[int, dict[int, float]] = {}  # concept -> position -> best fitting value
    for h in found:
        covers[h.concept, h.position] = covers.get((h.concept, h.position), frozenset()) | frozenset(h.matched)
        if h.brings_foreign:
            continue
        if h.fits or h.ranks_as_fit:
            best = fitting.setdefault(h.concept, {})
            best[h.position] = max(best.get(h.position, -np.inf), h.score + FIT_BONUS)
        else:
            out.append((h.position, h.score + related))
    for k, best in fitting.items():
        ranked = widest_first(sorted(best, key=lambda i: -best[i]), lambda i, k=k: covers[k, i])
        out.extend(zip(ranked, sorted(best.values(), reverse=True)))
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    top = float(x.max()) if x.size else 0.0
    return x / top if top > 0 else x


class Retriever:
    def __init__(self, settings: Settings, store, embedder: Embedder | None = None,
                 filters: Filters | None = None, fusion: Fusion | None = None, update: bool = True,
                 on_progress: Progress | None = None):
        """``update``: bring the index up to date first, reporting ``on_progress(done, total)``."""
        self.settings = settings
        self.store = store
        self.embedder = embedder or make_embedder(settings)
        self.filters = filters or Filters(base_model=settings.base_model_filter or None,
                                          allow_nsfw=settings.allow_nsfw,
                                          characters=settings.characters)
        self.fusion = fusion or Fusion()
        self.index = CardIndex(settings, self.embedder)
        self._cards: OrderedDict[str, AdapterCard] = OrderedDict()
        self._field_terms: dict[str, dict[str, set[str]]] = {}  # per cached card (see _evidence)
        self.last_report: IndexReport | None = None
        if update:
            self.last_report = self.index.update(store, on_progress=on_progress)
        self._arrange()

    def refresh(self, rebuild: bool = False, progress: bool = False) -> str:
        """Bring the index up to date with the catalog (incremental; ``rebuild``: every card
        embedded again); returns a summary line."""
        self.last_report = (self.index.rebuild if rebuild else self.index.update)(self.store, progress=progress)
        self._cards.clear()
        self._field_terms.clear()
        self._arrange()
        return self.last_report.summary()

    # ---- arrays over the indexed cards ---------------------------------------------------
    def _arrange(self) -> None:
        facts = list(self.index.facts.values())
        self.ids = [f.id for f in facts]
        self._pos = pos = {k: i for i, k in enumerate(self.ids)}
        self._base = np.array([f.base_model for f in facts], dtype=object)
        self._nsfw = np.array([f.nsfw for f in facts], dtype=bool)
        self._loadable = np.array([f.loadable for f in facts], dtype=bool)
        self._character = np.array([f.character for f in facts], dtype=bool)
        self._suggestive = np.array([bool({"suggestive", "sexual"} & set(f.brings)) for f in facts], dtype=bool)
        # the model of each card (its versions share it), as integer codes: compared over the
        # whole catalog for every sentence (``_leads``)
        models = [f"m{f.civitai_model_id}" if f.civitai_model_id is not None else f.id for f in facts]
        self._group = np.unique(np.array(models, dtype=object), return_inverse=True)[1].astype(np.int64) \
            if models else np.zeros(0, dtype=np.int64)
        self._names: dict[str, list[int]] = {}
        for i, f in enumerate(facts):
            for word in f.name_terms:
                self._names.setdefault(word, []).append(i)
        # words in many character names ("lora", "girl", "outfit", "genshin") name nobody
        common = max(COMMON_NAME_WORD, int(0.002 * len(facts)))
        self._names = {w: v for w, v in self._names.items() if len(v) <= common}
        # ... but a rare word of the part of a name that names its subject still names it: "a
        # gundam" names "Gundam RX78" (not the many "<someone> | Gundam SEED" cards); the composer's
        # own test (composer/naming.py) reads the same words
        for i, f in enumerate(facts):
            for word in getattr(f, "naming_words", ()):
                if word_zipf(word) < NAME_WORD_ZIPF and i not in self._names.get(word, ()):
                    self._names.setdefault(word, []).append(i)
        owners = np.array([pos[o] for o in self.index.prompts.owners], dtype=np.int64)
        self._prompt_order = np.argsort(owners, kind="stable")
        sorted_owners = owners[self._prompt_order]
        self._prompt_starts = np.r_[0, np.flatnonzero(np.diff(sorted_owners)) + 1] if len(owners) else np.zeros(0, int)
        self._prompt_cards = sorted_owners[self._prompt_starts] if len(owners) else np.zeros(0, int)
        self._prompt_counts = np.diff(np.r_[self._prompt_starts, len(owners)])
        self._card_pos = np.array([pos[o] for o in self.index.cards.owners], dtype=np.int64)
        self._card_row = {o: r for r, o in enumerate(self.index.cards.owners)}
        self._static_masks: dict[tuple, np.ndarray] = {}
        # cards of one creator as runs of _creator_order (a card without a creator is its own run)
        _, code = np.unique(np.array([f.creator or f"\0{f.id}" for f in facts], dtype=object), return_inverse=True)
        self._creator_order = np.argsort(code, kind="stable")
        sorted_code = code[self._creator_order]
        self._creator_starts = np.r_[0, np.flatnonzero(np.diff(sorted_code)) + 1] if len(code) else np.zeros(0, int)
        self._creator_code = np.searchsorted(sorted_code[self._creator_starts], code) if len(code) else code
        self.concept_index = ConceptIndex.build(facts, people=self._people_shares())

    def _people_shares(self) -> np.ndarray:
        """Per card, the share of its example prompts that show a person (components/concepts.py
        ``shows_person``), read from the indexed example prompts' terms (0 without examples)."""
        lex, n = self.index.prompts, len(self.ids)
        out = np.zeros(n, dtype=np.float32)
        if not len(lex.owners) or not len(self._prompt_cards):
            return out
        counts = lex.counts.tocsc()
        cols = lambda words: [c for c in (lex.vocab.get(w, -1) for w in words) if 0 <= c < counts.shape[1]]  # noqa: E731
        has = np.zeros(counts.shape[0], dtype=bool)
        person, nobody = cols(EXAMPLE_PERSON_WORDS), cols(NO_PEOPLE_TERMS)
        if person:
            has[np.unique(counts[:, person].indices)] = True
        if nobody:
            has[np.unique(counts[:, nobody].indices)] = False
        shown = np.add.reduceat(has[self._prompt_order].astype(np.float32), self._prompt_starts)
        out[self._prompt_cards] = shown / self._prompt_counts
        return out

    # ---- selection by concept ------------------------------------------------------------
    def concept_hits(self, prompt: str, allowed: np.ndarray | None, notices: list[str] | None = None,
                     characters: str = "named") -> tuple[list, list[ConceptHit]]:
        """(the prompt's concepts, every (concept, adapter) hit) for the adapters ``allowed``."""
        concepts = concepts_of(segment(prompt))
        if not concepts or not self.ids:
            return concepts, []
        dense = None
        try:
            if self.concept_index.vectors is None:
                self.concept_index.set_vectors(self.index.vector_matrix(self.ids))
        except VECTOR_STORE_DOWN as exc:
            if notices is not None:
                notices.append(f"concepts matched by words only: the vector index is not reachable "
                               f"({type(exc).__name__})")
        # parts of a concept ("corgi" of "corgi astronaut") only count through shared words: a part
        # no purpose holds is not embedded at all (one MiniLM text less)
        index = self.concept_index
        expanded = [(k, c) for n, (k, c) in enumerate(expand(concepts))
                    if n < len(concepts) or index.known_form(c.head) in index.postings]
        if self.concept_index.vectors is not None:
            dense = self.concept_index.dense(self.index.embed_texts([concept_text(c) for _, c in expanded]))
        return concepts, match_concepts(self.concept_index, expanded, PromptContext.of(prompt, characters),
                                        dense, allowed)

    # ---- scoring ---------------------------------------------------------------------
    def _dense(self, text: str, pool: int, notices: list[str] | None) -> list[tuple[str, float]]:
        """Dense neighbours; when the vector store is unreachable (a chroma server that stopped),
        none, with a notice: the lexical signals still rank, and the next query tries again."""
        try:
            return self.index.dense_scores(text, pool)
        except VECTOR_STORE_DOWN as exc:
            where = (f"the chroma server at {self.settings.chroma_host}:{self.settings.chroma_port}"
                     if self.settings.chroma_mode == "server" else "the vector index")
            if notices is not None:
                notices.append(f"{where} is not reachable ({type(exc).__name__}: {str(exc)[:120]}); "
                               "ranked with the lexical index only until it is back")
            return []

    def _signals(self, query_terms: list[str], dense_text: str, fusion: Fusion,
                 notices: list[str] | None = None) -> dict[str, np.ndarray]:
        n = len(self.ids)
        out = {k: np.zeros(n, dtype=np.float32) for k in ("prompt_max", "prompt_mean", "card", "dense", "creator")}
        if (fusion.prompt_max or fusion.prompt_mean or fusion.creator) and len(self._prompt_order):
            # BM25 adds up over terms: score the template (sequence) terms apart, then sum
            template = [t for t in query_terms if is_sequence_term(t)]
            rest = [t for t in query_terms if not is_sequence_term(t)]
            by_template = self.index.prompts.scores(template)[self._prompt_order]
            s = self.index.prompts.scores(rest)[self._prompt_order] + by_template
            out["prompt_max"][self._prompt_cards] = np.maximum.reduceat(s, self._prompt_starts)
            out["prompt_mean"][self._prompt_cards] = np.add.reduceat(s, self._prompt_starts) / self._prompt_counts
            if fusion.creator and template:  # creators whose prompt template (tag order) the query shares
                own = np.zeros(n, dtype=np.float32)
                own[self._prompt_cards] = np.maximum.reduceat(by_template, self._prompt_starts)
                best = np.maximum.reduceat(own[self._creator_order], self._creator_starts)
                out["creator"] = best[self._creator_code]
        if fusion.card and len(self._card_pos):
            out["card"][self._card_pos] = self.index.cards.scores(query_terms)
        if fusion.dense and dense_text:
            for card_id, sim in self._dense(dense_text, fusion.dense_pool, notices):
                i = self._pos.get(card_id)
                if i is not None:
                    out["dense"][i] = max(sim, 0.0)
        return out

    def _allowed(self, filters: Filters, query_terms: list[str], suggestive: bool = False) -> np.ndarray:
        """The cards the filters let through for a prompt of ``query_terms``; ``suggestive``: the
        prompt itself asks for suggestive content (catalog/safety.py ``prompt_asks_for``)."""
        key = (filters.base_model, filters.allow_nsfw, filters.loadable_only, filters.characters != "all",
               suggestive)
        static = self._static_masks.get(key)
        if static is None:  # the query-independent part, computed once per filter setting
            static = np.ones(len(self.ids), dtype=bool)
            if filters.base_model:
                static &= (self._base == filters.base_model) | (self._base == "unknown")
            if not filters.allow_nsfw:
                static &= ~self._nsfw
                if not suggestive:
                    # a SFW selection shows a suggestive adapter ("... Swimsuit", "Ass on Table") only
                    # to a prompt that asks for such content: the composer would never pick it either
                    static &= ~self._suggestive
            if filters.loadable_only:
                static &= self._loadable
            if filters.characters != "all":
                static &= ~self._character
            self._static_masks[key] = static
        if filters.characters != "named":
            return static
        named = [i for t in set(query_terms) for i in self._names.get(t, ())]
        if not named:
            return static
        ok = static.copy()
        ok[named] = self._static_masks_named(filters, suggestive)[named]
        return ok

    def _static_masks_named(self, filters: Filters, suggestive: bool) -> np.ndarray:
        """Characters the prompt names pass the character filter, not the other filters."""
        return self._allowed(replace(filters, characters="all"), [], suggestive)

    def rank(self, prompt: str, top_k: int, filters: Filters | None = None,
             fusion: Fusion | None = None, notices: list[str] | None = None,
             hits: list | None = None) -> list[tuple[int, float, dict[str, float]]]:
        """(card position, fused score, per-signal scores) of the best ``top_k`` cards.
        ``hits``: a list that receives (concepts, concept hits) when concepts were weighed."""
        filters, fusion = filters or self.filters, fusion or self.fusion
        query_terms = prompt_terms(prompt)
        if not self.ids or not prompt.strip():
            return []
        dense_text = re.sub(r"\s+", " ", strip_syntax(prompt)).strip()[:DENSE_QUERY_CHARS]
        shape = prompt_shape(prompt)
        # every prompt is weighed by concept (the composer composes a tag list a user wrote by
        # concept); only a sentence is also ranked by it: a plain list or a template ranks by the
        # whole-prompt signals, which find the creator whose template it copies
        by_concept_path = bool(fusion.concept)
        rank_by_concept = by_concept_path and shape == "sentence"
        # a sentence is embedded per concept below; the whole-prompt vector would cost a second
        # MiniLM call (~15 ms on one CPU thread) for a signal the concepts' vectors already carry
        whole = replace(fusion, dense=0.0) if rank_by_concept else fusion
        signals = self._signals(query_terms, dense_text, whole, notices)
        fused = sum(getattr(whole, k) * _unit(v) for k, v in signals.items()
                    if getattr(whole, k) and k in WHOLE_PROMPT_SIGNALS)
        allowed = self._allowed(filters, query_terms, any(prompt_asks_for(prompt)))
        if by_concept_path:
            concepts, found = self.concept_hits(prompt, allowed, notices, filters.characters)
            if hits is not None:
                hits.extend([concepts, found])
            # fitting adapters first, then those related to a concept, then the rest; a sentence
            # copied from a creator's example prompts keeps its whole-prompt order below the fits
            copied = rank_by_concept and _leads(fused, allowed, self._group)
            related = 0.0 if copied else RELATED_BONUS
            by_concept = np.zeros(len(self.ids), dtype=np.float32)
            for position, value in _concept_values(found, related):
                by_concept[position] = max(by_concept[position], value)
            signals["concept"] = by_concept
            if rank_by_concept:
                weight = 1.0 if copied else fusion.natural_prompt_weight
                fused = weight * fused + fusion.concept * by_concept
        fused = np.where(allowed & (fused > 0), fused, -np.inf)
        want = min(len(fused), top_k * (3 if filters.one_per_model else 1))
        while True:
            top = np.argpartition(-fused, want - 1)[:want] if want < len(fused) else np.arange(len(fused))
            top = top[np.argsort(-fused[top], kind="stable")]
            top = top[np.isfinite(fused[top])]
            chosen, seen = [], set()
            for i in top:
                if filters.one_per_model:
                    if self._group[i] in seen:
                        continue
                    seen.add(self._group[i])
                chosen.append(int(i))
                if len(chosen) == top_k:
                    break
            if len(chosen) == top_k or want >= len(fused) or len(top) < want:
                break
            want = min(len(fused), want * 4)
        return [(i, float(fused[i]), {k: round(float(v[i]), 4) for k, v in signals.items()}) for i in chosen]

    # ---- candidates with evidence --------------------------------------------------------
    def _load_cards(self, ids: list[str]) -> dict[str, AdapterCard]:
        """Cards by id through a small LRU cache (one SQL query for the misses)."""
        missing = [k for k in ids if k not in self._cards]
        if missing:
            self._cards.update(self.store.get_many(missing))
            while len(self._cards) > CARD_CACHE:
                gone, _ = self._cards.popitem(last=False)
                self._field_terms.pop(gone, None)
        out = {}
        for k in ids:
            if k in self._cards:
                self._cards.move_to_end(k)
                out[k] = self._cards[k]
        return out

    def _matches(self, positions: list[int], query: set[str]) -> tuple[list[set[str]], list[set[str]]]:
        """Query terms in each candidate's card document and in its example prompts (index rows)."""
        card_rows = [self._card_row.get(self.ids[i]) for i in positions]
        present = [n for n, r in enumerate(card_rows) if r is not None]
        in_card = self.index.cards.matched_terms(np.array([card_rows[n] for n in present], dtype=np.int64),
                                                 np.array(present, dtype=np.int64), len(positions), query)
        # the example-prompt documents of each candidate: a run of _prompt_order per card
        pos = np.asarray(positions, dtype=np.int64)
        j = np.minimum(np.searchsorted(self._prompt_cards, pos), max(len(self._prompt_cards) - 1, 0))
        has = (self._prompt_cards[j] == pos) if len(self._prompt_cards) else np.zeros(len(pos), bool)
        starts, counts = self._prompt_starts[j[has]], self._prompt_counts[j[has]]
        offsets = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts)
        rows = self._prompt_order[offsets + np.arange(int(counts.sum()))]
        groups = np.repeat(np.flatnonzero(has), counts)
        return in_card, self.index.prompts.matched_terms(rows, groups, len(positions), query)

    def _evidence(self, card: AdapterCard, query: set[str], in_card: set[str], in_examples: set[str],
                  detailed: bool) -> dict[str, list[str]]:
        """Matched terms per card field (top candidates) or over the whole card document (the rest)."""
        if detailed:
            fields = self._field_terms.get(card.id)
            if fields is None:  # kept with the card cache: a card is tokenised once, not per query
                fields = self._field_terms[card.id] = field_terms(card, examples=False)
            fields = {**fields, "examples": in_examples}
        else:
            fields = {"card": in_card}
        out = {}
        for f, field_set in fields.items():
            shown = [display_term(t) for t in query & field_set]
            shown = [t for t in shown if content_words(t)]  # "on the", "looks like" are no evidence
            if shown:
                out[f] = _dedupe(shown, EVIDENCE_TERMS)
        return out

    def retrieve(self, prompt: str, top_k: int | None = None, filters: Filters | None = None) -> RetrievalResult:
        start = time.perf_counter()
        if not isinstance(prompt, str):
            raise StylusError(f"prompt must be text, not {type(prompt).__name__}")
        top_k = self.settings.top_k if top_k is None else top_k
        if top_k < 1:
            raise StylusError(f"top_k={top_k} must be at least 1")
        notices = []
        if not prompt.strip():
            return RetrievalResult(prompt, [], 0.0, ["the prompt is empty: type what the image should show"])
        if len(prompt) > MAX_PROMPT_CHARS:
            notices.append(f"the prompt has {len(prompt):,} characters; only the first {MAX_PROMPT_CHARS:,} were used")
        if not self.ids:
            notices.append("the retrieval index is empty: import adapters, then run `catalog index`")
        query = set(terms(prompt))
        weighed: list = []
        ranked = self.rank(prompt, top_k, filters, notices=notices, hits=weighed)
        per_card: dict[int, list[dict]] = {}
        if weighed:
            concepts, found = weighed
            for h in sorted(found, key=lambda h: (not h.fits, -h.score)):
                per_card.setdefault(h.position, []).append(
                    {"concept": concepts[h.concept].text, "fits": h.fits, "why": h.why,
                     "lexical": h.lexical, "dense": h.dense, "score": h.score, "covers": list(h.matched)})
        cards = self._load_cards([self.ids[i] for i, _, _ in ranked])
        in_card, in_examples = self._matches([i for i, _, _ in ranked], query)
        candidates = []
        for n, (i, score, signals) in enumerate(ranked):
            card = cards.get(self.ids[i])
            if card is None:
                continue  # deleted since the index was updated
            evidence = self._evidence(card, query, in_card[n], in_examples[n],
                                      detailed=len(candidates) < DETAILED_EVIDENCE)
            concept_rows = per_card.get(i, []) if weighed else None
            if weighed:  # a sentence: first the concepts its purpose covers, then the shared words
                covered = [c["concept"] for c in concept_rows if c["fits"]]
                evidence = ({"concepts": covered} if covered else {}) | evidence
            candidates.append(Candidate(card=card, score=round(score, 4), rank=len(candidates) + 1,
                                        evidence=evidence, scores=signals, concepts=concept_rows))
        return RetrievalResult(prompt, candidates, time.perf_counter() - start, notices)


def _dedupe(items: list[str], limit: int) -> list[str]:
    """Longest terms first, without words already inside a longer matched phrase; at most ``limit``."""
    out: list[str] = []
    for item in sorted(set(items), key=lambda s: (-len(s), s)):
        if not any(item in longer.split() or item == longer for longer in out):
            out.append(item)
            if len(out) == limit:
                break
    return out
