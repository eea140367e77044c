"""``Generator(settings).generate(request, variants, cards, progress) -> GenerationResult``.

1. check every input (``checks.check_inputs``); 2. load the pipelines once (lazily);
3. load the adapters the variants use (LRU on the pipeline); 4. group images whose variants share
the same weights into one batched call, each image with its own seed (``seed + i``) so it can be
reproduced; 5. run each group inside ``active_adapters`` (base restored afterwards), plus a baseline
image without adapters at ``seed``; 6. attach A1111 ``parameters`` text to every image.
Generation is serialised per Generator (one lock per set of pipelines). Adapter files are fetched
before a request takes the lock, so a slow download never holds up other requests; the whole
request has a time budget (``generation_timeout_s``) and a cancel flag, checked between denoising
steps (``budget.Budget``). The preview model draws at most ``PREVIEW_MAX_PIXELS`` and upscales.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from catalog.card import AdapterCard
from catalog.lora_file import autov2_of, sha256_file
from catalog.settings import Settings
from components.types import (GeneratedImage, GenerationRequest, GenerationResult,
                              Variant)

from .adapters import AdapterManager, AdapterSource, adapter_name, fetch_card_file
from .apply import active_adapters
from .budget import Budget
from .checks import check_inputs
from .metadata import format_parameters, lora_aliases, lora_tags
from .pipeline import Pipelines, load_pipelines
from .preview_model import PREVIEW_MAX_PIXELS, preview_draw_size

Progress = Callable[[int, int], None]


@dataclass
class _Job:
    index: int  # image index; -1 for the baseline
    seed: int
    prompt: str
    variant: Variant | None
    weights: dict[str, float] = field(default_factory=dict)  # card id -> weight actually applied


class Generator:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._pipes: Pipelines | None = None
        self._managers: dict[int, AdapterManager] = {}
        self._model_hash: str | None = None  # A1111's "Model hash" of the checkpoint file, once

    # ---- lazily loaded weights ---------------------------------------------------------
    def pipelines(self) -> Pipelines:
        if self._pipes is None:
            if self.settings.torch_threads:
                torch.set_num_threads(self.settings.torch_threads)
            t0 = time.perf_counter()
            pipes = load_pipelines(self.settings)
            pipes.load_seconds = time.perf_counter() - t0  # with the library imports
            self._pipes = pipes
        return self._pipes

    def model_hash(self) -> str:
        """The loaded checkpoint's ``Model hash`` (:func:`checkpoint_hash`), hashed once per
        Generator; "" for the preview model (also when the configured model fell back to it)."""
        if self._model_hash is None:
            self._model_hash = "" if self.pipelines().preview else checkpoint_hash(self.settings.model)
        return self._model_hash

    def _manager(self, pipe) -> AdapterManager:
        key = id(pipe.unet)  # txt2img/img2img/legacy inpaint share one unet, hence one manager
        if key not in self._managers:
            self._managers[key] = AdapterManager(pipe, self.settings, self.pipelines().preview)
        return self._managers[key]

    def loaded_adapters(self) -> set[str]:
        """Names of the adapters loaded now, over all pipelines (the bounded caches' contents)."""
        return {name for manager in self._managers.values() for name in manager.loaded}

    # ---- the public call -----------------------------------------------------------------
    def generate(self, request: GenerationRequest, variants: list[Variant] | None = None,
                 cards: dict[str, AdapterCard] | None = None,
                 progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """``variants``: the adapter weights of each image (the engine draws them from the request's
        composition); ``cards``: the catalog cards they name. ``cancel``: set it (from any thread)
        to stop the request at the next denoising step."""
        budget = Budget(self.settings.generation_timeout_s, cancel or threading.Event())
        cards = dict(cards or {})
        notices: list[str] = []
        check_inputs(request, variants, cards, max_pixels=self.settings.max_upload_pixels,
                     max_bytes=self.settings.max_upload_mb * 2**20)
        variants = variants or []
        fetched = self._fetch_files(_used_cards(variants), cards, notices, budget)  # before the lock
        budget.acquire(self._lock)
        try:
            return self._run(request, variants, cards, progress, notices, fetched, budget)
        finally:
            self._lock.release()

    def _fetch_files(self, used: list[str], cards: dict[str, AdapterCard], notices: list[str],
                     budget: Budget) -> dict[str, AdapterSource | None]:
        """Card id -> its real file (None: not available, with a notice), fetched outside the
        generator lock. Nothing is fetched for the preview model: real files cannot apply to it."""
        if not self.settings.model or (self._pipes is not None and self._pipes.preview):
            return {}
        fetched: dict[str, AdapterSource | None] = {}
        for card_id in used[: max(1, self.settings.lora_cache_size)]:  # the ones ensure() will use
            budget.check()
            fetched[card_id] = fetch_card_file(self.settings, cards[card_id], notices,
                                               deadline=budget.deadline)
        return fetched

    def _run(self, request: GenerationRequest, variants: list[Variant], cards: dict[str, AdapterCard],
             progress: Progress | None, notices: list[str], fetched: dict[str, AdapterSource | None],
             budget: Budget) -> GenerationResult:
        t_start = time.perf_counter()
        cold = self._pipes is None
        pipes = self.pipelines()
        timings = {"model_load_cold" if cold else "model_load_warm":
                   pipes.load_seconds if cold else 0.0}
        notices = list(pipes.notices) + notices
        pipe = {"txt2img": pipes.txt2img, "img2img": pipes.img2img, "inpaint": pipes.inpaint}[request.mode]
        manager = self._manager(pipe)
        sources = manager.ensure([cards[c] for c in _used_cards(variants)], notices, fetched)
        timings["adapter_load_cold"] = manager.timings.get("load_cold", 0.0)
        timings["adapter_load_warm"] = manager.timings.get("load_warm", 0.0)
        jobs = self._plan(request, variants, sources)
        draw = preview_draw_size(request.width, request.height) if pipes.preview else \
            (request.width, request.height)
        if draw != (request.width, request.height):
            notices.append(f"the preview model drew {draw[0]}x{draw[1]} and upscaled to "
                           f"{request.width}x{request.height}: it draws at most {PREVIEW_MAX_PIXELS:,} "
                           f"pixels (larger sizes cost it minutes); a real model draws the full size")
        model_hash = self.model_hash()
        images, baseline = self._denoise(pipe, pipes, request, jobs, sources, cards, progress, timings,
                                         budget, draw, model_hash)
        timings["total"] = time.perf_counter() - t_start
        return GenerationResult(images=images, baseline=baseline, timings=timings, notices=notices,
                                model=pipes.label, preview_model=pipes.preview)

    def _plan(self, request: GenerationRequest, variants: list[Variant],
              sources: dict[str, AdapterSource]) -> list[_Job]:
        jobs = []
        for i in range(request.num_images):
            v = variants[i % len(variants)] if variants else None
            weights = {c: float(w) for c, w in (v.weights.items() if v else ()) if w and c in sources}
            jobs.append(_Job(i, request.seed + i, v.prompt if v and v.prompt else request.prompt, v, weights))
        if request.include_baseline:
            jobs.append(_Job(-1, request.seed, request.prompt, None, {}))
        return jobs

    # ---- denoising ---------------------------------------------------------------------
    def _denoise(self, pipe, pipes: Pipelines, request: GenerationRequest, jobs: list[_Job],
                 sources, cards, progress: Progress | None, timings: dict[str, float],
                 budget: Budget, draw: tuple[int, int], model_hash: str):
        groups: list[tuple[tuple, list[_Job]]] = []
        by_weights: OrderedDict[tuple, list[_Job]] = OrderedDict()
        for job in jobs:  # same weights -> one batched call (up to max_batch images)
            by_weights.setdefault(tuple(sorted(job.weights.items())), []).append(job)
        for key, members in by_weights.items():
            for start in range(0, len(members), pipes.max_batch):
                groups.append((key, members[start:start + pipes.max_batch]))
        steps = _effective_steps(request)
        total, done = steps * len(groups), [0]

        def on_step(_pipe, _step, _timestep, kwargs):
            budget.check()  # cancelled or over the budget: stop here, between two steps
            done[0] += 1
            if progress is not None:
                progress(done[0], total)
            return kwargs

        timings.update(switch=0.0, denoise=0.0)
        by_index: dict[int, GeneratedImage] = {}
        base_kwargs = _mode_kwargs(request, draw)
        for key, group in groups:
            budget.check()
            t0 = time.perf_counter()
            with active_adapters(pipe, {adapter_name(c): w for c, w in key}, self.settings.adapter_mode):
                t1 = time.perf_counter()
                out = pipe(prompt=[j.prompt for j in group],
                           negative_prompt=[request.negative_prompt] * len(group),
                           generator=[torch.Generator("cpu").manual_seed(j.seed) for j in group],
                           num_inference_steps=request.steps, guidance_scale=request.guidance,
                           callback_on_step_end=on_step, output_type="pil", **base_kwargs)
                t2 = time.perf_counter()
            timings["switch"] += (t1 - t0) + (time.perf_counter() - t2)
            timings["denoise"] += t2 - t1
            for job, image in zip(group, out.images):
                if image.size != (request.width, request.height):  # the preview drew it smaller
                    image = image.resize((request.width, request.height), Image.Resampling.BICUBIC)
                params = _parameters(request, pipes, job, sources, cards, model_hash)
                by_index[job.index] = GeneratedImage(image=image, seed=job.seed, variant=job.variant,
                                                     parameters=params)
        baseline = by_index.pop(-1, None)
        return [by_index[i] for i in sorted(by_index)], baseline


def checkpoint_hash(model: str) -> str:
    """A1111's ``Model hash`` of ``model`` (Settings.model): the first 10 hex digits, lower case, of
    the SHA256 of the checkpoint file (Civitai's AutoV2). "" where there is no single file to hash:
    the preview model (random weights made here: nobody else has them), ``random:sd15-full``, a
    diffusers folder or a hub id (A1111 and Civitai hash single checkpoint files only)."""
    path = Path(model).expanduser() if model else None
    return autov2_of(sha256_file(path)).lower() if path is not None and path.is_file() else ""


def _effective_steps(request: GenerationRequest) -> int:
    """Steps the scheduler actually runs: img2img/inpaint skip the first (1 - strength) part."""
    if request.mode == "txt2img":
        return request.steps
    return max(1, min(int(request.steps * request.strength), request.steps))


def _used_cards(variants: list[Variant]) -> list[str]:
    """Card ids with a non-zero weight in any variant, in first-use order."""
    return list(OrderedDict.fromkeys(c for v in variants for c, w in v.weights.items() if w))


def _mode_kwargs(request: GenerationRequest, size: tuple[int, int]) -> dict[str, Any]:
    """Pipeline arguments of the request's mode, drawn at ``size`` (width, height)."""
    if request.mode == "txt2img":
        return {"width": size[0], "height": size[1]}
    image = request.init_image if request.init_image.size == size else request.init_image.resize(size)
    kwargs: dict[str, Any] = {"image": image, "strength": float(request.strength)}
    if request.mode == "inpaint":
        mask = request.mask_image if request.mask_image.size == size else request.mask_image.resize(size)
        kwargs.update(mask_image=mask, width=size[0], height=size[1])
    return kwargs


def _parameters(request: GenerationRequest, pipes: Pipelines, job: _Job,
                sources: dict[str, AdapterSource], cards: dict[str, AdapterCard], model_hash: str) -> str:
    """The image's A1111 ``parameters``: tags with aliases Civitai's parser reads, the hashes A1111
    writes (``Lora hashes`` AutoV3, ``Model hash``) and ``Civitai resources`` (metadata.py)."""
    aliases = lora_aliases({c: cards[c].lora_name for c in job.weights})
    prompt = job.prompt
    if job.weights:
        prompt = f"{prompt} {lora_tags({aliases[c]: w for c, w in job.weights.items()})}"
    values: dict[str, object] = {
        "Steps": request.steps, "Sampler": pipes.sampler, "CFG scale": request.guidance,
        "Seed": job.seed, "Size": f"{request.width}x{request.height}", "Model hash": model_hash,
        "Model": pipes.label}
    if request.mode != "txt2img":
        values["Denoising strength"] = request.strength
        values["Stylus mode"] = request.mode
    if job.variant is not None:
        values["Stylus variant"] = job.variant.index
    stand_ins = [aliases[c] for c in job.weights if sources[c].stand_in]
    if stand_ins:
        values["Stylus stand-in LoRAs"] = ", ".join(stand_ins)
    # a stand-in's hash names a file nobody else has, and it is not the card's adapter: only real
    # files go into "Lora hashes" and "Civitai resources"
    real = [c for c in job.weights if not sources[c].stand_in]
    hashes = {aliases[c]: sources[c].short_hash for c in real if sources[c].short_hash}
    resources = [{"type": "lora", "weight": round(job.weights[c], 3),
                  "modelVersionId": cards[c].civitai_version_id}
                 for c in real if cards[c].civitai_version_id is not None]
    return format_parameters(prompt, request.negative_prompt, values, hashes, resources)
