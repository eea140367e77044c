"""What the three generation tabs share: prompt, advanced options, adapter cards, the editable
keyword -> adapter mapping, the variant gallery, and the thin callbacks behind them.

Callbacks turn widget values into typed requests, call the engine and turn results back into
widget values. Session state is a plain dict (prompt, adapter names, saved image paths and
their settings): no tensors, no PIL images.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial, wraps
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from components.api import (WEIGHT_RULE, GenerationRequest, SelectRequest, StylusEngine, comfy_files, limits,
                            repeated_masks_notice, result_grid, save_workflow, served_by)
from ground.atomic_files import atomic_path
from ground.choices import CHARACTER_POLICIES, COMPOSERS, MASK_STRATEGIES
from stylus_ui.web import render
from stylus_ui.web.errors import shown_near, user_errors
from stylus_ui.web.images import save_png

MAPPING_HEADERS = ["keyword", "adapter id", "name", "recommended weight", "applied weight"]
# the weight columns stay visible however long a name is: fixed widths, long cells wrap
MAPPING_WIDTHS = ["18%", "18%", "28%", "18%", "18%"]
EMPTY_MAPPING_RULE = "an empty mapping: Generate selects adapters first"
MAX_CARDS_SHOWN = 24
GPU = "gpu"  # one concurrency group for everything that runs the diffusion pipeline
RETRIEVAL = "retrieval"  # catalog writes: an edit re-indexes
# Selects (retrieve + compose) have their own group: a compose may wait on an LLM (at most
# llm_total_timeout_s), and neither catalog writes nor other users' selects queue behind it.
# The engine's index lock keeps a retrieval and a re-index apart.
SELECT, SELECT_CONCURRENCY = "select", 4


@dataclass
class Panel:
    """The widgets of one generation tab (``mode`` is txt2img, img2img or inpaint)."""
    mode: str
    prompt: gr.Textbox
    negative: gr.Textbox
    options: list[gr.components.Component]  # steps, guidance, seed, n, strategy, debias, width, height
    select_options: list[gr.components.Component]  # top_k, composer, llm model, adapters per topic, characters
    mapping: gr.Dataframe
    cards: gr.HTML
    state: gr.State


def build_prompt_area(mode: str) -> tuple[gr.Textbox, gr.Textbox]:
    prompt = gr.Textbox(label="Prompt", lines=3, placeholder="e.g. a corgi astronaut on the moon, watercolor",
                        elem_id=f"{mode}-prompt")
    negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="e.g. blurry, low quality",
                          elem_id=f"{mode}-negative")
    return prompt, negative


def build_advanced(engine: StylusEngine, mode: str) -> tuple[list, list]:
    d = engine.generation_defaults()
    s = engine.settings
    with gr.Accordion("Advanced", open=False, elem_id=f"{mode}-advanced"):
        with gr.Row():
            # every range from components.limits: the engine refuses the same values the UI cannot set
            steps = gr.Slider(limits.STEPS.low, limits.STEPS.high, value=d.steps, step=1, label="Steps")
            guidance = gr.Slider(limits.GUIDANCE.low, limits.GUIDANCE.high, value=d.guidance, step=0.5,
                                 label="Guidance")
            seed = gr.Number(value=d.seed, precision=0, minimum=limits.SEED.low, maximum=limits.SEED.high, label="Seed")
        with gr.Row():
            n = gr.Slider(limits.NUM_IMAGES.low, limits.NUM_IMAGES.high, value=d.num_images, step=1,
                          label="Variants")
            strategy = gr.Dropdown(list(MASK_STRATEGIES), value=d.mask_strategy, label="Mask strategy")
            debias = gr.Textbox(label="Debias (appended to every prompt)", placeholder="e.g. realistic, best quality",
                                max_length=limits.DEBIAS.most)
        with gr.Row():
            width = gr.Slider(limits.SIDE.low, limits.SIDE.high, value=d.width, step=limits.SIDE.step, label="Width")
            height = gr.Slider(limits.SIDE.low, limits.SIDE.high, value=d.height, step=limits.SIDE.step,
                               label="Height")
        with gr.Row():
            composer = gr.Radio(list(COMPOSERS), value=s.composer, label="Composer")
            llm_model = gr.Textbox(value=s.llm_model, label="LLM model (litellm name)",
                                   placeholder="e.g. openai/gpt-4o-mini")
        with gr.Row():
            top_k = gr.Slider(limits.TOP_K.low, limits.TOP_K.high, value=min(s.top_k, limits.TOP_K.high), step=1,
                              label="Top-K retrieved")
            per_topic = gr.Slider(limits.ADAPTERS_PER_TOPIC.low, limits.ADAPTERS_PER_TOPIC.high,
                                  value=s.adapters_per_topic, step=1, label="Adapters per topic")
            characters = gr.Radio(list(CHARACTER_POLICIES), value=s.characters, label="Character adapters",
                                  info="named: only characters the prompt names; all: also ones it describes")
    return ([steps, guidance, seed, n, strategy, debias, width, height],
            [top_k, composer, llm_model, per_topic, characters])


def build_panel(engine: StylusEngine, mode: str, build_extra: Callable[[], list], read_extra: Callable[..., dict[str, Any]],
                examples: list[str] | None = None) -> Panel:
    """Prompt + advanced options (left), cards and mapping (middle), gallery (right).

    ``build_extra()`` makes the tab's own three widgets (init image, mask editor, strength; a
    ``gr.State(None)`` where a tab has none); ``read_extra(size, image, editor, strength)`` turns
    their values into GenerationRequest fields.
    """
    state = gr.State({})
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            extra_inputs = build_extra()
            prompt, negative = build_prompt_area(mode)
            with gr.Row():
                select_btn = gr.Button("Select adapters", elem_id=f"{mode}-select")
                generate_btn = gr.Button("Generate", elem_id=f"{mode}-generate")
            with gr.Row():
                run_btn = gr.Button("Select + generate", variant="primary", elem_id=f"{mode}-run", scale=3)
                stop_btn = gr.Button("Stop", variant="stop", elem_id=f"{mode}-stop", scale=1, min_width=80)
            status = gr.HTML(elem_id=f"{mode}-status")  # a refused request says why here, by its buttons
            options, select_options = build_advanced(engine, mode)
            if examples:
                gr.Examples([[e] for e in examples], inputs=[prompt], label="Prompt presets")
            cards = gr.HTML(render.cards_html([]), elem_id=f"{mode}-cards", elem_classes=["stylus-cards-box"])
        with gr.Column(scale=5, min_width=360):
            mapping, mapping_note, edit_widgets = build_mapping_editor(engine, mode)
            gallery = gr.Gallery(label="Variants (captions: adapters at their applied weights)", columns=2,
                                 height=420, object_fit="contain", elem_id=f"{mode}-gallery", format="png",
                                 buttons=["download", "fullscreen"], elem_classes=["stylus-gallery"])
            with gr.Row():
                baseline = gr.Image(label="Base model (no adapters)", type="filepath", height=220,
                                    elem_id=f"{mode}-baseline", interactive=False, format="png")
                with gr.Column():
                    details = gr.Code(label="Selected image: A1111 prompt and settings", language="markdown",
                                      elem_id=f"{mode}-details", lines=6, interactive=False, wrap_lines=True,
                                      buttons=["copy"])
                    download = gr.File(label="PNG with metadata, ComfyUI workflow", elem_id=f"{mode}-download",
                                       interactive=False, file_count="multiple")
            timings = gr.Markdown(elem_id=f"{mode}-timings")
            grid = gr.Image(label="Labelled grid (base model first, marked; adapters at applied weights)",
                            type="filepath", elem_id=f"{mode}-grid", interactive=False, format="png",
                            buttons=["download", "fullscreen"], elem_classes=["stylus-grid"])

    panel = Panel(mode, prompt, negative, options, select_options, mapping, cards, state)
    # every step's last output is the status line; a refusal leaves the other outputs as they were
    select_outputs = [cards, mapping, mapping_note, edit_widgets["remove_choice"], state, status]
    gen_inputs = [prompt, negative, mapping, *options, *extra_inputs, state]
    gen_outputs = [gallery, grid, baseline, timings, details, download, mapping, state, status]
    select_inputs = [prompt, *select_options, state]
    select_fn = shown_near(partial(on_select, engine), len(select_outputs), state_out=4,
                           state_arg=len(select_inputs) - 1)
    generate_fn = cancellable(shown_near(partial(on_generate, engine, mode, read_extra), len(gen_outputs),
                                         state_out=7, state_arg=len(gen_inputs) - 1, after_failure=True))
    select_btn.click(select_fn, select_inputs, select_outputs, concurrency_id=SELECT,
                     concurrency_limit=SELECT_CONCURRENCY, api_visibility="undocumented")
    # Generate with an empty mapping selects first (as the API does), then generates
    prefill_fn = shown_near(partial(on_select_if_empty, engine), len(select_outputs), state_out=4,
                            state_arg=len(select_inputs) - 1)
    prefilling = generate_btn.click(prefill_fn, [*select_inputs, mapping], select_outputs, concurrency_id=SELECT,
                                    concurrency_limit=SELECT_CONCURRENCY, api_visibility="undocumented")
    generating = prefilling.success(generate_fn, gen_inputs, gen_outputs, concurrency_id=GPU,
                                    concurrency_limit=1, api_visibility="undocumented")
    selecting = run_btn.click(select_fn, select_inputs, select_outputs, concurrency_id=SELECT,
                              concurrency_limit=SELECT_CONCURRENCY, api_visibility="undocumented")
    run_generating = selecting.success(generate_fn, gen_inputs, gen_outputs, concurrency_id=GPU,
                                       concurrency_limit=1, api_visibility="undocumented")
    # Stop: a queued job leaves the queue; a running one stops at its next denoising step
    stop_btn.click(None, None, None, cancels=[prefilling, generating, selecting, run_generating],
                   api_visibility="undocumented")
    gallery.select(user_errors(on_pick), [state], [details, download], api_visibility="undocumented")
    wire_mapping_editor(engine, edit_widgets, mapping, mapping_note, state)
    return panel


# ---- the mapping editor ------------------------------------------------------------------
def build_mapping_editor(engine: StylusEngine, mode: str):
    mapping = gr.Dataframe(headers=MAPPING_HEADERS, datatype=["str", "str", "str", "number", "number"],
                           value=[], type="array", interactive=True, label="Composer mapping (edit a keyword or "
                           "weight; type an applied weight to fix it, clear it for the rule; clear an id to drop "
                           f"a row; {EMPTY_MAPPING_RULE})", wrap=True, column_widths=MAPPING_WIDTHS,
                           column_count=(5, "fixed"), row_count=(0, "dynamic"), elem_id=f"{mode}-mapping")
    note = gr.Markdown(elem_id=f"{mode}-mapping-note")
    with gr.Accordion("Add or remove adapters", open=True, elem_classes=["stylus-mapping-tools"]):
        with gr.Row(equal_height=True):
            remove_choice = gr.Dropdown([], label="Adapter to remove", elem_id=f"{mode}-remove-choice", scale=4)
            remove_btn = gr.Button("Remove", elem_id=f"{mode}-remove", scale=1, min_width=90)
        with gr.Row(equal_height=True):
            search = gr.Textbox(label="Find a catalog adapter (name, tag; Enter)", elem_id=f"{mode}-add-search",
                                scale=2)
            found = gr.Dropdown([], label="Matches", elem_id=f"{mode}-add-choice", scale=3)
        with gr.Row(equal_height=True):
            keyword = gr.Textbox(label="for keyword", elem_id=f"{mode}-add-keyword", scale=2)
            weight = gr.Number(value=0.8, minimum=-2, maximum=2, step=0.05, label="recommended weight", scale=1,
                               min_width=90)
            add_btn = gr.Button("Add to mapping", elem_id=f"{mode}-add", scale=1, min_width=90)
    widgets = dict(remove_choice=remove_choice, remove_btn=remove_btn, search=search, found=found,
                   keyword=keyword, weight=weight, add_btn=add_btn)
    return mapping, note, widgets


def wire_mapping_editor(engine: StylusEngine, w: dict, mapping: gr.Dataframe, note: gr.Markdown, state: gr.State) -> None:
    w["remove_btn"].click(user_errors(partial(on_remove, engine)), [mapping, w["remove_choice"], state],
                          [mapping, w["remove_choice"], note, state], api_visibility="undocumented")
    w["search"].submit(user_errors(partial(on_search, engine)), [w["search"]], [w["found"]],
                       api_visibility="undocumented")
    w["add_btn"].click(user_errors(partial(on_add, engine)),
                       [mapping, w["found"], w["keyword"], w["weight"], state],
                       [mapping, w["remove_choice"], note, state], api_visibility="undocumented")


def remove_choices(rows: list[list[Any]]) -> list[tuple[str, str]]:
    """(label, adapter id) of every row with an id: an id names its row however the rows move."""
    return [(f"{r[2]} ({r[1]}) for '{r[0]}'", str(r[1])) for r in rows if len(r) > 1 and r[1]]


def fixed_applied(rows: list[dict[str, Any]], state: dict | None) -> list[dict[str, Any]]:
    """Mapping rows whose ``applied_weight`` is kept only where the user typed one: a cell that
    still shows the value the weight rule gave (remembered in ``state["applied"]``) is the rule's."""
    shown = (state or {}).get("applied") or {}
    out = []
    for row in rows:
        value = row.get("applied_weight")
        rule = shown.get(str(row.get("id") or "").strip())
        if value is None or not str(value).strip() or (rule is not None and _same_number(value, rule)):
            value = None
        out.append({**row, "applied_weight": value})
    return out


def _same_number(value: Any, number: float) -> bool:
    try:
        return abs(float(str(value).strip()) - number) < 1e-9
    except ValueError:
        return False  # not a number: composition_from_rows says so, naming the row


def mapping_view(engine: StylusEngine, comp, state: dict | None) -> tuple[list[list[Any]], dict]:
    """The mapping table of ``comp`` and the session state that remembers which applied weights
    the rule computed (so that an edited cell can be told from a computed one)."""
    rows = render.composition_rows(comp, engine.settings.base_weight)
    by_id = {a.card_id: a for t in comp.topics for a in t.adapters}
    rule = {r[1]: r[4] for r in rows if by_id[r[1]].applied_weight is None}
    return rows, {**(state or {}), "applied": rule}


def _edited(engine: StylusEngine, rows: list[dict[str, Any]], state: dict | None):
    """The table's rows as a composition (validated), fixed applied weights kept."""
    return engine.composition_from_rows((state or {}).get("prompt", ""), fixed_applied(rows, state))


def on_remove(engine: StylusEngine, rows: Any, choice: str | None, state: dict | None):
    dicts = render.rows_to_dicts(rows)
    if choice in (None, ""):
        raise gr.Error("Pick the adapter to remove first.")
    removed = [d for d in dicts if str(d["id"]).strip() == choice]
    if not removed:
        raise gr.Error("That adapter is no longer in the mapping; pick again.")
    rows, state = mapping_view(engine, _edited(engine, [d for d in dicts if d not in removed], state), state)
    return (rows, gr.update(choices=remove_choices(rows), value=None),
            f"Removed {render.esc(removed[0]['name'])}. {weight_rule_note(engine.settings.base_weight)}", state)


def on_search(engine: StylusEngine, text: str):
    cards = engine.catalog.search(text=text or "", status="active", limit=30)
    choices = [(f"{c.name} ({c.id})", c.id) for c in cards]
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


def on_add(engine: StylusEngine, rows: Any, card_id: str | None, keyword: str, weight: float | None, state: dict | None):
    if not card_id:
        raise gr.Error("Search the catalog and pick an adapter to add.")
    card = engine.catalog.card(card_id)
    keyword = (keyword or "").strip() or card.name
    w = card.effective_weight() if weight is None else float(weight)
    dicts = render.rows_to_dicts(rows) + [{"keyword": keyword, "id": card.id, "name": card.name,
                                           "weight": round(w, 3), "applied_weight": None}]
    rows, state = mapping_view(engine, _edited(engine, dicts, state), state)
    note = (f"Added {render.esc(card.name)} for '{render.esc(keyword)}'. "
            f"{weight_rule_note(engine.settings.base_weight)}")
    return rows, gr.update(choices=remove_choices(rows)), note, state


def weight_rule_note(base_weight: float) -> str:
    """How the applied weights of the mapping come about (under the mapping)."""
    rule = WEIGHT_RULE.format(base_weight=base_weight)
    return (f"Weights: {render.esc(rule)}; the table shows them with every adapter on, a variant with fewer "
            f"adapters on in a topic applies more. Type an applied weight to fix it, clear it for the rule.")


# ---- select / generate / pick --------------------------------------------------------------
def cancellable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An async callback that runs ``fn(..., cancel=event)`` in a worker thread.

    Gradio stops a job (Stop button, ``cancels=``, gradio_client's ``Job.cancel()``) by
    cancelling its asyncio task; a thread cannot be stopped from outside, so the cancellation
    sets ``event``, which the generation checks between denoising steps: it stops, releases the
    generator and the next job in the queue starts."""
    @wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        cancel = threading.Event()
        try:  # asyncio.to_thread, not anyio's: its cancellation reaches here while the thread runs
            return await asyncio.to_thread(fn, *args, cancel=cancel, **kwargs)
        except asyncio.CancelledError:
            cancel.set()
            raise
    return wrapper


def _prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("Type a prompt first.")
    return prompt


def on_select(engine: StylusEngine, prompt: str, top_k: float, composer: str, llm_model: str, per_topic: float,
              characters: str, state: dict | None):
    prompt = _prompt(prompt)
    selection = engine.select(SelectRequest(prompt, top_k=int(top_k), composer=composer or None,
                                            llm_model=(llm_model or "").strip() or None,
                                            adapters_per_topic=int(per_topic), characters=characters or None))
    retrieval, comp = selection.retrieval, selection.composition
    cards = [render.candidate_dict(c) for c in retrieval.candidates[:MAX_CARDS_SHOWN]]
    rows, state = mapping_view(engine, comp, {**(state or {}), "prompt": prompt})
    note = mapping_note(comp, engine.settings.base_weight)
    return (render.cards_html(cards, list(retrieval.notices)), rows, note,
            gr.update(choices=remove_choices(rows), value=None), state)


def on_select_if_empty(engine: StylusEngine, prompt: str, top_k: float, composer: str, llm_model: str, per_topic: float,
                       characters: str, state: dict | None, rows: Any):
    """Before Generate: an empty mapping is filled by a select (the API's rule), and the note says so;
    a mapping with rows is left as it is."""
    if render.rows_to_dicts(rows):
        return tuple(gr.skip() for _ in range(5))
    cards, rows, note, choices, state = on_select(engine, prompt, top_k, composer, llm_model, per_topic,
                                                  characters, state)
    return cards, rows, f"The mapping was empty, so Generate selected adapters first. {note}", choices, state


def mapping_note(comp, base_weight: float | None = None) -> str:
    """The note under the mapping: the composer, keywords left without an adapter and why, its
    notices, and (given the base weight) how the applied weights come about."""
    parts = [f"Composer `{render.esc(comp.composer)}` in {comp.seconds:.2f} s."]
    why = (comp.scores or {}).get("unassigned", {})
    if comp.unassigned:
        parts.append("No adapter for: " + "; ".join(
            render.esc(k) + (f" ({render.esc(why[k])})" if why.get(k) else "") for k in comp.unassigned) + ".")
    parts += [render.esc(n) for n in comp.notices]
    if base_weight is not None:
        parts.append(weight_rule_note(base_weight))
    return " ".join(parts)


def on_generate(engine: StylusEngine, mode: str, read_extra, prompt: str, negative: str, rows: Any,
                steps: float, guidance: float, seed: float | None, n: float, strategy: str, debias: str,
                width: float, height: float, image: Any, editor: Any, strength: float, state: dict | None,
                progress=gr.Progress(), *, cancel: threading.Event | None = None):
    prompt = _prompt(prompt)
    size = (int(width) // 8 * 8, int(height) // 8 * 8)
    comp = engine.composition_from_rows(prompt, fixed_applied(render.rows_to_dicts(rows), state))
    request = engine.generation_request(
        prompt, comp, negative_prompt=negative or "", mode=mode, steps=int(steps), guidance=float(guidance),
        seed=int(seed or 0), num_images=int(n), mask_strategy=strategy, debias=debias or "",
        width=size[0], height=size[1], **read_extra(size, image, editor, strength))
    progress(0, desc="starting")
    result = engine.generate(request, progress=lambda i, total: progress((i, total), desc="denoising"),
                             cancel=cancel)
    out_dir = Path(engine.settings.output_dir) / time.strftime("%Y%m%d")
    names = {a.card_id: a.name for t in comp.topics for a in t.adapters}
    rule = WEIGHT_RULE.format(base_weight=engine.settings.base_weight)
    images, gallery = [], []
    comfy = comfy_files(engine.settings.model, result.model, result.cards.values())
    for item in result.images:
        path = save_png(item, out_dir)
        caption = render.variant_caption(item.variant, names)
        gallery.append((path, caption))
        images.append(image_info(item, path, caption, request, rule))
        images[-1]["comfy_workflow"] = str(save_workflow(path, item.parameters, comfy))  # beside the PNG
    baseline = save_png(result.baseline, out_dir) if result.baseline is not None else None
    grid = save_grid(result, names, out_dir) if result.images else None
    rows, state = mapping_view(engine, comp, {**(state or {}), "prompt": prompt, "images": images})
    repeated = repeated_masks_notice([i.variant for i in result.images if i.variant is not None])
    served = served_by(result.worker)
    md = render.timings_markdown(result.timings, [*result.notices, *([repeated] if repeated else []),
                                                  *([served] if served else [])])
    files = ([grid] if grid else []) + [i["path"] for i in images] + ([baseline] if baseline else []) + \
        [i["comfy_workflow"] for i in images]
    return gallery, grid, baseline, md, "", files, rows, state


def save_grid(result, names: dict[str, str], out_dir: Path) -> str:
    """The labelled grid (components.generator.grid) as a PNG in ``out_dir``; returns its path."""
    image, _labels = result_grid(result, names)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"stylus-{uuid.uuid4().hex[:10]}-grid.png"
    with atomic_path(path) as tmp:  # the page never shows a half-written PNG
        image.save(tmp, format="PNG")
    return str(path)


def image_info(item, path: str, caption: str, request: GenerationRequest, rule: str) -> dict[str, Any]:
    """What the details box shows for one image; ``rule``: how its applied weights came about."""
    v = item.variant
    return {"path": path, "caption": caption, "rule": rule, "seed": item.seed, "parameters": item.parameters,
            "export": v.export if v else request.prompt, "weights": dict(v.weights) if v else {},
            "settings": {"mode": request.mode, "steps": request.steps, "guidance": request.guidance,
                         "size": [request.width, request.height], "mask_strategy": request.mask_strategy,
                         "negative_prompt": request.negative_prompt}}


def on_pick(state: dict | None, evt: gr.SelectData):
    images = (state or {}).get("images") or []
    index = evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]
    if not 0 <= index < len(images):
        raise gr.Error("That image is from an earlier run; generate again.")
    info = images[index]
    text = (f"{info['caption']}\n(applied weights: {info['rule']})\n\nA1111 prompt:\n{info['export']}\n\n"
            f"Parameters:\n{info['parameters']}\n\n"
            f"Settings: {json.dumps(info['settings'] | {'seed': info['seed'], 'weights': info['weights']})}")
    return text, [info["path"], *([info["comfy_workflow"]] if info.get("comfy_workflow") else [])]
