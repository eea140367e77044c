"""Import a Hugging Face model repository: a local directory, or a hub id when online.

One card per weight file in the repository root (``pytorch_lora_weights.safetensors`` etc.),
id ``hf-<repo slug>-<file stem>``. The model card's YAML front matter gives base_model,
tags, instance_prompt, widget prompts and license. From the hub only README.md and the
safetensors *headers* are fetched (HTTP range requests); hashes come from the hub's LFS
metadata, so weights are never downloaded.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from catalog.card import AdapterCard, AdapterFile, ExampleImage, normalize_base_model, slug
from catalog.lora_file import (PICKLE_SUFFIXES, SAFETENSORS_SUFFIX, LoraFileError, SafetensorsHeader,
                               autov2_of, file_hashes, info_from_header, read_safetensors_header,
                               reconcile_base_model)
from catalog.store import CatalogError, CatalogStore, ImportReport

from . import without_token
from .folder import type_notices
from .sidecars import clean_text

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)
_GENERIC_TAGS = {"text-to-image", "diffusers", "lora", "stable-diffusion", "stable-diffusion-diffusers",
                 "diffusers-training", "template:sd-lora", "template:diffusion-lora", "safetensors"}
_HF_BASES = (("stable-diffusion-xl", "SDXL 1.0"), ("sdxl", "SDXL 1.0"), ("v1-5", "SD 1.5"),
             ("v1-4", "SD 1.4"), ("stable-diffusion-2-1", "SD 2.1"), ("stable-diffusion-2", "SD 2.0"))
_DEFAULT_STEMS = ("pytorch_lora_weights", "adapter_model", "lora")


@dataclass
class WeightFile:
    name: str  # path inside the repository
    size: int | None
    sha256: str | None
    header: SafetensorsHeader
    local_path: Path | None = None


@dataclass
class HfRepo:
    repo_id: str  # "owner/name" when known, else the directory name
    on_hub: bool  # repo_id is a real hub id (download URLs can be built)
    readme: str = ""
    weights: list[WeightFile] = field(default_factory=list)


def import_hf(store: CatalogStore, repo_or_dir: str | Path, *, token: str = "",
              progress: bool = True) -> ImportReport:
    """Import the weight files of a local HF-style directory or a hub repository."""
    report = ImportReport()
    path = Path(repo_or_dir).expanduser()
    if path.exists():
        repo = read_local_repo(path, store, report)
    elif HUB_ID.match(str(repo_or_dir)):
        repo = read_hub_repo(str(repo_or_dir), token, report)
    else:
        raise CatalogError(f"{repo_or_dir!r} is neither a local directory nor a hub id like 'owner/name'")
    front, body, notes = parse_model_card(repo.readme)
    report.notices += notes
    if not repo.weights:
        report.notices.append(f"{repo.repo_id}: no .safetensors weight file in the repository root")
    for wf in tqdm(repo.weights, desc=f"import {repo.repo_id}", unit="file", disable=not progress):
        try:
            card = build_hf_card(repo, wf, front, body)
        except ValueError as exc:
            report.skip(wf.name, f"invalid model card data: {exc}")
            continue
        report.notices += [f"{wf.name}: {n}" for n in card.notices]
        store.upsert_counted(card, report, wf.name)
    return report


def read_local_repo(path: Path, store: CatalogStore, report: ImportReport) -> HfRepo:
    if not path.is_dir():
        raise CatalogError(f"{path} is a file; pass the repository directory (or use 'import folder')")
    repo = HfRepo(repo_id=_repo_id_from_path(path.resolve()), on_hub=False)
    repo.on_hub = "/" in repo.repo_id
    readme = path / "README.md"
    if readme.is_file():
        repo.readme = readme.read_bytes().decode("utf-8", errors="replace")
    for p in sorted(path.iterdir()):
        suffix = p.suffix.lower()
        if not p.is_file() or suffix not in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES):
            continue
        if suffix != SAFETENSORS_SUFFIX:
            report.skip(p.name, f"{suffix} is a pickle format (can run code when loaded); refused, "
                                "use the .safetensors file")
            continue
        try:
            header = read_safetensors_header(p)
            sha, _ = file_hashes(p, store)
        except (LoraFileError, OSError) as exc:
            report.skip(p.name, str(exc))
            continue
        repo.weights.append(WeightFile(p.name, p.stat().st_size, sha, header, local_path=p))
    nested = sorted(str(p.relative_to(path)) for p in path.glob("*/**/*.safetensors")
                    if not any(part.startswith(".") for part in p.relative_to(path).parts))
    if nested:
        report.notices.append(f"weight files in subfolders not imported (training checkpoints or "
                              f"full models?): {', '.join(nested[:10])}")
    return repo


def _repo_id_from_path(path: Path) -> str:
    """``.../models--owner--name/snapshots/<rev>`` (the HF cache layout) gives owner/name."""
    for part in (path, *path.parents):
        if part.name.startswith("models--"):
            return part.name[len("models--"):].replace("--", "/", 1)
    return path.name


def read_hub_repo(repo_id: str, token: str, report: ImportReport) -> HfRepo:
    import httpx
    from huggingface_hub import HfApi, constants, hf_hub_download

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise CatalogError(f"hub id {repo_id!r} cannot be fetched: HF_HUB_OFFLINE is set (offline). "
                           "Pass a local directory holding the repository, or unset HF_HUB_OFFLINE")
    api = HfApi(token=token or None)
    repo = HfRepo(repo_id=repo_id, on_hub=True)
    try:
        info = api.model_info(repo_id, files_metadata=True)
        names = {s.rfilename for s in info.siblings or []}
        if "README.md" in names:
            local = hf_hub_download(repo_id, "README.md", token=token or None)
            repo.readme = Path(local).read_text(encoding="utf-8", errors="replace")
        for s in info.siblings or []:
            if s.rfilename.lower().endswith(SAFETENSORS_SUFFIX) and "/" not in s.rfilename:
                meta = api.parse_safetensors_file_metadata(repo_id, s.rfilename)
                header = SafetensorsHeader(
                    metadata=dict(meta.metadata or {}),
                    shapes={k: tuple(t.shape) for k, t in meta.tensors.items()},
                    dtypes={k: str(t.dtype) for k, t in meta.tensors.items()})
                sha = s.lfs.sha256.upper() if s.lfs else None
                repo.weights.append(WeightFile(s.rfilename, s.size, sha, header))
            elif s.rfilename.lower().endswith(PICKLE_SUFFIXES) and "/" not in s.rfilename:
                report.skip(s.rfilename, "pickle format (can run code when loaded); refused")
    except (httpx.HTTPError, OSError, ValueError) as exc:  # HfHubHTTPError is both
        raise CatalogError(f"hub repository {repo_id!r} could not be read: "
                           f"{without_token(str(exc), token)}") from exc
    return repo


def parse_model_card(text: str) -> tuple[dict[str, Any], str, list[str]]:
    """(front matter, body, notices) of a README.md; bad YAML gives a notice and no front matter."""
    m = _FRONT_MATTER.match(text or "")
    if not m:
        return {}, text or "", []
    try:
        front = yaml.safe_load(m.group(1)) or {}
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date such as 2023-13-45
        return {}, text[m.end():], [f"README.md front matter is not valid YAML ({str(exc)[:120]}); ignored"]
    except RecursionError:
        return {}, text[m.end():], ["README.md front matter is YAML nested too deeply to read; ignored"]
    if not isinstance(front, dict):
        return {}, text[m.end():], ["README.md front matter is not a mapping; ignored"]
    return front, text[m.end():], []


def hf_base_model(value: Any) -> str:
    """A hub base_model id ("runwayml/stable-diffusion-v1-5") as a catalog base model name."""
    raw = str(value[0] if isinstance(value, list) and value else value or "")
    low = raw.lower()
    for marker, name in _HF_BASES:
        if marker in low:
            return name
    return normalize_base_model(raw)


def build_hf_card(repo: HfRepo, wf: WeightFile, front: dict[str, Any], body: str) -> AdapterCard:
    info = info_from_header(wf.header)
    notices: list[str] = []
    declared_raw = _first(front.get("base_model"))
    base = reconcile_base_model(info.base_model, info.base_model_evidence, declared_raw,
                                hf_base_model(declared_raw), notices)
    notices += type_notices(info.adapter_type, base, pickle=False)
    stem = Path(wf.name).stem
    repo_name = repo.repo_id.rsplit("/", 1)[-1]
    name = repo_name if stem in _DEFAULT_STEMS or len(repo.weights) == 1 else f"{repo_name} / {stem}"
    tags = [str(t) for t in _as_list(front.get("tags")) if str(t).lower() not in _GENERIC_TAGS]
    instance = str(front.get("instance_prompt") or "").strip()
    url = f"https://huggingface.co/{repo.repo_id}/resolve/main/{wf.name}" if repo.on_hub else None
    return AdapterCard(
        id=f"hf-{slug(repo.repo_id.replace('/', '--'), 80)}-{slug(stem)}", source="hf",
        hf_repo=repo.repo_id, name=name, version_name=stem,
        creator=repo.repo_id.split("/", 1)[0] if "/" in repo.repo_id else "",
        base_model=base, base_model_raw=declared_raw, adapter_type=info.adapter_type,
        tags=list(dict.fromkeys(tags)), trigger_words=[instance] if instance else info.top_tags(3),
        description_raw=body, description_clean=clean_text(body),
        examples=widget_examples(front, wf.local_path.parent if wf.local_path else None),
        files=[AdapterFile(name=wf.name, size_kb=round(wf.size / 1024, 1) if wf.size else None,
                           sha256=wf.sha256, autov2=autov2_of(wf.sha256) if wf.sha256 else None,
                           download_url=url, primary=True, format="SafeTensor")],
        local_path=str(wf.local_path) if wf.local_path else None, notices=notices,
        extra={"license": str(front.get("license") or ""), "base_model_evidence": info.base_model_evidence,
               "kohya": {k: v[:500] for k, v in info.metadata.items()
                         if k in ("ss_output_name", "ss_network_dim", "ss_network_alpha",
                                  "ss_base_model_version", "ss_sd_model_name")}})


def widget_examples(front: dict[str, Any], repo_dir: Path | None) -> list[ExampleImage]:
    out = []
    for w in _as_list(front.get("widget")):
        if not isinstance(w, dict) or not str(w.get("text") or "").strip():
            continue
        output = w.get("output") if isinstance(w.get("output"), dict) else {}
        ref = str(output.get("url") or "")
        local = _file_inside(repo_dir, ref) if repo_dir and ref and not ref.startswith("http") else None
        out.append(ExampleImage(prompt=str(w["text"]).strip(),
                                url=ref if ref.startswith("http") else None,
                                local_path=str(local) if local else None))
    return out


def _file_inside(repo_dir: Path, ref: str) -> Path | None:
    """``repo_dir / ref`` when that is a file inside ``repo_dir``; None for anything else."""
    local = repo_dir / ref
    try:
        return local if local.resolve().is_relative_to(repo_dir.resolve()) and local.is_file() else None
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _first(value: Any) -> str:
    items = _as_list(value)
    return str(items[0]).strip() if items else ""
