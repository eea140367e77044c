"""The "Catalog" tab: search and filter, open a card, curate it, import, re-index.

On a public instance only a signed-in curator may write (``stylus_ui.web.auth``): every write
callback checks it, and the page shows the tab read-only, with the reason, to everyone else."""
from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from catalog.card import BRINGS, CATEGORIES, PURPOSE_KINDS
from catalog.safety import RATINGS
from catalog.search import CARD_FLAGS, CARD_STATUSES
from components.api import StylusEngine, purpose_of
from stylus_ui.web import auth, render
from stylus_ui.web.errors import user_errors
from stylus_ui.web.generation import RETRIEVAL

RESULT_HEADERS = ["id", "name", "base model", "type", "category", "downloads", "blocked"]
FLAGS, STATUSES = list(CARD_FLAGS), list(CARD_STATUSES)
ANY = "any"
SCREEN = "(screen)"  # rating choice: no curator rating, the content screen decides
MAX_API_IMPORT = 5000  # models per Civitai API import started from the web app


def build_catalog(engine: StylusEngine, demo: gr.Blocks) -> tuple[gr.Dropdown, gr.Dataframe, gr.Markdown]:
    """Builds the tab; returns the widgets the app fills after start-up (base models, first cards)."""
    session = gr.State({})  # this browser / client session's curator sign-in (server side)
    access = build_sign_in(engine, session)
    with gr.Row():
        text = gr.Textbox(label="Search (name, id, tag, trigger word)", elem_id="catalog-search", scale=3)
        base = gr.Dropdown([ANY], value=ANY, label="Base model", allow_custom_value=True, scale=1)
        category = gr.Dropdown([ANY, *CATEGORIES], value=ANY, label="Category", scale=1)
        status = gr.Radio(STATUSES, value="all", label="Status", scale=1)
    with gr.Row():
        flags = gr.CheckboxGroup(FLAGS, label="Only cards that are", scale=3)
        search_btn = gr.Button("Search", variant="primary", elem_id="catalog-search-btn", scale=1)
    # widths keep every header on one line ("downloads", "blocked"); long ids and names wrap
    results = gr.Dataframe(headers=RESULT_HEADERS, value=[], interactive=False, max_height=320,
                           label="Cards (click a row to open it)", elem_id="catalog-results", wrap=True,
                           column_widths=["22%", "28%", "11%", "8%", "12%", "11%", "8%"])
    summary = gr.Markdown(elem_id="catalog-summary")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            with gr.Row():
                card_id = gr.Textbox(label="Card id", elem_id="catalog-card-id", scale=3)
                open_btn = gr.Button("Open", elem_id="catalog-open", scale=1)
            detail = gr.HTML(elem_id="catalog-detail", elem_classes=["stylus-detail-box"])
        with gr.Column(scale=5):
            fields = build_edit_form()
    imports = build_import(engine, session)

    filters = [text, base, category, flags, status]
    search = user_errors(partial(on_search, engine))
    search_btn.click(search, filters, [results, summary], api_visibility="undocumented")
    text.submit(search, filters, [results, summary], api_visibility="undocumented")
    form = [fields[k] for k in FORM_KEYS]
    open_fn = user_errors(partial(on_open, engine))
    open_btn.click(open_fn, [card_id], [detail, *form], api_visibility="undocumented")
    card_id.submit(open_fn, [card_id], [detail, *form], api_visibility="undocumented")
    results.select(user_errors(on_row), [results], [card_id], api_visibility="undocumented").success(
        open_fn, [card_id], [detail, *form], api_visibility="undocumented")
    save = user_errors(partial(on_save, engine))
    writes = dict(concurrency_id=RETRIEVAL, concurrency_limit=1, api_visibility="undocumented")
    # the session (gr.State) is an input of every write: gradio_client callers do not pass it
    # stable names (undocumented) so tests and scripts can drive catalog edits with gradio_client:
    # /catalog_save keeps the nine form fields it always took (gradio_client fills no defaults for an
    # undocumented endpoint); /catalog_save_all takes the whole form, purpose and rating included
    fields["save"].click(save, [card_id, *form, session], [detail, *form, fields["status"]],
                         api_name="catalog_save_all", **writes)
    v1 = form[:len(FORM_V1)]
    fields["save_v1"].click(user_errors(partial(on_save_v1, engine)), [card_id, *v1, session],
                            [detail, *v1, fields["status"]], api_name="catalog_save", **writes)
    for name, blocked in (("block", True), ("unblock", False)):
        fields[name].click(user_errors(partial(on_block, engine, blocked)), [card_id, session],
                           [detail, *form, fields["status"]], api_name=f"catalog_{name}", **writes)
    wire_access(engine, demo, session, access, [*form, fields["save"], fields["block"], fields["unblock"]], imports)
    return base, results, summary


def build_sign_in(engine: StylusEngine, session: gr.State) -> dict[str, Any]:
    """The read-only notice and the curator sign-in of a public instance (nothing on a private one)."""
    s = engine.settings
    widgets: dict[str, Any] = {"note": gr.Markdown(auth.access_line(s, auth.curator(s, None, None)),
                                                   elem_id="catalog-access", visible=s.public)}
    if not s.public:
        return widgets
    with gr.Accordion("Curator sign-in", open=False, elem_id="catalog-sign-in"):
        if auth.hf_login_enabled(s):
            gr.LoginButton()
        if s.admin_token:
            with gr.Row():
                widgets["token"] = gr.Textbox(label="Admin token", type="password", scale=3,
                                              elem_id="catalog-admin-token")
                widgets["button"] = gr.Button("Sign in", scale=1, elem_id="catalog-sign-in-btn")
    return widgets


def wire_access(engine: StylusEngine, demo: gr.Blocks, session: gr.State, access: dict[str, Any], form: list[Any],
                imports: dict[str, Any]) -> None:
    """Editable widgets follow the session's sign-in: at page load and after a sign-in."""
    s = engine.settings
    if not s.public:
        return
    editable = [*form, *imports["widgets"]]
    allowed = [True] * len(form) + imports["allowed"]

    def show_access(session: dict | None, profile: gr.OAuthProfile | None):
        who = auth.curator(s, session, profile)
        return [auth.access_line(s, who), *auth.access_updates(who, allowed)]

    demo.load(user_errors(show_access), [session], [access["note"], *editable], api_visibility="undocumented")
    if "button" in access:
        def curator_login(token: str, session: dict | None):
            session, line = auth.sign_in(s, token, session)
            return [session, "", line, *auth.access_updates(auth.Curator("admin", "admin token"), allowed)]

        outputs = [session, access["token"], access["note"], *editable]
        access["button"].click(user_errors(curator_login), [access["token"], session], outputs, api_name="curator_login")
        access["token"].submit(user_errors(curator_login), [access["token"], session], outputs,
                               api_visibility="undocumented")


FORM_V1 = ["description", "category", "tags", "triggers", "weight", "nsfw", "character", "blocked", "notes"]
FORM_KEYS = [*FORM_V1, "concepts", "kind", "brings", "rating"]  # new fields go at the end


def build_edit_form() -> dict[str, Any]:
    with gr.Group():
        f = {
            "description": gr.Textbox(label="Description", lines=4, elem_id="catalog-edit-description"),
            "category": gr.Dropdown(list(CATEGORIES), value=None, label="Category", elem_id="catalog-edit-category"),
            "tags": gr.Textbox(label="Tags (comma separated)", elem_id="catalog-edit-tags"),
            "triggers": gr.Textbox(label="Trigger words (comma separated)", elem_id="catalog-edit-triggers"),
            "weight": gr.Number(label="Recommended weight (-2..2)", elem_id="catalog-edit-weight"),
        }
        with gr.Row():
            f["nsfw"] = gr.Checkbox(label="NSFW", elem_id="catalog-edit-nsfw")
            f["character"] = gr.Checkbox(label="Character", elem_id="catalog-edit-character")
            f["blocked"] = gr.Checkbox(label="Blocked", elem_id="catalog-edit-blocked")
        f["concepts"] = gr.Textbox(label="Purpose: concepts it renders (comma separated)",
                                   elem_id="catalog-edit-concepts")
        with gr.Row():
            f["kind"] = gr.Dropdown(list(PURPOSE_KINDS), value=None, label="Purpose kind",
                                    elem_id="catalog-edit-kind")
            f["rating"] = gr.Dropdown([SCREEN, *RATINGS], value=None, label="Content rating",
                                      info=f"{SCREEN}: as the content screen rates it", elem_id="catalog-edit-rating")
        f["brings"] = gr.CheckboxGroup(list(BRINGS), label="Brings into every image", elem_id="catalog-edit-brings")
        f["notes"] = gr.Textbox(label="Curator notes", elem_id="catalog-edit-notes")
        with gr.Row():
            f["save"] = gr.Button("Save edits", variant="primary", elem_id="catalog-save")
            f["block"] = gr.Button("Block", variant="stop", elem_id="catalog-block")
            f["unblock"] = gr.Button("Unblock", elem_id="catalog-unblock")
            f["save_v1"] = gr.Button(visible=False, elem_id="catalog-save-v1")  # API only: /catalog_save
        f["status"] = gr.Markdown(elem_id="catalog-edit-status")
    return f


def build_import(engine: StylusEngine, session: gr.State) -> dict[str, Any]:
    """The import and re-index controls; returns them (and whether each may ever be used here)."""
    s = engine.settings
    folder_allowed = bool(s.folder_import_roots) or not s.public
    with gr.Accordion("Import and index", open=False, elem_id="catalog-import"):
        with gr.Row(equal_height=False):
            with gr.Column():
                dump = gr.File(label="Civitai API dump (.json, .jsonl, optionally .gz)",
                               file_types=[".json", ".jsonl", ".gz"], type="filepath")
                dump_btn = gr.Button("Import dump")
            with gr.Column():
                roots = ", ".join(s.folder_import_roots) or ("anywhere on the server" if folder_allowed else "off")
                folder = gr.Textbox(label=f"Folder on the server (allowed: {roots})", interactive=folder_allowed)
                with gr.Row():
                    folder_btn = gr.Button("Import folder", interactive=folder_allowed)
                    identify_btn = gr.Button("Identify on Civitai", interactive=folder_allowed,
                                             elem_id="catalog-identify")
            with gr.Column():
                token = gr.Textbox(label="Civitai API token (not stored)", type="password")
                query = gr.Textbox(label="Search text (optional)")
                limit = gr.Number(value=100, precision=0, minimum=1, maximum=MAX_API_IMPORT,
                                  label="At most this many models")
                api_btn = gr.Button("Import from Civitai API")
        reindex_btn = gr.Button("Re-index catalog", elem_id="catalog-reindex")
        report = gr.Markdown(elem_id="catalog-import-report")
    common = dict(concurrency_id=RETRIEVAL, concurrency_limit=1, api_visibility="undocumented")
    dump_btn.click(user_errors(partial(on_import, engine, "file")), [dump, session], [report], **common)
    folder_btn.click(user_errors(partial(on_import, engine, "folder")), [folder, session], [report], **common)
    identify_btn.click(user_errors(partial(on_import, engine, "identify")), [folder, session], [report], **common)
    api_btn.click(user_errors(partial(on_import_api, engine)), [token, query, limit, session], [report], **common)
    reindex_btn.click(user_errors(partial(on_reindex, engine)), [session], [report], **common)
    widgets = [dump, dump_btn, folder, folder_btn, identify_btn, token, query, limit, api_btn, reindex_btn]
    allowed = [True, True, folder_allowed, folder_allowed, folder_allowed, True, True, True, True, True]
    return {"widgets": widgets, "allowed": allowed}


# ---- callbacks ---------------------------------------------------------------------------
def on_search(engine: StylusEngine, text: str, base: str, category: str, flags: list[str], status: str):
    cards = engine.catalog.search(text=text or "", base_model="" if base in (ANY, None) else base,
                                  category="" if category in (ANY, None) else category,
                                  flags=flags or [], status=status or "all")
    rows = [[c.id, c.name, c.base_model, c.adapter_type, c.effective_category(), c.download_count,
             "yes" if c.blocked else ""] for c in cards]
    return rows, f"{len(rows)} cards shown" + (" (first 200)" if len(rows) >= 200 else "")


def on_row(results: Any, evt: gr.SelectData):
    rows = results.values.tolist() if hasattr(results, "values") else (results or [])
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not rows or not 0 <= row < len(rows):
        raise gr.Error("Search first, then click a row.")
    return str(rows[row][0])


def _rating_choice(card) -> str:
    """The curator's rating (or the older nsfw switch), else SCREEN."""
    if card.curation.rating is not None:
        return card.curation.rating
    if card.curation.nsfw is not None:
        return "explicit" if card.curation.nsfw else "sfw"
    return SCREEN


def _form_values(card) -> list[Any]:
    purpose = purpose_of(card)
    return [card.effective_description(), card.effective_category(), ", ".join(card.effective_tags()),
            ", ".join(card.effective_trigger_words()), card.effective_weight(), card.effective_nsfw(),
            card.is_character(), card.blocked, card.curation.notes,
            ", ".join(purpose.concepts), purpose.kind, list(purpose.brings), _rating_choice(card)]


def on_open(engine: StylusEngine, card_id: str):
    card = engine.catalog.card(card_id)
    return [render.card_detail_html(card), *_form_values(card)]


def _split(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def on_save(engine: StylusEngine, card_id: str, description: str, category: str, tags: str, triggers: str,
            weight: float | None, nsfw: bool, character: bool, blocked: bool, notes: str,
            concepts: str | None = None, kind: str | None = None, brings: list[str] | None = None,
            rating: str | None = None, session: dict | None = None, profile: gr.OAuthProfile | None = None):
    who = auth.require_curator(engine.settings, session, profile, "Saving a card")
    card = engine.catalog.card(card_id)
    changes: dict[str, Any] = {"blocked": bool(blocked), "notes": notes or ""}
    if (description or "") != card.effective_description():
        changes["description"] = description or ""
    if category and category != card.effective_category():
        changes["category"] = category
    if _split(tags) != list(card.effective_tags()):
        changes["tags"] = _split(tags)
    if _split(triggers) != list(card.effective_trigger_words()):
        changes["trigger_words"] = _split(triggers)
    if weight is not None and float(weight) != card.effective_weight():
        changes["weight"] = float(weight)
    if rating not in (None, "") and rating != _rating_choice(card):  # the dropdown wins over the checkbox
        changes["rating"] = None if rating == SCREEN else rating
        changes["nsfw"] = None if rating == SCREEN else rating == "explicit"
    elif bool(nsfw) != card.effective_nsfw():  # the older switch: explicit, or sfw when unchecked
        changes["rating"] = "explicit" if nsfw else "sfw"
        changes["nsfw"] = bool(nsfw)
    if concepts is not None:  # None from on_save_v1 (/catalog_save): purpose left as it is
        current = purpose_of(card)
        purpose = {"concepts": _split(concepts), "kind": kind or current.kind, "brings": list(brings or [])}
        if (purpose["concepts"], purpose["kind"], set(purpose["brings"])) != (
                current.concepts, current.kind, set(current.brings)):
            changes["purpose"] = purpose
    if bool(character) != card.is_character():
        changes["character"] = bool(character)
    card = engine.catalog.edit(card.id, editor=_editor(who), **changes)
    return [render.card_detail_html(card), *_form_values(card),
            f"Saved {render.esc(card.id)}: {render.esc(', '.join(sorted(changes)))}."]


def on_save_v1(engine: StylusEngine, card_id: str, description: str, category: str, tags: str, triggers: str,
               weight: float | None, nsfw: bool, character: bool, blocked: bool, notes: str,
               session: dict | None = None, profile: gr.OAuthProfile | None = None):
    """/catalog_save as scripts have called it: the nine older fields; purpose and rating stay as they are."""
    detail, *form, status = on_save(engine, card_id, description, category, tags, triggers, weight, nsfw,
                                    character, blocked, notes, session=session, profile=profile)
    return [detail, *form[:len(FORM_V1)], status]


def on_block(engine: StylusEngine, blocked: bool, card_id: str, session: dict | None = None,
             profile: gr.OAuthProfile | None = None):
    who = auth.require_curator(engine.settings, session, profile, "Blocking a card" if blocked else "Unblocking a card")
    card = engine.catalog.set_blocked(card_id, blocked, editor=_editor(who))
    return [render.card_detail_html(card), *_form_values(card),
            f"{render.esc(card.id)} {'blocked: it is never retrieved' if blocked else 'unblocked'}."]


def _report_md(report) -> str:
    lines = [f"**Import finished**: {report.summary()}."]
    lines += [f"- {render.esc(n)}" for n in report.notices[:20]]
    lines += [f"- skipped {render.esc(i)}: {render.esc(r)}" for i, r in report.skipped[:20]]
    if len(report.skipped) > 20:
        lines.append(f"- ... and {len(report.skipped) - 20} more skipped")
    return "\n".join(lines)


def _editor(who: auth.Curator) -> str:
    """The catalog's edit log names who edited: the curator on a public instance."""
    return "web" if who.how == "private instance" else f"web:{who.name}"


def on_import(engine: StylusEngine, kind: str, value: str | None, session: dict | None = None,
              profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
    auth.require_curator(engine.settings, session, profile, "Importing")
    if not value:
        raise gr.Error("Choose a dump file first." if kind == "file" else "Type a folder path first.")
    progress(0, desc="identifying on Civitai" if kind == "identify" else "importing")
    run = {"file": engine.catalog.import_civitai_file, "folder": engine.catalog.import_folder,
           "identify": engine.catalog.identify_folder}[kind]  # identify: each file looked up by its SHA256
    return _report_md(run(value))


def on_import_api(engine: StylusEngine, token: str, query: str, limit: float | None, session: dict | None = None,
                  profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
    auth.require_curator(engine.settings, session, profile, "Importing from the Civitai API")
    if limit is None:
        limit = 100
    if not 1 <= float(limit) <= MAX_API_IMPORT:
        raise gr.Error(f"At most {limit:g} models is not allowed; use 1 to {MAX_API_IMPORT}.",
                       print_exception=False)
    from ground.redact import secrets_registered
    with secrets_registered([token or ""]):  # a 401 body or a log line that echoes it is redacted
        progress(0, desc="importing from the Civitai API")
        return _report_md(engine.catalog.import_civitai_api(token=token or "", query=query or "", limit=int(limit)))


def on_reindex(engine: StylusEngine, session: dict | None = None, profile: gr.OAuthProfile | None = None,
               progress=gr.Progress()):
    auth.require_curator(engine.settings, session, profile, "Re-indexing")
    progress(0, desc="indexing")
    return f"**Index**: {render.esc(engine.reindex())}"


def initial_values(engine: StylusEngine) -> tuple[dict, list[list[Any]], str]:
    """Base-model choices and the most downloaded cards, filled in when a page opens."""
    stats = engine.catalog.stats()
    rows, summary = on_search(engine, "", ANY, ANY, [], "all")
    base = gr.update(choices=[ANY, *stats.get("by_base_model", {}).keys()], value=ANY)
    return base, rows, f"{summary} · {stats_markdown(stats)}"


def stats_markdown(stats: dict) -> str:
    """The catalog's size and what the content screen rates beyond the source's nsfw flag."""
    screen = stats.get("content_screen") or {}
    return (f"catalog: {stats.get('cards', 0)} cards; content screen: {screen.get('explicit', 0)} explicit "
            f"(not flagged by the source), {screen.get('suggestive', 0)} suggestive")
