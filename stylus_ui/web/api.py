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

from components.limits import check_request, check_variants
from components.types import GenerationRequest
from stylus_ui.web import render
from stylus_ui.web.errors import user_errors
from stylus_ui.web.generation import GPU, SELECT, SELECT_CONCURRENCY, STRATEGIES, cancellable, defaults_for
from stylus_ui.web.images import save_png


def build_api(engine) -> None:
    d = defaults_for(engine)
    s = engine.settings
    with gr.Group(visible=False):
        prompt = gr.Textbox(label="prompt")
        top_k = gr.Number(value=s.top_k, precision=0, label="top_k")
        composer = gr.Textbox(value=s.composer, label="composer")
        llm_model = gr.Textbox(value=s.llm_model, label="llm_model")
        per_topic = gr.Number(value=s.adapters_per_topic, precision=0, label="adapters_per_topic")
        characters = gr.Textbox(value=s.characters, label="characters")
        mapping = gr.JSON(value=None, label="mapping")
        negative = gr.Textbox(label="negative_prompt")
        steps = gr.Number(value=d.steps, precision=0, label="steps")
        guidance = gr.Number(value=7.0, label="guidance")
        seed = gr.Number(value=0, precision=0, label="seed")
        n = gr.Number(value=d.num_images, precision=0, label="num_images")
        strategy = gr.Textbox(value="one_hot_loras", label="mask_strategy")
        debias = gr.Textbox(label="debias")
        width = gr.Number(value=d.size, precision=0, label="width")
        height = gr.Number(value=d.size, precision=0, label="height")
        result = gr.JSON(label="result")
        gallery = gr.Gallery(label="images", format="png")
        buttons = [gr.Button(visible=False) for _ in range(3)]
    buttons[0].click(user_errors(partial(api_select, engine)),
                     [prompt, top_k, composer, llm_model, per_topic, characters],
                     [result], api_name="select", concurrency_id=SELECT, concurrency_limit=SELECT_CONCURRENCY)
    buttons[1].click(user_errors(partial(api_compose, engine)), [prompt, mapping, n, strategy, seed, debias],
                     [result], api_name="compose", concurrency_id=SELECT, concurrency_limit=SELECT_CONCURRENCY)
    generating = buttons[2].click(cancellable(user_errors(partial(api_generate, engine))),
                                  [prompt, negative, mapping, steps, guidance, seed, n, strategy, debias,
                                   width, height], [gallery, result], api_name="generate",
                                  concurrency_id=GPU, concurrency_limit=1)
    # gradio_client's Job.cancel() looks for an event that cancels /generate and triggers it
    gr.Button(visible=False).click(None, None, None, cancels=[generating])


def _prompt(prompt: str) -> str:
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


def _mapping_rows(mapping: Any) -> list[dict[str, Any]]:
    if mapping in (None, "", []):
        return []
    if not isinstance(mapping, list) or not all(isinstance(r, dict) for r in mapping):
        raise gr.Error('mapping must be a list of {"keyword", "id", "weight"} objects')
    return mapping


def api_select(engine, prompt: str, top_k: float, composer: str, llm_model: str, per_topic: float,
               characters: str = "") -> dict:
    """Retrieve and compose: candidates with scores and evidence, the composition, mapping rows."""
    retrieval, comp = engine.select(_prompt(prompt), top_k=top_k, composer=composer or None,
                                    llm_model=llm_model or None, adapters_per_topic=per_topic,
                                    characters=characters or None)  # the engine checks the limits
    rows = [dict(zip(("keyword", "id", "name", "weight"), r)) for r in render.composition_rows(comp)]
    return {"candidates": [render.candidate_dict(c) for c in retrieval.candidates],
            "composition": render.composition_dict(comp), "mapping": rows,
            "notices": list(retrieval.notices), "seconds": {"retrieve": round(retrieval.seconds, 4),
                                                            "compose": round(comp.seconds, 4)}}


def api_compose(engine, prompt: str, mapping: Any, n: float, strategy: str, seed: float, debias: str) -> dict:
    """Validate an edited mapping and list the variants it gives (weights, A1111 prompts)."""
    prompt = _prompt(prompt)
    rows = _mapping_rows(mapping)
    # the limits before any work (a select may run first); engine.variants checks them again
    n, seed, debias = check_variants(_or(n, defaults_for(engine).num_images), _or(seed, 0), debias or "")
    comp = engine.composition_from_rows(prompt, rows) if rows else engine.select(prompt)[1]
    variants = engine.variants(comp, n, strategy or "one_hot_loras", seed, debias)
    return {"composition": render.composition_dict(comp),
            "variants": [{"index": v.index, "weights": v.weights, "prompt": v.prompt, "export": v.export}
                         for v in variants]}


def api_generate(engine, prompt: str, negative: str, mapping: Any, steps: float, guidance: float, seed: float,
                 n: float, strategy: str, debias: str, width: float, height: float, *,
                 cancel: threading.Event | None = None):
    """Generate the variant grid (text to image); an empty mapping selects adapters first."""
    prompt = _prompt(prompt)
    if strategy and strategy not in STRATEGIES:
        raise gr.Error(f"mask_strategy {strategy!r} is not known; use one of {', '.join(STRATEGIES)}")
    rows = _mapping_rows(mapping)
    d = defaults_for(engine)
    request = check_request(GenerationRequest(  # the limits before any work; the generator checks again
        prompt=prompt, negative_prompt=negative or "", steps=_or(steps, d.steps), guidance=_or(guidance, 7.0),
        seed=_or(seed, 0), num_images=_or(n, d.num_images), mask_strategy=strategy or "one_hot_loras",
        debias=debias or "", width=_side(width, d.size), height=_side(height, d.size)))
    comp = engine.composition_from_rows(prompt, rows) if rows else engine.select(prompt)[1]
    request.composition = comp
    result = engine.generate(request, cancel=cancel)
    out_dir = Path(engine.settings.output_dir) / "api"
    names = {a.card_id: a.name for t in comp.topics for a in t.adapters}
    items = list(result.images) + ([result.baseline] if result.baseline is not None else [])
    gallery = [(save_png(i, out_dir), render.variant_caption(i.variant, names)) for i in items]
    info = {"composition": render.composition_dict(comp), "timings": result.timings, "notices": result.notices,
            "preview_model": result.preview_model, "model": result.model,
            "images": [{"seed": i.seed, "parameters": i.parameters, "baseline": i.variant is None,
                        "weights": dict(i.variant.weights) if i.variant else {},
                        "export": i.variant.export if i.variant else prompt} for i in items]}
    return gallery, info
