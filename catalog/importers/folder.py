"""Import a local folder of adapter files as A1111/ComfyUI users keep them.

Walks ``*.safetensors`` recursively (pickles only with ``allow_pickle``, and even then they
are recorded, never unpickled), reads each header and its sidecars, hashes the file once
(cached in the store) and upserts one card per file. A file with a Civitai sidecar gets the
card id ``civitai-<versionId>`` so it merges with a Civitai import of the same adapter;
other files get ``folder-<sha256[:16]>``. One bad file is skipped with its reason; the rest
proceed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from catalog.card import AdapterCard, AdapterFile, ExampleImage
from catalog.lora_file import (PICKLE_SUFFIXES, SAFETENSORS_SUFFIX, UNLOADABLE_TYPES, LoraFileError,
                               LoraInfo, base_family, check_format, file_hashes, inspect_lora,
                               reconcile_base_model)
from catalog.store import CatalogError, CatalogStore, ImportReport

from .sidecars import (Sidecars, base_model_of, civitai_examples, clean_text, read_sidecars,
                       safe_inside)

ADAPTER_SUFFIXES = (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES)
_BULKY_SS_KEYS = ("ss_tag_frequency", "ss_dataset_dirs", "ss_datasets", "ss_bucket_info",
                  "ss_reg_dataset_dirs")


def import_folder(store: CatalogStore, folder: str | Path, *, allow_pickle: bool = False,
                  roots: Iterable[str | Path] | None = None, progress: bool = True) -> ImportReport:
    """Import every adapter file under ``folder``; see the module docstring."""
    root = check_folder(folder, roots)
    report = ImportReport()
    files = list(iter_adapter_files(root, report))
    seen: dict[str, Path] = {}
    for path in tqdm(files, desc=f"import {root.name}", unit="file", disable=not progress):
        rel = path.relative_to(root)
        try:
            card = card_for_file(store, path, root, allow_pickle)
        except LoraFileError as exc:
            report.skip(str(rel), str(exc))
            continue
        except OSError as exc:
            report.skip(str(rel), f"cannot be read: {exc}")
            continue
        except ValueError as exc:  # a sidecar value the card schema rejects
            report.skip(str(rel), f"invalid metadata: {exc}")
            continue
        if card.id in seen:
            report.skip(str(rel), f"same adapter as {seen[card.id].relative_to(root)} (card {card.id})")
            continue
        seen[card.id] = path
        report.notices += [f"{rel}: {n}" for n in card.notices]
        store.upsert_counted(merge_with_existing(store, card), report, str(rel))
    return report


def allowed_roots(settings) -> list[str] | None:
    """The import roots a server allows: ``folder_import_roots``; with none set, anywhere on a
    private server and nowhere on a public one (``Settings.public``)."""
    roots = list(settings.folder_import_roots or [])
    if not roots and settings.public:
        raise CatalogError("folder import is off on a public server; set STYLUS_FOLDER_IMPORT_ROOTS "
                           "to the folders users may import from")
    return roots or None


def check_folder(folder: str | Path, roots: Iterable[str | Path] | None) -> Path:
    """The folder, resolved; it must exist and lie inside one of ``roots`` when they are given."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise CatalogError(f"folder {folder} does not exist or is not a directory")
    root = path.resolve()
    if roots is not None:
        allowed = [Path(r).expanduser().resolve() for r in roots]
        if not any(root == a or a in root.parents for a in allowed):
            shown = ", ".join(str(a) for a in allowed) or "(none configured)"
            raise CatalogError(f"folder {folder} is not inside an allowed import root; allowed: {shown}")
    return root


def iter_adapter_files(root: Path, report: ImportReport) -> Iterator[Path]:
    """Adapter files under ``root`` in a stable order; links that leave ``root`` are refused."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if d.startswith(".") or (here / d).is_symlink():
                if (here / d).is_symlink():
                    report.notices.append(f"{(here / d).relative_to(root)}: linked folder not followed")
                dirnames.remove(d)
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            if not name.lower().endswith(ADAPTER_SUFFIXES):
                continue
            if not safe_inside(path, root):
                report.skip(str(path.relative_to(root)),
                            f"link resolves outside {root} (path traversal); refused")
                continue
            yield path


def card_for_file(store: CatalogStore, path: Path, root: Path, allow_pickle: bool,
                  civitai: dict | None = None) -> AdapterCard:
    """Inspect ``path`` (header, hashes, sidecars) and build its card. Raises LoraFileError.

    ``civitai``: the file's Civitai model-version JSON found by its hash (``catalog identify``),
    used as a ``.civitai.info`` sidecar would be when the file has none."""
    fmt = check_format(path, allow_pickle)
    info = inspect_lora(path) if fmt == "safetensors" else None
    sha, autov2 = file_hashes(path, store)
    side = read_sidecars(path, root)
    if civitai and not side.civitai:
        side.civitai = civitai
    return build_card(path, info, side, sha, autov2)


def build_card(path: Path, info: LoraInfo | None, side: Sidecars, sha: str, autov2: str) -> AdapterCard:
    notices = list(side.notices)
    base, base_raw = resolve_base_model(info, side, notices)
    adapter_type = info.adapter_type if info else "unknown"
    notices += type_notices(adapter_type, base, pickle=info is None)
    vid = side.version_id
    description = side.description()
    examples = civitai_examples(side.civitai, path.stem)
    examples += [ExampleImage(local_path=str(p)) for p in side.previews]
    model = side.model
    return AdapterCard(
        id=f"civitai-{vid}" if vid else f"folder-{sha[:16].lower()}",
        source="folder",
        civitai_model_id=side.model_id if vid else None,
        civitai_version_id=vid,
        name=str(model.get("name") or (info.output_name if info else "") or path.stem),
        version_name=str(side.civitai.get("name") or ""),
        base_model=base, base_model_raw=base_raw, adapter_type=adapter_type,
        tags=side.tags(), trigger_words=trigger_words(info, side),
        description_raw=description, description_clean=clean_text(description),
        examples=examples, recommended_weight=side.preferred_weight(),
        nsfw=bool(model.get("nsfw", False)), real_person=bool(model.get("poi", False)),
        files=[local_file(path, side, sha, autov2, notices, pickle=info is None)],
        local_path=str(path), notices=notices, extra=extra_facts(info, side))


def resolve_base_model(info: LoraInfo | None, side: Sidecars, notices: list[str]) -> tuple[str, str]:
    """(base model, raw value): the sidecar's unless the file's shapes say another family."""
    file_base = info.base_model if info else "unknown"
    evidence = info.base_model_evidence if info else ""
    raw = side.base_model()
    if not raw:
        return file_base, (info.metadata.get("ss_base_model_version", "") if info else "")
    return reconcile_base_model(file_base, evidence, raw, base_model_of(raw), notices), raw


def type_notices(adapter_type: str, base: str, pickle: bool) -> list[str]:
    out = []
    if adapter_type in UNLOADABLE_TYPES:
        out.append(f"{adapter_type}: not loadable by diffusers (kept in the catalog, not used for generation)")
    elif adapter_type == "other":
        out.append("no LoRA/LoCon/LoHa/LoKr keys found: not an adapter Stylus can load")
    if base_family(base) in ("SD 2", "SDXL"):
        out.append(f"base model {base}: incompatible with SD 1.5 pipelines")
    if pickle:
        out.append("pickle file recorded without inspection (never unpickled); loading it needs allow_pickle")
    return out


def trigger_words(info: LoraInfo | None, side: Sidecars) -> list[str]:
    """Activation text and trainedWords; failing both, the most frequent training tags."""
    words = side.trigger_words()
    if not words and info is not None:
        words = info.top_tags(3)
    return words


def local_file(path: Path, side: Sidecars, sha: str, autov2: str, notices: list[str],
               pickle: bool) -> AdapterFile:
    remote = _matching_remote_file(side, path.name, sha)
    remote_sha = _remote_sha256(remote)
    if remote_sha and remote_sha != sha:
        notices.append(f"file differs from the Civitai version's file {remote.get('name')!r} "
                       f"(SHA256 {sha[:10]}... vs {remote_sha[:10]}...)")
    return AdapterFile(name=path.name, size_kb=round(path.stat().st_size / 1024, 1), sha256=sha,
                       autov2=autov2, download_url=_str_or_none(remote.get("downloadUrl")), primary=True,
                       format="PickleTensor" if pickle else "SafeTensor")


def _matching_remote_file(side: Sidecars, name: str, sha: str) -> dict:
    raw_files = side.civitai.get("files")
    files = [f for f in (raw_files if isinstance(raw_files, list) else []) if isinstance(f, dict)]
    for f in files:
        if _remote_sha256(f) == sha:
            return f
    for f in files:
        if str(f.get("name", "")).lower() == name.lower():
            return f
    return next((f for f in files if f.get("primary")), files[0] if files else {})


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _remote_sha256(remote: dict) -> str:
    hashes = remote.get("hashes")
    return str(hashes.get("SHA256") or "").upper() if isinstance(hashes, dict) else ""


def extra_facts(info: LoraInfo | None, side: Sidecars) -> dict:
    extra: dict = {}
    if info is not None:
        extra["kohya"] = {k: v[:500] for k, v in info.metadata.items()
                          if k.startswith("ss_") and k not in _BULKY_SS_KEYS}
        extra["tag_frequency_top"] = info.tag_frequency().most_common(20)
        extra["base_model_evidence"] = info.base_model_evidence
        extra["tensor_count"] = len(info.header.shapes)
    if side.a1111.get("notes"):
        extra["notes"] = str(side.a1111["notes"])[:5000]
    return extra


def merge_with_existing(store: CatalogStore, card: AdapterCard) -> AdapterCard:
    """A card another source (Civitai) already holds keeps its facts and gains the local file."""
    existing = store.find(card.id)
    if existing is None or existing.source == "folder":
        return card
    data = existing.source_dict()
    local = card.files[0]
    files = [AdapterFile.model_validate(f) for f in data["files"]]
    match = next((f for f in files if f.sha256 == local.sha256 or f.name.lower() == local.name.lower()), None)
    if match is None:
        files.append(local.model_copy(update={"primary": False}))
    else:
        match.sha256, match.autov2 = match.sha256 or local.sha256, match.autov2 or local.autov2
    data.update(
        local_path=card.local_path, adapter_type=card.adapter_type,
        files=[f.model_dump(mode="json") for f in files],
        trigger_words=list(dict.fromkeys(existing.trigger_words + card.trigger_words)),
        recommended_weight=existing.recommended_weight if existing.recommended_weight is not None
        else card.recommended_weight,
        notices=list(dict.fromkeys(existing.notices + card.notices)),
        extra=existing.extra | {"local": card.extra})
    return AdapterCard.model_validate(data)
