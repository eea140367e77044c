"""Domain values -> HTML, Markdown and plain data for the widgets.

Everything an adapter's author wrote (names, descriptions, tags, trigger words) is untrusted:
it goes through :func:`esc` (``html.escape``) before it reaches an ``gr.HTML`` widget, so no
markup, script or event handler from a catalog can run in the page.
"""
from __future__ import annotations

import html
from typing import Any, Iterable
from urllib.parse import quote, urlparse

from components.api import applied_weights, purpose_of, variant_label

MAX_DESCRIPTION_CHARS = 600
MAX_TAGS = 12


def esc(value: Any) -> str:
    return html.escape(str(value if value is not None else ""), quote=True)


def _chips(items: Iterable[str], cls: str) -> str:
    items = [i for i in items if str(i).strip()][:MAX_TAGS]
    return "".join(f'<span class="stylus-chip {cls}">{esc(i)}</span>' for i in items)


def preview_url(card) -> str:
    """An http(s) URL of the card's first non-NSFW example image, or ""."""
    for ex in getattr(card, "examples", []) or []:
        if ex.nsfw or not ex.url:
            continue
        if urlparse(ex.url).scheme in ("http", "https"):
            return ex.url
    return ""


def candidate_dict(candidate) -> dict[str, Any]:
    """A retrieved candidate as plain data (session state, API output)."""
    card = candidate.card
    return {
        "id": card.id, "name": card.name, "category": card.effective_category(),
        "tags": list(card.effective_tags())[:MAX_TAGS],
        "trigger_words": list(card.effective_trigger_words())[:MAX_TAGS],
        "weight": round(card.effective_weight(), 3), "score": round(float(candidate.score), 4),
        "rank": candidate.rank, "evidence": {k: list(v)[:6] for k, v in (candidate.evidence or {}).items()},
        # per prompt concept: does its purpose fit it, and why (sentences; None for tag-style prompts)
        "concepts": [{"concept": r["concept"], "fits": bool(r["fits"]), "why": r["why"]}
                     for r in (candidate.concepts or [])[:3]],
        "base_model": card.base_model, "preview": preview_url(card),
        "description": card.effective_description()[:MAX_DESCRIPTION_CHARS],
    }


def why_matched(evidence: dict[str, list[str]], concepts: list[dict[str, Any]] | None = None) -> str:
    """Why a candidate was retrieved: the prompt concept its purpose fits (or why it does not),
    else the prompt words found in its fields. Function words are never evidence."""
    if concepts:
        return concepts[0]["why"]
    parts = [f"{field}: {', '.join(terms)}" for field, terms in evidence.items() if terms and field != "concepts"]
    return "; ".join(parts) or "semantic similarity"


def css_url(url: str) -> str:
    """``url`` for a CSS ``url("...")``: http(s) only; quotes, brackets, backslashes and spaces
    percent-encoded so card text can never leave the url() (an empty string otherwise)."""
    if urlparse(url).scheme not in ("http", "https"):
        return ""
    return quote(url, safe=":/?#[]@!$&*+,;=%-._~")


def thumbnail_html(url: str, css_class: str) -> str:
    """A card image drawn as a CSS background over a placeholder: offline, or when the image host
    does not answer, the placeholder shows, never a broken-image icon."""
    safe = css_url(url)
    style = f' style="background-image: url(&quot;{esc(safe)}&quot;), var(--stylus-placeholder)"' if safe else ""
    return f'<div class="{css_class} stylus-placeholder" role="img" aria-label="example image"{style}></div>'


def card_item_html(c: dict[str, Any]) -> str:
    """One compact card of the retrieved-adapters list (``c`` from :func:`candidate_dict`)."""
    img = thumbnail_html(c.get("preview") or "", "stylus-thumb")
    triggers = _chips(c.get("trigger_words", []), "trigger")
    return (
        f'<div class="stylus-card" data-card-id="{esc(c["id"])}">{img}<div class="stylus-card-body">'
        f'<div class="stylus-card-title"><b>{esc(c["name"])}</b> '
        f'<span class="stylus-chip cat">{esc(c["category"])}</span></div>'
        f'<div class="stylus-card-meta">id <code>{esc(c["id"])}</code> · weight {esc(c["weight"])}'
        f' · score {esc(c["score"])}</div>'
        f'<div class="stylus-card-tags">{_chips(c.get("tags", []), "tag")}</div>'
        + (f'<div class="stylus-card-tags">triggers: {triggers}</div>' if triggers else "")
        + f'<div class="stylus-card-why">why: {esc(why_matched(c.get("evidence", {}), c.get("concepts")))}</div>'
        f'</div></div>')


def cards_html(cards: list[dict[str, Any]], notices: Iterable[str] = ()) -> str:
    if not cards:
        body = '<p class="stylus-empty">No adapters retrieved yet: type a prompt and press ' \
               '<b>Select adapters</b>.</p>'
    else:
        body = "".join(card_item_html(c) for c in cards)
    notes = "".join(f'<p class="stylus-notice">{esc(n)}</p>' for n in notices)
    count = f'<div class="stylus-count">{len(cards)} adapters retrieved</div>' if cards else ""
    return f'<div class="stylus-cards">{count}{notes}{body}</div>'


def card_detail_html(card) -> str:
    """A full card for the catalog tab."""
    flags = [name for name, on in (("blocked", card.blocked), ("nsfw", card.effective_nsfw()),
                                   ("character", card.is_character()),
                                   ("real person", card.effective_real_person())) if on]
    files = ", ".join(f.name for f in card.files[:4]) or "no file recorded"
    rows = [("id", card.id), ("source", card.source), ("base model", card.base_model),
            ("type", card.adapter_type), ("creator", card.creator), ("version", card.version_name),
            ("files", files), ("downloads", card.download_count),
            ("weight", card.effective_weight()), ("<lora:...>", f"<lora:{card.lora_name}:{card.effective_weight():g}>")]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    img = preview_url(card)
    img_html = thumbnail_html(img, "stylus-detail-img") if img else ""
    notices = "".join(f'<p class="stylus-notice">{esc(n)}</p>' for n in card.notices[:5])
    purpose = purpose_of(card)
    reasons = card.rating_reasons()
    return (
        f'<div class="stylus-detail">{img_html}<h3>{esc(card.name)}</h3>'
        f'<div>{_chips(flags, "flag")}<span class="stylus-chip cat">{esc(card.effective_category())}</span></div>'
        f'<p class="stylus-desc">{esc(card.effective_description()[:2000])}</p>'
        f'<div class="stylus-card-tags">{_chips(card.effective_tags(), "tag")}</div>'
        f'<div class="stylus-card-tags">triggers: {_chips(card.effective_trigger_words(), "trigger") or "none"}</div>'
        f'<div class="stylus-card-tags stylus-purpose">purpose: {_chips(purpose.concepts, "concept") or "none"}'
        f'<span class="stylus-chip cat">{esc(purpose.kind)}</span> · brings: '
        f'{esc(", ".join(purpose.brings) or "nothing else")}</div>'
        f'<p class="stylus-rating">content rating: <b>{esc(card.effective_rating())}</b>'
        f'{esc(" (" + "; ".join(reasons) + ")" if reasons else "")}</p>'
        f'<table class="stylus-table">{table}</table>{notices}</div>')


MAPPING_KEYS = ("keyword", "id", "name", "weight", "applied_weight")  # the mapping's columns as data


def composition_rows(composition, base_weight: float) -> list[list[Any]]:
    """keyword | adapter id | name | recommended weight | applied weight rows of the editable
    mapping table; the applied weight is the adapter's fixed one, else what the rule gives with
    every adapter on (the ``all`` mask)."""
    applied = applied_weights(composition, base_weight)
    rows = []
    for topic in composition.topics:
        keyword = topic.label()
        for a in topic.adapters:
            rows.append([keyword, a.card_id, a.name, round(float(a.weight), 3), round(applied[a.card_id], 3)])
    return rows


def mapping_dicts(composition) -> list[dict[str, Any]]:
    """The mapping as data (the API's ``mapping``): ``applied_weight`` is null unless fixed, so a
    row sent back as it came applies the weight rule."""
    return [{"keyword": t.label(), "id": a.card_id, "name": a.name,
             "weight": round(float(a.weight), 3), "applied_weight": a.applied_weight}
            for t in composition.topics for a in t.adapters]


def composition_dict(composition) -> dict[str, Any]:
    return {
        "prompt": composition.prompt, "composer": composition.composer,
        "topics": [{"keywords": list(t.keywords),
                    "adapters": [{"id": a.card_id, "name": a.name, "weight": a.weight,
                                  "applied_weight": a.applied_weight, "reason": a.reason,
                                  "lora_name": a.lora_name} for a in t.adapters]}
                   for t in composition.topics],
        "unassigned": list(composition.unassigned), "notices": list(composition.notices),
        # keyword -> why no adapter was picked for it (composition by concept)
        "unassigned_why": dict((composition.scores or {}).get("unassigned", {})),
        "seconds": round(composition.seconds, 4),
    }


def rows_to_dicts(rows: Any) -> list[dict[str, Any]]:
    """The Dataframe's value (list of lists, or a pandas frame) as keyword/id/name/weight dicts,
    plus ``applied_weight`` where the table has that column (see :data:`MAPPING_KEYS`)."""
    if rows is None:
        return []
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # pandas.DataFrame
        rows = rows.values.tolist()
    out = []
    for row in rows:
        row = list(row)
        if not any(str(v).strip() for v in row if v is not None):
            continue
        keys = MAPPING_KEYS[:max(4, min(len(row), len(MAPPING_KEYS)))]
        out.append(dict(zip(keys, row + [""] * (len(keys) - len(row)))))
    return out


def variant_caption(variant, names: dict[str, str]) -> str:
    """The gallery caption: the grid's label (adapters at their applied weights)."""
    return variant_label(variant, names)


def timings_markdown(timings: dict[str, float], notices: Iterable[str] = ()) -> str:
    parts = [f"**{esc(k.replace('_', ' '))}** {v:.2f} s" for k, v in timings.items()]
    text = "Timings: " + " · ".join(parts) if parts else ""
    notes = [f"- {esc(n)}" for n in notices]
    return "\n".join([text, *notes]).strip()


def status_markdown(status: dict[str, Any]) -> str:
    s = status.get("settings", {})
    model = s.get("model") or "embedded untrained preview model"
    run = status.get("resolved") or {}

    def setting(name: str) -> str:  # what runs, and the setting when it was "auto"
        value = run.get(name) or s.get(name)
        shown = f"`{esc(value)}`"
        return shown + (f" (setting `{esc(s.get(name))}`)" if run.get(name) and s.get(name) != value else "")

    lines = [
        "### Active configuration",
        f"- **Model**: `{esc(model)}` (device {setting('device')}, dtype {setting('dtype')}, "
        f"scheduler `{esc(s.get('scheduler'))}`)",
        f"- **Catalog**: `{esc(status.get('catalog'))}`"
        + (f" — {status['cards']} cards" if status.get("cards") is not None else ""),
        f"- **Retrieval**: embeddings `{esc(s.get('embedding_model'))}`, chroma `{esc(s.get('chroma_mode'))}`, "
        f"top-K {esc(s.get('top_k'))}, base model filter `{esc(s.get('base_model_filter'))}`",
        f"- **Composer**: `{esc(s.get('composer'))}`" + (f" with `{esc(s.get('llm_model'))}`" if s.get("llm_model") else "")
        + f", {esc(s.get('adapters_per_topic'))} adapters per topic, base weight {esc(s.get('base_weight'))}",
        f"- **Home**: `{esc(s.get('home'))}`; outputs `{esc(s.get('output_dir'))}`",
    ]
    return "\n".join(lines)


PREVIEW_BANNER = (
    '<div class="stylus-banner" role="alert"><b>Preview model.</b> This app runs on the embedded '
    '<b>untrained</b> preview model: retrieval and composition are real, but the images are noise '
    'that only shows how the composition behaves. Set <code>STYLUS_MODEL</code> to a Stable '
    'Diffusion 1.5 checkpoint for real images.</div>')
