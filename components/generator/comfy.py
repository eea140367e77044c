"""A ComfyUI workflow that reproduces one Stylus image, in ComfyUI's own API ("prompt") format.

The workflow is built from the image's A1111 ``parameters`` text (metadata.py), so it can be made
for any Stylus PNG. Nodes, all from ComfyUI's core set::

    CheckpointLoaderSimple -> LoraLoader (one per adapter, chained, strength_model = strength_clip
    = the applied weight) -> CLIPTextEncode (positive, negative) -> KSampler <- EmptyLatentImage
    (txt2img) | LoadImage -> VAEEncode (img2img) | LoadImage + LoadImageMask -> VAEEncode ->
    SetLatentNoiseMask (inpaint) -> VAEDecode -> SaveImage

Inpainting uses ``SetLatentNoiseMask`` rather than ``VAEEncodeForInpaint``: the latter greys out the
masked pixels and is meant for denoise 1.0 on inpainting checkpoints, whereas Stylus repaints the
mask at the request's strength, which is what a noise mask with ``denoise = strength`` does.
ComfyUI draws its own noise and schedules, so the image matches the settings, not every pixel.
To use: put the checkpoint in ``ComfyUI/models/checkpoints``, the LoRA files in
``ComfyUI/models/loras`` (and an init image / mask in ``ComfyUI/input``) under the names the
workflow gives, then queue it (``POST /prompt`` with ``{"prompt": WORKFLOW}``) or drop the file on
the ComfyUI page, whose frontend opens API-format files too.
The workflow is a separate file, not a ``prompt`` chunk of the PNG: readers that pick one format per
image (Civitai, sd-parsers, ...) each decide for themselves which of the two wins, so the A1111 text
stays the PNG's only generation metadata.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from catalog.card import AdapterCard, slug
from ground.atomic_files import write_text
from ground.choices import MODES

from .metadata import lora_aliases, parse_parameters

# our sampler names (pipeline.SAMPLER_NAMES, as written in "Sampler") -> ComfyUI (sampler, scheduler)
COMFY_SAMPLERS: dict[str, tuple[str, str]] = {
    "Euler": ("euler", "normal"),
    "DDIM": ("ddim", "ddim_uniform"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
}
_TAG = re.compile(r"\s*<lora:[^>]*>")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
WORKFLOW_SUFFIX = ".comfyui.json"


@dataclass(frozen=True)
class ComfyFiles:
    """The file names the workflow loads, as the user has them in ComfyUI's folders."""
    checkpoint: str
    loras: dict[str, str] = field(default_factory=dict)  # <lora:ALIAS> alias -> LoRA file name
    init_image: str = "stylus-init.png"  # img2img / inpaint: in ComfyUI/input
    mask_image: str = "stylus-mask.png"  # inpaint: white = repaint


def comfy_files(model: str, label: str, cards: Iterable[AdapterCard], init_image: str | None = None,
                mask_image: str | None = None) -> ComfyFiles:
    """File names for a result: the checkpoint's own name when ``model`` (Settings.model) is a file;
    otherwise ``<label>.safetensors`` (a hub id, a diffusers folder or the preview model has no single
    file: the user picks theirs in the loader). Each card's LoRA under its primary file's name,
    reachable by every alias a tag can give it (alone in an image, or with a same-named adapter)."""
    path = Path(model).expanduser() if model else None
    checkpoint = path.name if path is not None and path.suffix.lower() in (".safetensors", ".ckpt") \
        else f"{slug(label or 'checkpoint', 100)}.safetensors"
    cards = list(cards)
    loras: dict[str, str] = {}
    together = lora_aliases({c.id: c.lora_name for c in cards})
    for card in cards:
        name = card.primary_file.name if card.primary_file is not None else f"{card.lora_name}.safetensors"
        loras[together[card.id]] = name
        loras.setdefault(lora_aliases({card.id: card.lora_name})[card.id], name)
    images = {k: v for k, v in (("init_image", init_image), ("mask_image", mask_image)) if v}
    return ComfyFiles(checkpoint, loras, **images)


def comfy_workflow(parameters: str, files: ComfyFiles) -> dict[str, dict[str, Any]]:
    """The API-format workflow (node id -> ``{"class_type", "inputs", "_meta"}``) for the image whose
    A1111 ``parameters`` text is given. Raises ValueError naming what is missing or not supported."""
    p = parse_parameters(parameters)
    missing = [k for k in ("Steps", "Sampler", "CFG scale", "Seed", "Size") if k not in p]
    if missing:
        raise ValueError(f"not A1111 parameters of a Stylus image: no {', '.join(missing)}")
    sampler = str(p["Sampler"])
    if sampler not in COMFY_SAMPLERS:
        raise ValueError(f"sampler {sampler!r} has no ComfyUI equivalent here; "
                         f"supported: {', '.join(COMFY_SAMPLERS)}")
    size = _SIZE.match(str(p["Size"]))
    if size is None:
        raise ValueError(f"Size {p['Size']!r} is not WIDTHxHEIGHT")
    mode = str(p.get("Stylus mode", "txt2img"))
    if mode not in MODES:
        raise ValueError(f"Stylus mode {mode!r} is not one of {', '.join(MODES)}")

    nodes: dict[str, dict[str, Any]] = {}

    def add(class_type: str, title: str, **inputs: Any) -> str:
        node_id = str(len(nodes) + 1)
        nodes[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
        return node_id

    ckpt = add("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=files.checkpoint)
    model, clip = [ckpt, 0], [ckpt, 1]
    for alias, weight in dict(p["loras"]).items():  # the applied weights, in the tags' order
        lora = add("LoraLoader", f"LoRA {alias}", model=model, clip=clip,
                   lora_name=files.loras.get(alias, f"{alias}.safetensors"),
                   strength_model=weight, strength_clip=weight)
        model, clip = [lora, 0], [lora, 1]
    positive = add("CLIPTextEncode", "Prompt", text=_TAG.sub("", str(p["prompt"])).strip(), clip=clip)
    negative = add("CLIPTextEncode", "Negative prompt", text=str(p["negative_prompt"]), clip=clip)
    vae = [ckpt, 2]
    width, height = int(size.group(1)), int(size.group(2))
    if mode == "txt2img":
        latent, denoise = add("EmptyLatentImage", "Empty Latent Image", width=width, height=height,
                              batch_size=1), 1.0
    else:
        image = add("LoadImage", f"Init image ({width}x{height})", image=files.init_image)
        latent = add("VAEEncode", "VAE Encode", pixels=[image, 0], vae=vae)
        denoise = float(str(p.get("Denoising strength", 1.0)))
        if mode == "inpaint":
            mask = add("LoadImageMask", "Mask (white = repaint)", image=files.mask_image, channel="red")
            latent = add("SetLatentNoiseMask", "Repaint the mask only", samples=[latent, 0], mask=[mask, 0])
    sampler_name, scheduler = COMFY_SAMPLERS[sampler]
    sampled = add("KSampler", "KSampler", model=model, seed=int(str(p["Seed"])), steps=int(str(p["Steps"])),
                  cfg=float(str(p["CFG scale"])), sampler_name=sampler_name, scheduler=scheduler,
                  positive=[positive, 0], negative=[negative, 0], latent_image=[latent, 0], denoise=denoise)
    decoded = add("VAEDecode", "VAE Decode", samples=[sampled, 0], vae=vae)
    add("SaveImage", "Save Image", images=[decoded, 0], filename_prefix="stylus")
    return nodes


def workflow_path(png: str | Path) -> Path:
    """Where the workflow of the image saved at ``png`` goes: beside it, ``<name>.comfyui.json``."""
    png = Path(png)
    return png.with_name(png.stem + WORKFLOW_SUFFIX)


def save_workflow(png: str | Path, parameters: str, files: ComfyFiles) -> Path:
    """Write the workflow of one image beside its PNG; return the JSON file's path."""
    path = workflow_path(png)
    write_text(path, json.dumps(comfy_workflow(parameters, files), indent=2, ensure_ascii=False))
    return path
