"""The adapter card: one validated record per adapter *version* (a loadable file).

A card has three parts kept apart so that curation survives re-imports:
- source fields, written by importers (replaced on every re-import),
- ``refined``, written by a refiner (recomputed when the source changes),
- ``curation``, written by people (never touched by importers or refiners).
The ``effective_*`` accessors combine them: curation wins, then refined, then source.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalog.safety import RATINGS, screen

Source = Literal["civitai", "folder", "hf", "manual"]
ADAPTER_TYPES = ("LoRA", "LoCon", "LoHa", "LoKr", "DoRA", "other", "unknown")
# LoHa/LoKr/DoRA load through peft (components/generator/lycoris.py); unknown: no file seen yet.
# For both, the loader has the last word on a file (an input-axis DoRA is refused with its reason).
LOADABLE_TYPES = ("LoRA", "LoCon", "LoHa", "LoKr", "DoRA", "unknown")
CATEGORIES = ("style", "character", "clothing", "concept", "background", "pose", "object",
              "vehicle", "animal", "building", "action", "food", "plant", "tool", "other")
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0
MIN_INT, MAX_INT = -2**63, 2**63 - 1  # what an SQLite INTEGER column holds

_BASE_MODELS = {
    "sd 1.4": "SD 1.4", "sd1.4": "SD 1.4",
    "sd 1.5": "SD 1.5", "sd1.5": "SD 1.5", "sd15": "SD 1.5", "sd_v1": "SD 1.5", "sd1": "SD 1.5",
    "sd 1": "SD 1.5", "sd-1.5": "SD 1.5", "sd 1.5 lcm": "SD 1.5 LCM",
    "sd 2.0": "SD 2.0", "sd2.0": "SD 2.0", "sd 2.0 768": "SD 2.0 768", "sd 2.1": "SD 2.1",
    "sd2.1": "SD 2.1", "sd 2.1 768": "SD 2.1 768", "sd 2.1 unclip": "SD 2.1 Unclip", "sd_v2": "SD 2.x",
    "sdxl 0.9": "SDXL 0.9", "sdxl 1.0": "SDXL 1.0", "sdxl": "SDXL 1.0", "sdxl_base_v1-0": "SDXL 1.0",
    "sdxl 1.0 lcm": "SDXL 1.0 LCM", "sdxl turbo": "SDXL Turbo", "pony": "Pony",
}


def normalize_base_model(raw: str | None) -> str:
    """Map the many spellings of a base model to one name; unknown values are kept as given."""
    if not raw:
        return "unknown"
    key = re.sub(r"\s+", " ", str(raw).strip().lower()).replace("stable diffusion", "sd")
    key = key.replace("v1-5", "1.5").replace("v1.5", "1.5").replace("v2-1", "2.1")
    return _BASE_MODELS.get(key, str(raw).strip())


def slug(text: str, max_len: int = 60) -> str:
    out = re.sub(r"[^a-zA-Z0-9._-]+", "_", text).strip("_.")
    return (out or "adapter")[:max_len]


class AdapterFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    size_kb: float | None = None
    sha256: str | None = None
    autov2: str | None = None
    download_url: str | None = None
    primary: bool = False
    format: str | None = None  # SafeTensor, PickleTensor, ...

    @field_validator("sha256", "autov2")
    @classmethod
    def _upper_hex(cls, v: str | None) -> str | None:
        return v.upper() if v else None


class ExampleImage(BaseModel):
    """One example image of the adapter with the prompt that made it."""
    model_config = ConfigDict(extra="ignore")
    url: str | None = None
    local_path: str | None = None
    width: int | None = None
    height: int | None = None
    nsfw: bool = False
    prompt: str = ""
    negative_prompt: str = ""
    lora_weight: float | None = None  # weight of this adapter in the prompt's <lora:NAME:W>
    lora_names: list[str] = Field(default_factory=list)  # every <lora:NAME> in the prompt


PURPOSE_KINDS = ("style", "medium", "subject", "object", "clothing", "place", "pose", "effect", "utility",
                 "character")
# what an adapter pushes into every image besides its concept; foreign unless the prompt asks for it
BRINGS = ("person", "woman", "man", "character", "franchise", "sexual", "suggestive", "slider")


class Purpose(BaseModel):
    """What an adapter is for: the concepts it renders, their kind, and what it brings along."""
    model_config = ConfigDict(extra="ignore")
    concepts: list[str] = Field(default_factory=list)  # "studio ghibli", "castle", "watercolor"
    kind: str = "subject"
    brings: list[str] = Field(default_factory=list)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in PURPOSE_KINDS:
            raise ValueError(f"purpose kind {v!r} is not one of {', '.join(PURPOSE_KINDS)}")
        return v

    @field_validator("brings")
    @classmethod
    def _brings(cls, v: list[str]) -> list[str]:
        bad = [b for b in v if b not in BRINGS]
        if bad:
            raise ValueError(f"brings {bad!r}: allowed are {', '.join(BRINGS)}")
        return list(dict.fromkeys(v))

    @field_validator("concepts")
    @classmethod
    def _concepts(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(c.strip() for c in v if c and c.strip()))[:16]


class Refined(BaseModel):
    """Refiner output. ``refiner`` names who wrote it (e.g. "offline-1", "vlm:openai/gpt-4o")."""
    model_config = ConfigDict(extra="ignore")
    description: str = ""
    category: str = "other"
    keywords: list[str] = Field(default_factory=list)
    trigger_words: list[str] = Field(default_factory=list)  # found in the description text
    recommended_weight: float | None = None
    weight_source: str = ""  # author-text | example-median | default | vlm
    purpose: Purpose | None = None  # what the adapter renders and brings (offline refiner)
    refiner: str = ""
    source_hash: str = ""  # content hash of the card the refiner saw


class Curation(BaseModel):
    """Edits made by a curator. ``None`` means "not edited": fall back to refined/source."""
    model_config = ConfigDict(extra="ignore")
    blocked: bool = False
    category: str | None = None
    description: str | None = None
    weight: float | None = None
    tags: list[str] | None = None
    trigger_words: list[str] | None = None
    nsfw: bool | None = None
    real_person: bool | None = None
    character: bool | None = None
    rating: str | None = None  # sfw | suggestive | explicit (catalog/safety.py); wins over the screen
    purpose: Purpose | None = None
    notes: str = ""
    edited_by: str = ""
    edited_at: str = ""

    @field_validator("weight")
    @classmethod
    def _weight_range(cls, v: float | None) -> float | None:
        if v is not None and not MIN_WEIGHT <= v <= MAX_WEIGHT:
            raise ValueError(f"weight {v} is outside [{MIN_WEIGHT}, {MAX_WEIGHT}]")
        return v

    @field_validator("rating")
    @classmethod
    def _rating(cls, v: str | None) -> str | None:
        if v is not None and v not in RATINGS:
            raise ValueError(f"rating {v!r} is not one of {', '.join(RATINGS)}")
        return v

    @field_validator("category")
    @classmethod
    def _category(cls, v: str | None) -> str | None:
        if v is not None and v not in CATEGORIES:
            raise ValueError(f"category {v!r} is not one of {', '.join(CATEGORIES)}")
        return v


class AdapterCard(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    id: str = Field(min_length=1, max_length=300)
    source: Source
    civitai_model_id: int | None = Field(default=None, ge=MIN_INT, le=MAX_INT)
    civitai_version_id: int | None = Field(default=None, ge=MIN_INT, le=MAX_INT)
    hf_repo: str | None = None
    name: str = Field(min_length=1)
    version_name: str = ""
    creator: str = ""
    base_model: str = "unknown"
    base_model_raw: str = ""
    adapter_type: str = "unknown"
    tags: list[str] = Field(default_factory=list)
    trigger_words: list[str] = Field(default_factory=list)
    description_raw: str = ""
    description_clean: str = ""
    examples: list[ExampleImage] = Field(default_factory=list)
    recommended_weight: float | None = None  # from the source (sidecar preferred weight, ...)
    nsfw: bool = False
    real_person: bool = False
    files: list[AdapterFile] = Field(default_factory=list)
    local_path: str | None = None
    download_count: int = Field(default=0, ge=MIN_INT, le=MAX_INT)
    notices: list[str] = Field(default_factory=list)  # e.g. "LoHa: not loadable by diffusers"
    extra: dict = Field(default_factory=dict)  # source facts with no field (kohya ss_* keys, ...)

    refined: Refined = Field(default_factory=Refined)
    curation: Curation = Field(default_factory=Curation)

    @field_validator("adapter_type")
    @classmethod
    def _adapter_type(cls, v: str) -> str:
        if v not in ADAPTER_TYPES:
            raise ValueError(f"adapter_type {v!r} is not one of {', '.join(ADAPTER_TYPES)}")
        return v

    @field_validator("recommended_weight")
    @classmethod
    def _weight(cls, v: float | None) -> float | None:
        if v is not None and not MIN_WEIGHT <= v <= MAX_WEIGHT:
            return None  # sources carry junk such as 100; treat as unknown rather than fail the card
        return v

    # ---- identity and hashing -------------------------------------------------------
    def source_dict(self) -> dict:
        return self.model_dump(exclude={"refined", "curation"}, mode="json")

    def content_hash(self) -> str:
        """Hash of the source fields: changes when a re-import brings new facts."""
        blob = json.dumps(self.source_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    @property
    def primary_file(self) -> AdapterFile | None:
        for f in self.files:
            if f.primary:
                return f
        return self.files[0] if self.files else None

    @property
    def lora_name(self) -> str:
        """The name users write in ``<lora:NAME:W>``: the file name without extension."""
        f = self.primary_file
        if f is not None:
            return re.sub(r"\.(safetensors|ckpt|pt|bin)$", "", f.name, flags=re.I)
        return slug(self.name)

    # ---- effective values: curation > refined > source -------------------------------
    @property
    def blocked(self) -> bool:
        return self.curation.blocked

    def effective_description(self) -> str:
        return self.curation.description or self.refined.description or self.description_clean[:500]

    def effective_category(self) -> str:
        return self.curation.category or self.refined.category or "other"

    def effective_weight(self) -> float:
        for w in (self.curation.weight, self.refined.recommended_weight, self.recommended_weight):
            if w is not None:
                return float(w)
        return 0.8

    def effective_tags(self) -> list[str]:
        return self.curation.tags if self.curation.tags is not None else self.tags

    def effective_trigger_words(self) -> list[str]:
        if self.curation.trigger_words is not None:
            return self.curation.trigger_words
        seen = list(self.trigger_words)
        seen += [t for t in self.refined.trigger_words if t not in seen]
        return seen

    def effective_rating(self) -> str:
        """sfw | suggestive | explicit: the curator's rating, else the content screen of all the
        evidence (source flag, name, tags, trigger words, example prompts: catalog/safety.py)."""
        if self.curation.rating is not None:
            return self.curation.rating
        if self.curation.nsfw is not None:  # the older on/off switch of the Catalog tab
            return "explicit" if self.curation.nsfw else "sfw"
        return screen(self)[0]

    def rating_reasons(self) -> list[str]:
        if self.curation.rating is not None or self.curation.nsfw is not None:
            return [f"rated {self.effective_rating()} by a curator"]
        return screen(self)[1]

    def effective_nsfw(self) -> bool:
        """Sexual by any evidence (or by a curator): never part of a SFW selection."""
        return self.effective_rating() == "explicit"

    def effective_real_person(self) -> bool:
        return self.curation.real_person if self.curation.real_person is not None else self.real_person

    def is_character(self) -> bool:
        if self.curation.character is not None:
            return self.curation.character
        return self.effective_real_person() or self.effective_category() == "character"

    def is_loadable(self, base_model: str = "SD 1.5") -> bool:
        """Can the SD pipeline of ``base_model`` load this adapter at all?"""
        return self.adapter_type in LOADABLE_TYPES and self.base_model in (base_model, "unknown")
