"""One settings object for every layer, with environment overrides.

Every field can be overridden with ``STYLUS_<FIELD>`` (upper case), e.g.
``STYLUS_CATALOG_DIR=/data/catalog`` or ``STYLUS_CHROMA_MODE=server``. Lists are
comma-separated; booleans accept 1/0, true/false, yes/no, on/off.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from ground.choices import (ADAPTER_MODES, CHARACTER_POLICIES, CHROMA_MODES, COMPOSERS, DEVICES, DTYPES, HF_LOGIN,
                            SCHEDULERS)
from ground.errors import StylusError

ENV_PREFIX = "STYLUS_"


def _default_home() -> Path:
    return Path(os.environ.get("STYLUS_HOME", Path.home() / ".cache" / "stylus"))


class SettingsError(StylusError, ValueError):
    """A setting has a value that is not allowed."""


MIN_ADMIN_TOKEN_CHARS = 16  # the admin token opens curation of a public instance
# a Ray cluster address for setting workers: ray://host:port (Ray Client) or host:port (GCS)
WORKERS_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:(?P<port>[0-9]{1,5})")
MAX_WORKER_REPLICAS = 64


@dataclass
class Settings:
    # where everything lives; catalog/cache/output dirs default to folders under it
    home: Path = field(default_factory=_default_home)
    catalog_dir: Path | None = None
    cache_dir: Path | None = None
    output_dir: Path | None = None

    # generation model: "" = the embedded untrained preview model (built locally)
    model: str = ""
    inpaint_model: str = ""  # optional 9-channel inpainting checkpoint
    scheduler: str = "euler"  # euler | ddim | dpm
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    safety_checker: bool = False  # explicit policy; real checkpoints only
    torch_threads: int = 0  # 0 = torch default
    lora_cache_size: int = 16  # adapters kept loaded on the pipeline (LRU)
    # fused: merge a variant's adapters for its batch (base speed), exact restore afterwards;
    # unfused: set_adapters scalings only (slower steps, never touches base weights)
    adapter_mode: str = "fused"

    # retrieval
    embedding_model: str = "minilm"  # "minilm" (offline package), any ST name/path, or "litellm:<model>"
    chroma_mode: str = "embedded"  # embedded | server
    chroma_host: str = "127.0.0.1"
    chroma_port: int = 8000
    top_k: int = 150
    base_model_filter: str = "SD 1.5"
    allow_nsfw: bool = False
    characters: str = "named"  # one of CHARACTER_POLICIES (ground/choices.py)

    # composition
    composer: str = "offline"  # one of COMPOSERS (ground/choices.py)
    llm_model: str = ""  # any litellm model string, e.g. "openai/gpt-4o-mini"
    llm_api_base: str = ""
    llm_api_key: str = ""
    llm_timeout: float = 30.0
    adapters_per_topic: int = 3
    base_weight: float = 0.8

    # network: used only for what a user configures
    civitai_token: str = ""
    hf_token: str = ""
    download_hosts: list[str] = field(
        default_factory=lambda: ["civitai.com", "image.civitai.com", "huggingface.co",
                                 "cdn-lfs.huggingface.co", "cdn-lfs.hf.co"])
    download_max_mb: int = 1024

    # safety of the server
    allow_pickle: bool = False  # load .ckpt/.pt/.bin adapters (runs pickled code)
    public: bool = False  # running as a public Space: folder import off unless enabled
    folder_import_roots: list[str] = field(default_factory=list)
    max_upload_mb: int = 20  # an uploaded init image / mask file
    max_upload_pixels: int = 4096 * 4096  # width x height of an uploaded image
    # who may curate a public instance (edits, blocks, imports, re-indexing); a private one
    # (public=False) lets every user curate. Curators sign in with Hugging Face (a Space's login
    # button; hf_login: auto = on a Space, on, off) and are listed by user name, or sign in with
    # admin_token in the Catalog tab (or the /curator_login API endpoint) anywhere else.
    curators: list[str] = field(default_factory=list)
    admin_token: str = ""
    hf_login: str = "auto"  # auto | on | off

    # time budgets (issue 13): wall-clock limits for a whole call, not per network read
    generation_timeout_s: float = 300.0  # one generate request (denoising is stopped between steps)
    download_timeout_s: float = 600.0  # one adapter file download, all its reads together
    llm_total_timeout_s: float = 60.0  # one LLM compose call, retries included

    # generation on a pool of Ray Serve workers (issue 17; requirements-workers.txt):
    # "" = in-process generator (the default; Ray is never imported), "auto" = start a local Ray
    # cluster with worker_replicas replicas, or the address of a running cluster (ray://host:port
    # for Ray Client, host:port for its GCS) where the deployment is, or gets, deployed
    workers: str = ""
    worker_replicas: int = 2  # replicas the pool deploys when it deploys them itself

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        self.catalog_dir = Path(self.catalog_dir or self.home / "catalog").expanduser()
        self.cache_dir = Path(self.cache_dir or self.home / "cache").expanduser()
        self.output_dir = Path(self.output_dir or self.home / "outputs").expanduser()
        self.validate()

    def validate(self) -> None:
        choices = {
            "scheduler": SCHEDULERS,
            "device": DEVICES,
            "dtype": DTYPES,
            "chroma_mode": CHROMA_MODES,
            "composer": COMPOSERS,
            "adapter_mode": ADAPTER_MODES,
            "characters": CHARACTER_POLICIES,
            "hf_login": HF_LOGIN,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed and not (name == "device" and str(value).startswith("cuda:")):
                raise SettingsError(f"setting {name}={value!r} is not allowed; use one of {', '.join(allowed)}")
        if self.top_k < 1:
            raise SettingsError(f"setting top_k={self.top_k} must be at least 1")
        if self.max_upload_mb < 1 or self.max_upload_pixels < 64 * 64:
            raise SettingsError(f"setting max_upload_mb={self.max_upload_mb} must be at least 1 and "
                                f"max_upload_pixels={self.max_upload_pixels} at least {64 * 64}")
        if self.public and self.allow_nsfw:
            raise SettingsError("setting allow_nsfw=True is not allowed with public=True: a public deployment "
                                "always selects SFW adapters (content screen, catalog/safety.py)")
        for name in ("generation_timeout_s", "download_timeout_s", "llm_total_timeout_s", "llm_timeout"):
            if not float(getattr(self, name)) > 0:
                raise SettingsError(f"setting {name}={getattr(self, name)!r} is not allowed; use a number of "
                                    f"seconds > 0 (STYLUS_{name.upper()})")
        if self.admin_token and len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS:
            raise SettingsError(f"setting admin_token is {len(self.admin_token)} characters long; use at least "
                                f"{MIN_ADMIN_TOKEN_CHARS} random characters (e.g. python -c "
                                f"'import secrets; print(secrets.token_urlsafe(24))')")
        if self.workers not in ("", "auto"):
            address = WORKERS_ADDRESS.fullmatch(self.workers)
            if not address or not 1 <= int(address["port"]) <= 65535:
                raise SettingsError(f"setting workers={self.workers!r} is not allowed; use '' (generate in this "
                                    f"process), 'auto' (a local Ray cluster) or a Ray cluster address "
                                    f"ray://host:port or host:port with a port in 1..65535 (STYLUS_WORKERS)")
        if not 1 <= self.worker_replicas <= MAX_WORKER_REPLICAS:
            raise SettingsError(f"setting worker_replicas={self.worker_replicas} must be in 1..{MAX_WORKER_REPLICAS} "
                                f"(STYLUS_WORKER_REPLICAS)")
        if not 0 <= self.adapters_per_topic <= 10:
            raise SettingsError(f"setting adapters_per_topic={self.adapters_per_topic} must be in 0..10")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then ``STYLUS_*`` environment variables, then explicit overrides."""
        environ = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, hints[f.name], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def public_dict(self) -> dict[str, Any]:
        """Settings as plain data with secrets masked (for the About tab and logs)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "set" if value else ""
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    def secrets(self) -> list[str]:
        return [getattr(self, name) for name in SECRET_FIELDS if getattr(self, name)]


SECRET_FIELDS = ("llm_api_key", "civitai_token", "hf_token", "admin_token")


def _parse(name: str, hint: Any, raw: str) -> Any:
    text = str(hint)
    try:
        if hint is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if "list" in text:
            return [part.strip() for part in raw.split(",") if part.strip()]
        if "Path" in text:
            return Path(raw) if raw else None
        return raw
    except ValueError:
        raise SettingsError(f"environment {ENV_PREFIX}{name.upper()}={raw!r} is not a valid {text}") from None


def quiet_environment() -> None:
    """Analytics and telemetry off; set before gradio/litellm/chromadb are imported."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
