"""Build the SD-1.5 pipelines from ``Settings.model``; device, dtype and scheduler in one place.

``model`` may be "" (the embedded untrained preview model), ``random:sd15-full`` (full-size
random weights, for timing), a local diffusers folder, a single-file ``.safetensors`` checkpoint,
or a hub id. txt2img, img2img and inpaint share one set of weights through ``from_pipe``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from catalog.settings import Settings
from components.types import StylusError

from .preview_model import FULL_RANDOM_IDS, build_full_random_pipeline, ensure_preview_model

SAMPLER_NAMES = {"euler": "Euler", "ddim": "DDIM", "dpm": "DPM++ 2M"}
PREVIEW_LABEL = "stylus-preview (untrained)"


@dataclass
class Pipelines:
    txt2img: object
    img2img: object
    inpaint: object
    label: str  # model name written into image metadata
    preview: bool
    device: str
    dtype: torch.dtype
    sampler: str
    inpaint_is_separate: bool = False  # a 9-channel inpainting model with its own weights
    # Images per pipeline call. CPU kernels are not batch-invariant (an image differs in the last
    # bit with its batch mates) and batching buys nothing there, so CPU runs one image per call:
    # every image then reproduces exactly from its seed alone. Accelerators batch.
    max_batch: int = 1
    notices: list[str] = field(default_factory=list)
    load_seconds: float = 0.0


def resolve_device(settings: Settings) -> tuple[str, torch.dtype]:
    """The one place that picks device and dtype: CUDA fp16, MPS fp16, CPU fp32 unless set."""
    device = settings.device
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StylusError(f"device={settings.device!r} but CUDA is not available; use cpu or auto")
    if settings.dtype != "auto":
        dtype = getattr(torch, settings.dtype)
    else:
        dtype = torch.float32 if device == "cpu" else torch.float16
    if device == "cpu" and dtype == torch.float16:
        raise StylusError("dtype=float16 is not supported on cpu; use float32 or bfloat16")
    return device, dtype


def make_scheduler(name: str, config):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
    classes = {"euler": EulerDiscreteScheduler, "ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}
    if name not in classes:
        raise StylusError(f"scheduler {name!r} is not known; use one of {', '.join(classes)}")
    return classes[name].from_config(config)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _load_base(model: str, settings: Settings, dtype: torch.dtype):
    """Return (pipeline, label, preview?) for ``model``; raise StylusError with the reason."""
    from diffusers import StableDiffusionPipeline

    safety = {} if settings.safety_checker else {"safety_checker": None, "requires_safety_checker": False}
    if not model:
        folder = ensure_preview_model(Path(settings.cache_dir))
        pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, dtype=dtype)
        return pipe, PREVIEW_LABEL, True
    if model in FULL_RANDOM_IDS:
        return build_full_random_pipeline(dtype), model, False
    path = Path(model).expanduser()
    try:
        if path.is_file():
            if path.suffix.lower() != ".safetensors" and not settings.allow_pickle:
                raise StylusError(f"model file {path.name}: only .safetensors checkpoints are loaded "
                                  f"(pickles can run code; STYLUS_ALLOW_PICKLE=1 to allow)")
            pipe = StableDiffusionPipeline.from_single_file(str(path), dtype=dtype,
                                                            local_files_only=_offline(), **safety)
        elif path.is_dir():
            pipe = StableDiffusionPipeline.from_pretrained(path, dtype=dtype,
                                                           local_files_only=True, **safety)
        elif "/" in model and not model.startswith((".", "/", "~")):
            pipe = StableDiffusionPipeline.from_pretrained(model, dtype=dtype, **safety)
        else:
            raise StylusError(f"model {model!r} is neither a file, a folder nor a hub id "
                              f"(owner/name); leave it empty for the preview model")
    except (OSError, ValueError, EnvironmentError) as exc:
        hint = (" (offline: HF_HUB_OFFLINE=1 and the files are not in the local cache)"
                if _offline() else "")
        raise StylusError(f"model {model!r} could not be loaded{hint}: {str(exc)[:300]}") from exc
    return pipe, path.stem if path.exists() else model, False


def load_pipelines(settings: Settings) -> Pipelines:
    """Load the configured model; when it cannot be loaded, fall back to the preview model
    with a notice that every result repeats."""
    from diffusers import StableDiffusionImg2ImgPipeline

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    t0 = time.perf_counter()
    diffusers_logging.disable_progress_bar()  # loading bars would interleave with ours
    transformers_logging.disable_progress_bar()
    device, dtype = resolve_device(settings)
    notices: list[str] = []
    try:
        base, label, preview = _load_base(settings.model, settings, dtype)
    except StylusError as exc:
        if not settings.model:
            raise
        notices.append(f"{exc}; using the untrained preview model instead")
        base, label, preview = _load_base("", settings, dtype)
    if settings.safety_checker and getattr(base, "safety_checker", None) is None:
        notices.append("safety checker requested (STYLUS_SAFETY_CHECKER=1) but this model has none")
    base.scheduler = make_scheduler(settings.scheduler, base.scheduler.config)
    if device != "cpu":  # already there; .to() would also re-cast and warn
        base.to(device)
    base.set_progress_bar_config(disable=True)
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(base)
    inpaint, separate = _inpaint_pipeline(settings, base, dtype, device, notices)
    for p in (img2img, inpaint):
        p.set_progress_bar_config(disable=True)
    if preview:
        notices.append("images come from the untrained preview model (random weights): they show "
                       "how adapters combine, not what a trained model would draw")
    return Pipelines(txt2img=base, img2img=img2img, inpaint=inpaint, label=label, preview=preview,
                     device=device, dtype=dtype, sampler=SAMPLER_NAMES[settings.scheduler],
                     inpaint_is_separate=separate, notices=notices,
                     max_batch=1 if device == "cpu" else 8,
                     load_seconds=time.perf_counter() - t0)


def _inpaint_pipeline(settings: Settings, base, dtype, device, notices: list[str]):
    """A 9-channel inpainting model when configured, else the legacy 4-channel path on the base."""
    from diffusers import StableDiffusionInpaintPipeline

    if settings.inpaint_model:
        src = Path(settings.inpaint_model).expanduser()
        try:
            if src.is_file():
                pipe = StableDiffusionInpaintPipeline.from_single_file(
                    str(src), dtype=dtype, local_files_only=_offline(), safety_checker=None)
            else:
                pipe = StableDiffusionInpaintPipeline.from_pretrained(
                    str(src), dtype=dtype, local_files_only=src.is_dir() or _offline(),
                    safety_checker=None, requires_safety_checker=False)
            pipe.scheduler = make_scheduler(settings.scheduler, pipe.scheduler.config)
            if pipe.unet.config.in_channels != 9:
                notices.append(f"inpaint_model {settings.inpaint_model!r} has "
                               f"{pipe.unet.config.in_channels} UNet input channels, not 9")
            return pipe.to(device), True
        except (OSError, ValueError) as exc:
            notices.append(f"inpaint_model {settings.inpaint_model!r} could not be loaded "
                           f"({str(exc)[:200]}); inpainting uses the base model")
    return StableDiffusionInpaintPipeline.from_pipe(base), False
