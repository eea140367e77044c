"""Civitai API items (``/api/v1/models`` shape) -> adapter cards, one per model version.

Used by the dump importer (:mod:`catalog.importers.civitai`) and the live API importer
(:mod:`catalog.importers.civitai_api`). Raw items are validated with pydantic; a bad item
or a bad version is skipped with a reason that names it, the rest of the item proceeds.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from catalog.card import MAX_INT, AdapterCard, AdapterFile, ExampleImage, normalize_base_model

MAX_RAW_DESCRIPTION = 1_000_000  # characters of author HTML kept per card
MAX_CLEAN_DESCRIPTION = 20_000  # characters of clean text kept for display and search
MAX_EXAMPLES = 20  # example images kept per version
ADAPTER_TYPES_BY_CIVITAI = {"lora": "LoRA", "locon": "LoCon", "lycoris": "LoCon", "loha": "LoHa",
                            "lokr": "LoKr", "dora": "DoRA"}
ADAPTER_FILE_TYPES = ("Model", "Pruned Model", None)  # not "Training Data", "Config", ...
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+)(?::([^:>]*))?[^>]*>", re.IGNORECASE)


# ---- raw shapes (only what we read; everything else is ignored) ----------------------
class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RawFile(_Raw):
    name: str
    sizeKB: float | None = None
    hashes: dict[str, str | None] = Field(default_factory=dict)
    downloadUrl: str | None = None
    primary: bool | None = False
    type: str | None = None
    metadata: dict[str, Any] | None = None


def _valid_id(v: int) -> int:
    """Civitai ids are positive; the catalog (SQLite) holds them up to 2^63-1."""
    if not 0 < v <= MAX_INT:
        raise ValueError(f"id must be a whole number from 1 to {MAX_INT}")
    return v


class RawVersion(_Raw):
    id: int
    name: str = ""
    baseModel: str | None = None
    description: str | None = None
    createdAt: str | None = None
    trainedWords: list[str] | None = None
    files: list[dict[str, Any]] = Field(default_factory=list)
    images: list[dict[str, Any]] | None = None
    stats: dict[str, Any] | None = None

    _id = field_validator("id")(_valid_id)


class RawItem(_Raw):
    id: int
    name: str = Field(min_length=1)
    type: str
    description: str | None = None
    nsfw: bool | None = False
    poi: bool | None = False
    tags: list[str | dict[str, Any]] | None = None
    creator: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    modelVersions: list[Any]

    _id = field_validator("id")(_valid_id)


def describe_error(exc: ValidationError) -> str:
    """One line: the first invalid field, what it held and what is allowed."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "item"
    value = first.get("input")
    shown = "missing" if first.get("type") == "missing" else f"{type(value).__name__} {str(value)[:40]!r}"
    return f"field {where!r}: {first.get('msg')} (got {shown})"


def item_label(item: Any) -> str:
    ident = item.get("id") if isinstance(item, dict) else None
    return f"civitai item {ident}" if ident is not None else "civitai item without id"


# ---- HTML -> clean text ---------------------------------------------------------------
class _TextExtractor(HTMLParser):
    """Visible text of author HTML: no scripts, styles, images or attributes; links keep their text."""
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
             "blockquote", "pre", "hr", "table", "section"}
    HIDDEN = {"script", "style", "noscript", "template", "iframe", "object", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def clean_html(html: str, max_chars: int = MAX_CLEAN_DESCRIPTION) -> tuple[str, bool]:
    """Visible text of ``html`` with whitespace tidied; returns (text, truncated)."""
    markup = html[: max_chars * 20]  # more markup than that cannot yield more kept text
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except AssertionError:  # html.parser gives up on marked sections such as "<![foo[": read them as text
        parser = _TextExtractor()
        parser.feed(markup.replace("<![", "&lt;!["))
        parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if len(text) > max_chars:
        return text[:max_chars].rstrip(), True
    return text, len(html) > max_chars * 20


# ---- pieces of a card -------------------------------------------------------------------
def adapter_type(item_type: str, *names: str) -> str | None:
    """Our adapter type for Civitai's model ``type``; None when it is not an adapter.

    ``names`` should be version and file names only: model names often list every variant
    ("LoRA & LoHA"), and "Lycoris" is also an anime title (Lycoris Recoil)."""
    kind = ADAPTER_TYPES_BY_CIVITAI.get(item_type.strip().lower())
    if kind is None:
        return None
    text = " ".join(names).lower().replace("_", " ").replace("-", " ")
    for marker, found in (("loha", "LoHa"), ("lokr", "LoKr")):
        if re.search(rf"\b{marker}\b", text):
            return found
    if kind == "LoRA" and re.search(r"\b(lycoris|lyco|locon)\b", text) and "recoil" not in text:
        return "LoCon"
    return kind


def parse_lora_tags(prompt: str) -> list[tuple[str, float | None]]:
    """Every ``<lora:NAME:W>`` / ``<lyco:NAME:W>`` in a prompt as (NAME, W or None)."""
    out = []
    for m in _LORA_TAG.finditer(prompt or ""):
        try:
            weight = float(m.group(2)) if m.group(2) not in (None, "") else None
        except ValueError:
            weight = None
        out.append((m.group(1).strip(), weight))
    return out


def _file_stem(name: str) -> str:
    return re.sub(r"\.(safetensors|ckpt|pt|bin|zip)$", "", name, flags=re.I)


def example_from_image(img: dict[str, Any], stems: set[str]) -> ExampleImage | None:
    """One example image; ``stems`` are this version's file-name stems (lower case)."""
    if not isinstance(img, dict) or not isinstance(img.get("url"), str):
        return None
    meta = img.get("meta") if isinstance(img.get("meta"), dict) else {}
    prompt = meta.get("prompt") if isinstance(meta.get("prompt"), str) else ""
    negative = meta.get("negativePrompt") if isinstance(meta.get("negativePrompt"), str) else ""
    names, weight = [], None
    for name, w in parse_lora_tags(prompt):
        names.append(name)
        if weight is None and name.lower() in stems:
            weight = w
    resources = meta.get("resources")
    for res in resources if isinstance(resources, list) else []:
        if not isinstance(res, dict) or str(res.get("type", "")).lower() not in ("lora", "lycoris", "locon"):
            continue
        name = str(res.get("name") or "").strip()
        if name and name not in names:
            names.append(name)
        if weight is None and name.lower() in stems and isinstance(res.get("weight"), (int, float)):
            weight = float(res["weight"])
    nsfw = img.get("nsfw")
    return ExampleImage(
        url=img["url"], width=_int_or_none(img.get("width")), height=_int_or_none(img.get("height")),
        nsfw=nsfw if isinstance(nsfw, bool) else str(nsfw or "None") not in ("None", "false", ""),
        prompt=prompt, negative_prompt=negative, lora_weight=weight, lora_names=names)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def adapter_files(raw_files: list[Any], label: str, notices: list[str]) -> list[AdapterFile]:
    files = []
    for raw in raw_files:
        try:
            f = RawFile.model_validate(raw)
        except ValidationError as exc:
            notices.append(f"{label}: a file entry was skipped: {describe_error(exc)}")
            continue
        if f.type not in ADAPTER_FILE_TYPES:
            continue  # training data, configs: not loadable adapter files
        hashes = {k.upper(): v for k, v in f.hashes.items() if isinstance(v, str)}
        files.append(AdapterFile(
            name=f.name, size_kb=f.sizeKB, sha256=hashes.get("SHA256"), autov2=hashes.get("AUTOV2"),
            download_url=f.downloadUrl, primary=bool(f.primary),
            format=(f.metadata or {}).get("format")))
    return files


def _tags(raw: list[str | dict[str, Any]] | None) -> list[str]:
    out: list[str] = []
    for t in raw or []:
        name = t if isinstance(t, str) else str(t.get("name") or "")
        name = name.strip().lower()
        if name and name not in out:
            out.append(name)
    return out


def _description(model_html: str, version_html: str, label: str, notices: list[str]) -> tuple[str, str]:
    raw = model_html
    if version_html.strip():
        raw = f"{model_html}\n<h3>Version notes</h3>\n{version_html}" if model_html else version_html
    if len(raw) > MAX_RAW_DESCRIPTION:
        notices.append(f"{label}: description of {len(raw):,} characters truncated to "
                       f"{MAX_RAW_DESCRIPTION:,}")
        raw = raw[:MAX_RAW_DESCRIPTION]
    clean, truncated = clean_html(raw)
    if truncated:
        notices.append(f"{label}: clean description text cut to {MAX_CLEAN_DESCRIPTION:,} characters")
    return raw, clean


# ---- the card ---------------------------------------------------------------------------
def cards_from_item(item: Any) -> tuple[list[AdapterCard], list[str]]:
    """Cards for every valid version of one Civitai item, and messages naming what was skipped
    or changed. No cards and a message means the whole item was skipped."""
    label = item_label(item)
    if not isinstance(item, dict):
        return [], [f"{label}: expected a JSON object, got {type(item).__name__}"]
    try:
        raw = RawItem.model_validate(item)
    except ValidationError as exc:
        return [], [f"{label}: {describe_error(exc)}"]
    if adapter_type(raw.type) is None:
        allowed = ", ".join(sorted({"LORA", "LoCon", "LyCORIS", "LoHa", "LoKr", "DoRA"}))
        return [], [f"{label}: type {raw.type!r} is not an adapter type (allowed: {allowed})"]
    if not raw.modelVersions:
        return [], [f"{label}: has no model versions"]
    cards, messages = [], []
    for index, version in enumerate(raw.modelVersions):
        vid = version.get("id") if isinstance(version, dict) else None
        vlabel = f"{label} version {vid if vid is not None else '#' + str(index + 1)}"
        try:
            cards.append(_card(raw, RawVersion.model_validate(version), index, vlabel, messages))
        except ValidationError as exc:
            messages.append(f"{vlabel} skipped: {describe_error(exc)}")
    return cards, messages


def _card(raw: RawItem, ver: RawVersion, index: int, label: str, messages: list[str]) -> AdapterCard:
    notices: list[str] = []
    files = adapter_files(ver.files, label, messages)
    kind = adapter_type(raw.type, ver.name, *(f.name for f in files)) or "other"
    base = normalize_base_model(ver.baseModel)
    if base not in ("SD 1.5", "SD 1.4", "unknown"):
        notices.append(f"base model {base}: incompatible with SD 1.5 pipelines")
    desc_raw, desc_clean = _description(raw.description or "", ver.description or "", label, notices)
    messages.extend(n for n in notices if n.startswith(label))
    stems = {_file_stem(f.name).lower() for f in files}
    examples = [ex for ex in (example_from_image(img, stems) for img in (ver.images or [])[:MAX_EXAMPLES])
                if ex is not None]
    model_stats, version_stats = raw.stats or {}, ver.stats or {}
    downloads = version_stats.get("downloadCount", model_stats.get("downloadCount", 0))
    return AdapterCard(
        id=f"civitai-{ver.id}", source="civitai", civitai_model_id=raw.id, civitai_version_id=ver.id,
        name=raw.name.strip(), version_name=ver.name.strip(),
        creator=str((raw.creator or {}).get("username") or ""),
        base_model=base, base_model_raw=ver.baseModel or "", adapter_type=kind,
        tags=_tags(raw.tags),
        trigger_words=list(dict.fromkeys(w.strip() for w in ver.trainedWords or [] if w and w.strip())),
        description_raw=desc_raw, description_clean=desc_clean, examples=examples,
        nsfw=bool(raw.nsfw), real_person=bool(raw.poi), files=files,
        download_count=downloads if isinstance(downloads, int) and downloads >= 0 else 0,
        notices=notices,
        extra={"civitai_type": raw.type, "version_index": index, "created_at": ver.createdAt or "",
               "model_download_count": model_stats.get("downloadCount", 0),
               "rating": model_stats.get("rating"), "favorite_count": model_stats.get("favoriteCount")})
