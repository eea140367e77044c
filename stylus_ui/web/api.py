"""Named API endpoints for gradio_client: ``/select``, ``/compose``, ``/generate``.

They live on hidden widgets so that inputs and outputs have plain, documented types
(text, numbers, JSON, a gallery of PNG files). See docs/API.md.
"""
from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from components.api import Composition, SelectRequest, StylusEngine, limits
from ground.choices import DEFAULT_MASK_STRATEGY, MASK_STRATEGIES
from stylus_ui.web import render
from stylus_ui.web.errors import user_errors
from stylus_ui.web.generation import GPU, SELECT, SELECT_CONCURRENCY, cancellable
from stylus_ui.web.images import save_png


def build_api(engine: StylusEngine) -> None:
    """The three endpoints. Their parameter names are the callbacks' parameter names (Gradio takes
    them from the signatures), so keyword calls use the names docs/API.md and the README give. A
    parameter is optional in ``client.view_api()`` when its widget has a value (that value is the
    default the client sends) or, for a widget without one (``mapping``), when the callback's
    parameter defaults to None."""
    d = engine.generation_defaults()  # what an absent argument means: shown by client.view_api()
    s = engine.settings
    with gr.Group(visible=False):
        prompt = gr.Textbox(label="prompt")
        top_k = gr.Number(value=s.top_k, precision=0, label="top_k")
        composer = gr.Textbox(value=s.composer, label="composer")
        llm_model = gr.Textbox(value=s.llm_model, label="llm_model")
        adapters_per_topic = gr.Number(value=s.adapters_per_topic, precision=0, label="adapters_per_topic")
        characters = gr.Textbox(value=s.characters, label="characters")
        mapping = gr.JSON(value=None, label="mapping")
        negative_prompt = gr.Textbox(value="", label="negative_prompt")
        steps = gr.Number(value=d.steps, precision=0, label="steps")
        guidance = gr.Number(value=d.guidance, label="guidance")
        seed = gr.Number(value=d.seed, precision=0, label="seed")
        num_images = gr.Number(value=d.num_images, precision=0, label="num_images")
        mask_strategy = gr.Textbox(value=d.mask_strategy, label="mask_strategy")
        debias = gr.Textbox(value="", label="debias")
        width = gr.Number(value=d.width, precision=0, label="width")
        height = gr.Number(value=d.height, precision=0, label="height")
        result = gr.JSON(label="result")
        gallery = gr.Gallery(label="images", format="png")
        buttons = [gr.Button(visible=False) for _ in range(3)]
    # positional order is part of the API (clients call predict(*args)): append, never reorder
    buttons[0].click(user_errors(partial(api_select, engine)),
                     [prompt, top_k, composer, llm_model, adapters_per_topic, characters],
                     [result], api_name="select", concurrency_id=SELECT, concurrency_limit=SELECT_CONCURRENCY)
    buttons[1].click(user_errors(partial(api_compose, engine)),
                     [prompt, mapping, num_images, mask_strategy, seed, debias],
                     [result], api_name="compose", concurrency_id=SELECT, concurrency_limit=SELECT_CONCURRENCY)
    generating = buttons[2].click(cancellable(user_errors(partial(api_generate, engine))),
                                  [prompt, negative_prompt, mapping, steps, guidance, seed, num_images,
                                   mask_strategy, debias, width, height], [gallery, result], api_name="generate",
                                  concurrency_id=GPU, concurrency_limit=1)
    # gradio_client's Job.cancel() looks for an event that cancels /generate and triggers it
    gr.Button(visible=False).click(None, None, None, cancels=[generating])


def _prompt(prompt: str | None) -> str:
    if not (prompt or "").strip():
        raise gr.Error("prompt is empty; pass the text to find adapters for")
    return prompt.strip()


def _or(value: Any, default: Any) -> Any:
    """An absent value (None) means the default; anything else, 0 included, is checked as given."""
    return default if value is None else value


def _side(value: Any, default: int) -> Any:
    """Width or height: the default when absent, else rounded down to a multiple of 8 (documented)."""
    if value is None:
        return default
    return int(value) // 8 * 8 if isinstance(value, (int, float)) and value >= 8 else value


def _composition(engine: StylusEngine, prompt: str, rows: list[dict[str, Any]]) -> Composition:
    """The edited mapping's composition; an empty mapping selects adapters first (settings' defaults)."""
    return engine.composition_from_rows(prompt, rows) if rows else engine.select(prompt).composition


def _mapping_rows(mapping: Any) -> list[dict[str, Any]]:
    if mapping in (None, "", []):
        return []
    if not isinstance(mapping, list) or not all(isinstance(r, dict) for r in mapping):
        raise gr.Error('mapping must be a list of {"keyword", "id", "weight"} objects (optionally '
                       f'"applied_weight"), got {type(mapping).__name__}')
    return mapping


def _strategy(mask_strategy: str | None) -> str:
    if mask_strategy and mask_strategy not in MASK_STRATEGIES:
        raise gr.Error(f"mask_strategy {mask_strategy!r} is not known; use one of {', '.join(MASK_STRATEGIES)}")
    return mask_strategy or DEFAULT_MASK_STRATEGY


def api_select(engine: StylusEngine, prompt: str, top_k: int | None = None, composer: str | None = None,
               llm_model: str | None = None, adapters_per_topic: int | None = None,
               characters: str | None = None) -> dict:
    """Retrieve and compose: candidates with scores and evidence, the composition, mapping rows."""
    selection = engine.select(SelectRequest(  # checked once, by the engine
        _prompt(prompt), top_k=top_k, composer=composer or None, llm_model=llm_model or None,
        adapters_per_topic=adapters_per_topic, characters=characters or None))
    retrieval, comp = selection.retrieval, selection.composition
    return {"candidates": [render.candidate_dict(c) for c in retrieval.candidates],
            "composition": render.composition_dict(comp), "mapping": render.mapping_dicts(comp),
            "notices": list(retrieval.notices), "seconds": {"retrieve": round(retrieval.seconds, 4),
                                                            "compose": round(comp.seconds, 4)}}


def api_compose(engine: StylusEngine, prompt: str, mapping: list[dict[str, Any]] | None = None, num_images: int | None = None,
                mask_strategy: str | None = None, seed: int | None = None, debias: str | None = None) -> dict:
    """Validate an edited mapping and list the variants it gives (weights, A1111 prompts)."""
    prompt = _prompt(prompt)
    rows = _mapping_rows(mapping)
    strategy = _strategy(mask_strategy)
    # the limits before any work (a select may run first)
    d = engine.generation_defaults()
    num_images, seed, debias = limits.check_variants(_or(num_images, d.num_images), _or(seed, d.seed), debias or "")
    comp = _composition(engine, prompt, rows)
    variants = engine.variants(comp, num_images, strategy, seed, debias)
    return {"composition": render.composition_dict(comp),
            "variants": [{"index": v.index, "weights": v.weights, "prompt": v.prompt, "export": v.export}
                         for v in variants]}


def api_generate(engine: StylusEngine, prompt: str, negative_prompt: str | None = None,
                 mapping: list[dict[str, Any]] | None = None, steps: int | None = None,
                 guidance: float | None = None, seed: int | None = None, num_images: int | None = None,
                 mask_strategy: str | None = None, debias: str | None = None, width: int | None = None,
                 height: int | None = None, *, cancel: threading.Event | None = None):
    """Generate the variant grid (text to image); an empty mapping selects adapters first."""
    prompt = _prompt(prompt)
    strategy = _strategy(mask_strategy)
    rows = _mapping_rows(mapping)
    d = engine.generation_defaults()
    request = engine.generation_request(  # the limits before any work (a select may run first)
        prompt, negative_prompt=negative_prompt or "", steps=steps, guidance=guidance, seed=seed,
        num_images=num_images, mask_strategy=strategy, debias=debias or "", width=_side(width, d.width),
        height=_side(height, d.height))
    comp = request.composition = _composition(engine, prompt, rows)
    result = engine.generate(request, cancel=cancel)
    out_dir = Path(engine.settings.output_dir) / "api"
    names = {a.card_id: a.name for t in comp.topics for a in t.adapters}
    items = list(result.images) + ([result.baseline] if result.baseline is not None else [])
    gallery = [(save_png(i, out_dir), render.variant_caption(i.variant, names)) for i in items]
    info = {"composition": render.composition_dict(comp), "timings": result.timings, "notices": result.notices,
            "preview_model": result.preview_model, "model": result.model, "worker": result.worker,
            "images": [{"seed": i.seed, "parameters": i.parameters, "baseline": i.variant is None,
                        "weights": dict(i.variant.weights) if i.variant else {},
                        "export": i.variant.export if i.variant else prompt} for i in items]}
    return gallery, info
