"""The default composer: deterministic grounding of retrieved adapters in the prompt's topics.

Prompts are composed *by concept*: the retriever weighed every candidate against each concept of
the prompt (components/concepts.py) and an adapter is picked for a concept only when its purpose
fits it and it brings nothing the prompt lacks; the best fitting adapter of each concept
(``PER_CONCEPT``); a concept that no adapter fits gets none, and the composition says why. That
holds for sentences, captions and tag lists alike. A tag list that copies a creator's template
(``creators_template``: one adapter's example prompts match it far better than any other's) also
gets that adapter, under the tag rules below.

The tag rules compose candidates that were not weighed by concept. For every candidate they ask
which prompt keywords the adapter's own purpose (name, trigger words, refined keywords, tags) or
the retriever's matched evidence cover, then apply the
paper's rules: no adapter without a keyword of the prompt, none broader than its topic, characters
only when the prompt names them, at most ``max_styles`` styles, at most ``top_k`` per topic and
``max_adapters`` in all. Every decision is kept in ``Composition.scores`` so the UI can show why.
"""
from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from catalog.card import AdapterCard
from components.composer.naming import Subject, names_character, naming_triggers, subject_words
from components.composer.naming import prompt_words as _prompt_words
from components.composer.options import MAX_PROMPT_CHARS, MAX_TOPICS, ComposeOptions
from components.composer.segment import TEMPLATE_LEAD, Segment, is_tag_soup, normalize_phrase, segment
from components.concepts import PEOPLE_WORDS, PromptContext, concepts_of, foreign, widest_first
from components.refiner.purpose import purpose_of
from components.types import Candidate, Composition, Topic, TopicAdapter

# words in adapter names that say nothing about what the adapter draws
NOISE = frozenset(
    "lora locon loha lycoris lyco dora model concept version ver sd sd1 sd15 v1 v2 v3 v4 v5 final "
    "test beta alpha edition pack helper tweaker slider xl 1.5 epoch training trained by for".split())
# words so broad that matching only them is no grounding ("general food" for "hot dog")
GENERIC = frozenset(
    "general various generic multiple universal food animal clothing clothes outfit object thing "
    "concept style art character person people background scene item accessory vehicle building "
    "plant creature detail quality photo image picture illustration".split())
STRONG, EVIDENCE = 1.0, 0.6  # weight of a match by the adapter's own words vs retriever evidence


@dataclass
class Profile:
    """What an adapter is about, as normalized words."""
    own: frozenset[str]  # name, trigger words, refined keywords, tags
    name: frozenset[str]  # distinctive name words (noise removed)
    triggers: tuple[str, ...]  # trigger phrases that name the character (naming.py)
    subject: Subject  # distinctive words of the name's subject part (naming.py)
    is_character: bool
    is_style: bool


@dataclass
class Judgement:
    candidate: Candidate
    profile: Profile
    matched: dict[int, float] = field(default_factory=dict)  # segment index -> strength 0..1
    score: float = 0.0
    decision: str = "rejected"
    reason: str = ""


def _words(texts: list[str]) -> frozenset[str]:
    out: set[str] = set()
    for t in texts:
        out.update(normalize_phrase(t))
    return frozenset(out)


_PROFILES: OrderedDict[tuple, Profile] = OrderedDict()
PROFILE_CACHE = 20_000  # ~ a whole catalog's worth of retrieved cards


def profile(card: AdapterCard) -> Profile:
    """What ``card`` is about; cached on the card fields it reads (compose stays a few ms)."""
    key = (card.id, card.name, tuple(card.effective_trigger_words()), tuple(card.refined.keywords),
           tuple(card.effective_tags()), card.effective_category(), card.is_character())
    found = _PROFILES.get(key)
    if found is None:
        found = _PROFILES[key] = _profile(card)
        if len(_PROFILES) > PROFILE_CACHE:
            _PROFILES.popitem(last=False)
    return found


def _profile(card: AdapterCard) -> Profile:
    name_words = _words([card.name]) - NOISE
    name_words = frozenset(w for w in name_words if not re.fullmatch(r"v?\d+(\.\d+)*", w))
    own = name_words | _words(card.effective_trigger_words() + card.refined.keywords
                              + card.effective_tags())
    category = card.effective_category()
    is_style = category == "style" or "style" in normalize_phrase(card.name)
    character = card.is_character()
    return Profile(own=frozenset(own - NOISE), name=name_words,
                   triggers=naming_triggers(card) if character else (),
                   subject=subject_words(card) if character else Subject(),
                   is_character=character, is_style=is_style)


def names_in_prompt(card: AdapterCard, prof: Profile, prompt_low: str, prompt_words: set[str]) -> bool:
    """A character is named when a naming trigger phrase or a subject-name word is in the prompt."""
    return names_character(prof.triggers, prof.subject, prompt_low, prompt_words)


def character_refusal(card: AdapterCard, prof: Profile, policy: str, prompt_low: str,
                      prompt_words: set[str]) -> str | None:
    """Why the characters policy (named | all | none) keeps this adapter out, or None; both composers use it."""
    if not prof.is_character or policy == "all":
        return None
    if policy == "none":
        return "characters are turned off"
    if not names_in_prompt(card, prof, prompt_low, prompt_words):
        return "the prompt does not name the character"
    return None


TAG_PROMPT_BRINGS = ("sexual", "suggestive")


def brings_foreign(card: AdapterCard, prof: Profile, ctx: PromptContext, prompt_low: str,
                   prompt_words: set[str], only: tuple[str, ...] | None = None) -> list[str]:
    """What the adapter brings (its purpose) that the prompt (``ctx``, built once per prompt with
    the characters policy) does not ask for. ``only``: these kinds of "brings" alone. Both
    composers use it."""
    named = prof.is_character and names_in_prompt(card, prof, prompt_low, prompt_words)
    brings = [b for b in purpose_of(card).brings if only is None or b in only]
    return foreign(brings, ctx, named=named)


def _match(j: Judgement, segments: list[Segment]) -> None:
    evidence = _words([t for terms in j.candidate.evidence.values() for t in terms])
    for i, seg in enumerate(segments):
        words = set(seg.words)
        strong = words & j.profile.own
        weak = (words & evidence) - strong
        if not strong and not weak:
            continue
        head_bonus = 1.0 if seg.head in (strong | weak) else 0.5
        cover = (STRONG * len(strong) + EVIDENCE * len(weak)) / len(words)
        j.matched[i] = min(1.0, cover) * head_bonus


def _judge(j: Judgement, segments: list[Segment], prompt_low: str, prompt_words: set[str],
           ctx: PromptContext, best: float, options: ComposeOptions) -> None:
    card = j.candidate.card
    if card.blocked:
        j.reason = "blocked by a curator"
        return
    _match(j, segments)
    if not j.matched:
        j.reason = "none of its words is a keyword of the prompt: it would add a foreign concept"
        return
    refusal = character_refusal(card, j.profile, options.characters, prompt_low, prompt_words)
    if refusal:
        j.reason = f"character adapter: {refusal}"
        return
    # a tag-style prompt is written in the adapters' own vocabulary ("1girl, ..." for a character
    # or outfit whose trigger words the user left out): only sexual or suggestive content it does
    # not ask for is foreign there (creator split, first 500 queries, all characters: hit 0.45 with
    # every "brings" rule, 0.60 with these two, 0.68 with none)
    brought = brings_foreign(card, j.profile, ctx, prompt_low, prompt_words, only=TAG_PROMPT_BRINGS)
    if brought:
        j.reason = f"brings {', '.join(brought)}, which the prompt does not ask for"
        return
    i = max(j.matched, key=lambda k: j.matched[k])
    seg = segments[i]
    own_hits = set(seg.words) & j.profile.own
    labelled = j.profile.is_style or j.profile.is_character  # "Style" / "Character" in a name is a label
    if not labelled and seg.head not in own_hits and j.profile.name and (j.profile.name & GENERIC) \
            and not (j.profile.name & set(seg.words)):
        j.reason = f"broader than {seg.text!r}: it is about {' '.join(sorted(j.profile.name))}"
        return
    foreign = j.profile.name - prompt_words - GENERIC
    if j.profile.name and len(foreign) >= 2 and len(foreign) > len(j.profile.name & prompt_words) \
            and not j.candidate.evidence:
        j.reason = f"narrower than {seg.text!r} in a foreign way: adds {', '.join(sorted(foreign))}"
        return
    relative = j.candidate.score / best if best > 0 else 0.0
    j.score = round(relative * (0.4 + 0.6 * j.matched[i]), 4)
    if j.score < options.min_relative_score:
        j.reason = f"score {j.score:.2f} below {options.min_relative_score:.2f} of the best candidate"
        return
    j.decision = "eligible"


def _reason(j: Judgement, seg_text: str) -> str:
    hits = sorted(set(normalize_phrase(seg_text)) & j.profile.own)
    via = f"its name/tags cover {', '.join(hits)}" if hits else "retrieval evidence matches it"
    return f"fits {seg_text!r}: {via} (score {j.score:.2f})"


def creators_template(candidates: list[Candidate]) -> Candidate | None:
    """The candidate whose template a tag-style prompt copies, or None: the first one, when the
    prompt shares words with its example prompts and it leads by ``TEMPLATE_LEAD``."""
    if not candidates:
        return None
    first = candidates[0]
    if not (first.evidence or {}).get("examples"):
        return None  # it leads by its card text, not by example prompts the list copies
    second = next((c.score for c in candidates[1:] if c.id != first.id), 0.0)
    return first if first.score > 0 and first.score >= TEMPLATE_LEAD * second else None


# words of a tag list that put someone in the image without naming who: a body part, a garment,
# a pose ("dynamic pose", "sitting on chair", "looking at viewer")
TAG_PERSON_WORDS = PEOPLE_WORDS | frozenset(
    "pose posing standing sitting lying kneeling squatting looking viewer holding stance barefoot smile "
    "smiling crying blush".split())


def tag_list_people(ctx: PromptContext, prompt_words: set[str]) -> PromptContext:
    """``ctx`` for a tag list: a body part, garment or pose tag puts a person in it, of either sex
    unless the list says which."""
    if not (ctx.person or prompt_words & TAG_PERSON_WORDS):
        return ctx
    either = not (ctx.woman or ctx.man)
    return replace(ctx, person=True, woman=ctx.woman or either, man=ctx.man or either)


class OfflineComposer:
    name = "offline"

    def compose(self, prompt: str, candidates: list[Candidate], options: ComposeOptions) -> Composition:
        t0 = time.perf_counter()
        options.validate()
        notices: list[str] = []
        if len(prompt) > MAX_PROMPT_CHARS:
            notices.append(f"prompt has {len(prompt)} characters; composed its first {MAX_PROMPT_CHARS}")
            prompt = prompt[:MAX_PROMPT_CHARS]
        segments = segment(prompt)
        if len(segments) > MAX_TOPICS:
            notices.append(f"prompt has {len(segments)} keyword topics; kept the first {MAX_TOPICS}")
            segments = segments[:MAX_TOPICS]
        if not segments:
            notices.append("the prompt has no keywords besides quality boilerplate; nothing to compose")
        if not candidates:
            notices.append("no candidate adapters were retrieved")
        prompt_low = prompt.lower()
        prompt_words = _prompt_words(prompt)
        weighed = any(c.concepts is not None for c in candidates)
        if segments and weighed:
            comp = self._by_concept(prompt, candidates, options, notices, t0, prompt_low, prompt_words)
            if is_tag_soup(prompt):  # a tag list: a creator's template also gets its creator's adapter
                self._add_template_owner(comp, segments, candidates, options, prompt_low, prompt_words)
            return comp
        best = max((c.score for c in candidates), default=0.0)
        ctx = PromptContext.of(prompt_low, options.characters)
        judgements: list[Judgement] = []
        seen: set[str] = set()
        for cand in candidates:
            if cand.id in seen:
                continue
            seen.add(cand.id)
            j = Judgement(cand, profile(cand.card))
            if segments:
                _judge(j, segments, prompt_low, prompt_words, ctx, best, options)
            else:
                j.reason = "the prompt has no keywords"
            judgements.append(j)
        topics, unassigned = _assign(judgements, segments, options)
        scores = {"candidates": [
            {"id": j.candidate.id, "name": j.candidate.card.name, "retrieval": round(j.candidate.score, 4),
             "match": {segments[i].text: round(s, 3) for i, s in j.matched.items()},
             "score": j.score, "decision": j.decision, "reason": j.reason} for j in judgements]}
        return Composition(prompt=prompt, topics=topics, unassigned=unassigned, composer=self.name,
                           seconds=time.perf_counter() - t0, notices=notices, scores=scores)


    def _by_concept(self, prompt: str, candidates: list[Candidate], options: ComposeOptions,
                    notices: list[str], t0: float, prompt_low: str, prompt_words: set[str]) -> Composition:
        """A sentence: per concept, the adapters whose purpose fits it (see the module docstring)."""
        concepts = [c.text for c in concepts_of(segment(prompt))]
        fits: dict[str, list[tuple[float, Candidate, dict]]] = {c: [] for c in concepts}
        rejected: dict[str, list[str]] = {c: [] for c in concepts}
        rows, seen = [], set()
        for cand in candidates:
            if cand.id in seen or cand.card.blocked:
                continue
            seen.add(cand.id)
            prof = profile(cand.card)
            refusal = character_refusal(cand.card, prof, options.characters, prompt_low, prompt_words)
            for row in cand.concepts or ():
                if row["concept"] not in fits:
                    continue
                if row["fits"] and not refusal:
                    fits[row["concept"]].append((row["score"], cand, row))
                elif len(rejected[row["concept"]]) < NEAREST_SHOWN:
                    why = f"character adapter: {refusal}" if refusal and row["fits"] else row["why"]
                    rejected[row["concept"]].append(f"{cand.card.name}: {why}")
            rows.append({"id": cand.id, "name": cand.card.name, "retrieval": round(cand.score, 4),
                         "match": {r["concept"]: r["score"] for r in cand.concepts or ()},
                         "score": max((r["score"] for r in cand.concepts or () if r["fits"]), default=0.0),
                         "decision": "eligible" if cand.fitting_concepts() and not refusal else "rejected",
                         "reason": next((r["why"] for r in cand.concepts or ()),
                                        "no concept of the prompt is in its purpose")})
        chosen: list[tuple[float, str, Candidate, dict]] = []
        used: set[str] = set()
        styles = 0
        # concepts in order of their best fit; each gets its best fitting adapter
        order = sorted(concepts, key=lambda c: -max((f[0] for f in fits[c]), default=0.0))
        for concept in order:
            # best fit first, except that an adapter whose purpose holds every word of the concept
            # another holds, and more, comes before it (see concepts.widest_first)
            ranked = widest_first(sorted(fits[concept], key=lambda f: -f[0]), lambda f, c=concept: frozenset(
                w for r in f[1].concepts or () if r["concept"] == c for w in r.get("covers", ())))
            taken = 0
            for score, cand, row in ranked:
                if len(chosen) >= options.max_adapters or taken >= min(options.top_k, PER_CONCEPT):
                    break
                if cand.id in used:
                    continue
                is_style = profile(cand.card).is_style
                if is_style and styles >= options.max_styles:
                    continue
                chosen.append((score, concept, cand, row))
                used.add(cand.id)
                styles += is_style
                taken += 1
        topics: dict[str, Topic] = {}
        for score, concept, cand, row in chosen:
            card = cand.card
            topics.setdefault(concept, Topic(keywords=[concept])).adapters.append(TopicAdapter(
                card_id=card.id, name=card.name, weight=card.effective_weight(), reason=row["why"],
                score=round(score, 4), civitai_model_id=card.civitai_model_id, lora_name=card.lora_name))
        for r in rows:
            if r["id"] in used:
                r["decision"] = "chosen"
        unassigned = [c for c in concepts if c not in topics]
        why_none = {}
        for c in unassigned:
            served = sorted({t for _, cand, _ in fits[c] for t, used_for in
                             ((t.keywords[0], {a.card_id for a in t.adapters}) for t in topics.values())
                             if cand.id in used_for})
            if served:
                why_none[c] = f"its fitting adapter serves {', '.join(map(repr, served))} already"
            elif fits[c]:
                why_none[c] = "fitting adapters were left out by the caps (adapters per composition / styles)"
            elif rejected[c]:
                why_none[c] = "no adapter fits it; nearest: " + "; ".join(rejected[c])
            else:
                why_none[c] = "no adapter of the catalog is about it"
        ordered = [topics[c] for c in concepts if c in topics]
        return Composition(prompt=prompt, topics=ordered, unassigned=unassigned, composer=self.name,
                           seconds=time.perf_counter() - t0, notices=notices,
                           scores={"candidates": rows, "unassigned": why_none, "by": "concept"})

    def _add_template_owner(self, comp: Composition, segments: list[Segment], candidates: list[Candidate],
                            options: ComposeOptions, prompt_low: str, prompt_words: set[str]) -> None:
        """Add the adapter whose template a tag-style prompt copies (``creators_template``) to the
        composition by concept, under the tag rules and bringing nothing the prompt lacks (a
        character only as the policy allows, no person, sexual content or slider the prompt does
        not ask for), for the keyword its words match."""
        own = creators_template(candidates)
        chosen = comp.adapter_ids()
        if own is None or own.id in chosen or len(chosen) >= options.max_adapters:
            return
        j = Judgement(own, profile(own.card))
        by_id = {c.id: c for c in candidates}
        styles = sum(profile(by_id[i].card).is_style for i in chosen if i in by_id)
        if j.profile.is_style and styles >= options.max_styles:
            return
        ctx = PromptContext.of(prompt_low, options.characters)
        _judge(j, segments, prompt_low, prompt_words, ctx, own.score, options)
        brought = brings_foreign(own.card, j.profile, tag_list_people(ctx, prompt_words), prompt_low, prompt_words)
        if j.decision == "eligible" and brought:  # a man for "1girl, ...", a girl for "food, cake, ..."
            j.decision, j.reason = "rejected", f"it brings {', '.join(brought)}, which the prompt does not ask for"
        row = next((r for r in comp.scores["candidates"] if r["id"] == own.id), None)
        if j.decision != "eligible":
            if row is not None:
                row["reason"] = f"{row['reason']}; its example prompts match the prompt best, but {j.reason}"
            return
        keyword = segments[max(j.matched, key=lambda k: j.matched[k])].text
        topic = next((t for t in comp.topics if keyword in t.keywords), None)
        if topic is None or len(topic.adapters) >= options.top_k:
            topic = Topic(keywords=[keyword])
            comp.topics.insert(0, topic)
        reason = f"the prompt copies its example prompts (a creator's template); {_reason(j, keyword)}"
        card = own.card
        topic.adapters.insert(0, TopicAdapter(
            card_id=card.id, name=card.name, weight=card.effective_weight(), reason=reason, score=j.score,
            civitai_model_id=card.civitai_model_id, lora_name=card.lora_name))
        comp.unassigned = [k for k in comp.unassigned if k != keyword]
        comp.scores["unassigned"].pop(keyword, None)
        if row is not None:
            row["decision"], row["reason"] = "chosen", reason
        comp.notices.append(f"the prompt reads like the example prompts of {card.name!r} (a creator's template): "
                            f"it is picked for {keyword!r}")


NEAREST_SHOWN = 1  # adapters named in "no adapter for X: nearest ..."
# adapters per concept of a sentence: the best fitting one (dev: a second fitting adapter was
# right half as often as the first); curators and users add more in the mapping
PER_CONCEPT = 1


def _assign(judgements: list[Judgement], segments: list[Segment],
            options: ComposeOptions) -> tuple[list[Topic], list[str]]:
    """Pick eligible adapters best first under the caps; merge the keywords an adapter spans."""
    eligible = sorted((j for j in judgements if j.decision == "eligible"), key=lambda j: -j.score)
    group = list(range(len(segments)))  # segment -> topic representative (union of spanned keywords)

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    chosen: list[tuple[Judgement, int]] = []
    per_topic: dict[int, int] = {}
    styles = 0
    for j in eligible:
        if len(chosen) >= options.max_adapters:
            j.decision, j.reason = "not chosen", f"composition already has {options.max_adapters} adapters"
            continue
        if j.profile.is_style and styles >= options.max_styles:
            j.decision, j.reason = "not chosen", f"already {options.max_styles} style adapters"
            continue
        strong = [i for i, s in j.matched.items() if s >= 0.5]
        home = root(max(j.matched, key=lambda k: j.matched[k]))
        if per_topic.get(home, 0) >= options.top_k:
            j.decision, j.reason = "not chosen", f"topic {segments[home].text!r} already has {options.top_k}"
            continue
        for i in strong:  # an adapter that spans several keywords merges them into one topic
            r = root(i)
            if r != home and per_topic.get(r, 0) + per_topic.get(home, 0) < options.top_k:
                per_topic[home] = per_topic.get(home, 0) + per_topic.pop(r, 0)
                group[r] = home
        per_topic[home] = per_topic.get(home, 0) + 1
        styles += j.profile.is_style
        j.decision = "chosen"
        chosen.append((j, home))
    topics: dict[int, Topic] = {}
    for i, seg in enumerate(segments):
        r = root(i)
        topics.setdefault(r, Topic(keywords=[])).keywords.append(seg.text)
    for j, home in chosen:
        r = root(home)
        card = j.candidate.card
        j.reason = _reason(j, " ".join(topics[r].keywords))
        topics[r].adapters.append(TopicAdapter(
            card_id=card.id, name=card.name, weight=card.effective_weight(), reason=j.reason,
            score=j.score, civitai_model_id=card.civitai_model_id, lora_name=card.lora_name))
    with_adapters = [t for t in topics.values() if t.adapters]
    unassigned = [k for t in topics.values() if not t.adapters for k in t.keywords]
    return with_adapters, unassigned
