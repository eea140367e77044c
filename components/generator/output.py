"""Write a result to a folder: one PNG per image (with ``parameters``), the baseline, the labelled
grid (:mod:`components.generator.grid`), optionally a ComfyUI workflow per variant
(:mod:`components.generator.comfy`) and a JSON summary that says which images came from the
preview model and which used stand-ins."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.types import GenerationResult
from ground.atomic_files import atomic_path, write_text

from .comfy import ComfyFiles, save_workflow
from .grid import result_grid
from .metadata import save_png


def served_by(worker: dict[str, Any] | None) -> str:
    """Which worker-pool replica made a result (components/workers), or "" when made in this process."""
    if not worker:
        return ""
    return (f"served by worker replica {worker.get('replica', '?')} on node {worker.get('node', '?')} "
            f"(queue position {worker.get('queue_position', '?')}, retries {worker.get('retries', 0)})")


def save_result(result: GenerationResult, folder: Path, stem: str = "stylus",
                extra: dict[str, Any] | None = None, names: dict[str, str] | None = None,
                comfy: ComfyFiles | None = None) -> dict[str, Any]:
    """Save everything; set ``path`` on each image; return the summary that was written.

    ``names``: card id -> adapter name for the grid's labels (default: the ids). ``comfy``: also
    write each variant's ComfyUI workflow beside its PNG (``<png name>.comfyui.json``), loading
    these files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, img in enumerate(result.images):
        img.path = str(save_png(img.image, folder / f"{stem}-{n:02d}-seed{img.seed}.png", img.parameters))
        rows.append({"path": img.path, "seed": img.seed, "parameters": img.parameters,
                     "variant": None if img.variant is None else {
                         "index": img.variant.index, "weights": img.variant.weights,
                         "prompt": img.variant.prompt, "export": img.variant.export}})
        if comfy is not None:
            rows[-1]["comfy_workflow"] = str(save_workflow(img.path, img.parameters, comfy))
    summary: dict[str, Any] = {"model": result.model, "preview_model": result.preview_model,
                               "images": rows, "notices": result.notices, "timings": result.timings}
    if result.worker:  # served by the worker pool: which replica, its queue position, retries
        summary["worker"] = result.worker
    if result.baseline is not None:
        b = result.baseline
        b.path = str(save_png(b.image, folder / f"{stem}-baseline-seed{b.seed}.png", b.parameters))
        summary["baseline"] = {"path": b.path, "seed": b.seed, "parameters": b.parameters}
    if result.images:  # the base model's image first, marked; then the variants
        grid, labels = result_grid(result, names or {})
        grid_path = folder / f"{stem}-grid.png"
        with atomic_path(grid_path) as tmp:
            grid.save(tmp, format="PNG")
        summary["grid"] = str(grid_path)
        summary["grid_labels"] = labels
    if result.preview_model:
        summary["warning"] = "images come from the untrained preview model (random weights)"
    summary.update(extra or {})
    write_text(folder / f"{stem}-summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
