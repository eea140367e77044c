"""Cards -> adapter files -> LoRA layers on the pipeline (bounded LRU, problems as notices).

Resolution order for a card: its ``local_path``, the adapter cache
(``cache_dir/loras/<SHA256 or id>.safetensors``), a download (real models only), and with the
preview model a deterministic stand-in. A card that cannot be served is skipped with a notice;
the request goes on without it.
"""
from __future__ import annotations

import logging
import re
import threading
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote
from typing import Iterator

from safetensors.torch import load_file as load_safetensors

from catalog.card import AdapterCard, slug
from catalog.lora_file import autov3_of_file
from catalog.settings import Settings

from .downloads import DownloadError, DownloadPolicy, download, download_hf
from .lora_keys import AdapterFileError, LoraFile, ModelMismatchError, read_lora_file
from .lycoris import load_lycoris, require_a_match
from .standin import ensure_standin

# Known cosmetic messages (ENVIRONMENT.md): every extra adapter triggers them; weights are right.
SD15_WIDTH = 768  # text-encoder width of SD 1.5 (CLIP ViT-L)
_NOISE = ("Already found a `peft_config` attribute", "Already found a peft_config attribute",
          "No LoRA keys associated to CLIPTextModel")


def _cosmetic(message: str) -> bool:
    """transformers' LOAD REPORT listing only MISSING keys names the *other* adapters' LoRA
    layers (ENVIRONMENT.md); a report with UNEXPECTED or MISMATCH entries is real."""
    if "LOAD REPORT" in message:
        return not re.search(r"UNEXPECTED|MISMATCH|CONVERSION", message)
    return any(n in message for n in _NOISE)


class _DropCosmetic(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _cosmetic(record.getMessage())


@dataclass
class AdapterSource:
    card_id: str
    path: Path
    origin: str  # local | cache | download | stand-in
    short_hash: str = ""  # AutoV3, A1111's "Lora hashes" value; set when a real file is loaded

    @property
    def stand_in(self) -> bool:
        return self.origin == "stand-in"


def cache_path(settings: Settings, card: AdapterCard) -> Path:
    """``cache_dir/loras/<SHA256>.safetensors`` (or the card id, slugged): never a name taken
    from the card's file name, so no ``../`` in a catalog can place a file outside the cache."""
    f = card.primary_file
    sha = (f.sha256 or "") if f is not None else ""
    key = sha if re.fullmatch(r"[0-9A-F]{64}", sha) else slug(card.id, 120)
    return Path(settings.cache_dir) / "loras" / f"{key}.safetensors"


def download_url(card: AdapterCard) -> str | None:
    f = card.primary_file
    if f is not None and f.download_url:
        return f.download_url
    if card.hf_repo and f is not None:
        return f"https://huggingface.co/{quote(card.hf_repo)}/resolve/main/{quote(f.name)}"
    return None


# a file on the hub as catalog/importers/hf.py (and Civitai mirrors) write its address
_HF_RESOLVE = re.compile(r"^https://huggingface\.co/([\w.-]+/[\w.-]+)/resolve/([^/?#]+)/([^?#]+)$")


def hf_file(card: AdapterCard) -> tuple[str, str, str] | None:
    """``(repo id, file name, revision)`` when the card's file lives on the Hugging Face hub:
    its URL is a hub ``resolve`` address, or it has no URL and the card names its ``hf_repo``."""
    f = card.primary_file
    if f is None:
        return None
    m = _HF_RESOLVE.match(f.download_url or "")
    if m:
        return m.group(1), unquote(m.group(3)), unquote(m.group(2))
    if card.hf_repo and not f.download_url:
        return card.hf_repo, f.name, "main"
    return None


_download_locks: dict[Path, threading.Lock] = {}
_download_locks_guard = threading.Lock()


def _download_lock(path: Path) -> threading.Lock:
    """One lock per cache file: two requests for the same card never write one ``.part`` at once."""
    with _download_locks_guard:
        return _download_locks.setdefault(path, threading.Lock())


def fetch_card_file(settings: Settings, card: AdapterCard, notices: list[str],
                    deadline: float | None = None) -> AdapterSource | None:
    """A real file for the card (local, cached or downloaded), or None with a notice why not.

    A download gets ``download_timeout_s`` in all, and never runs past ``deadline`` (a
    ``time.monotonic()`` value: the end of the request's own budget)."""
    f = card.primary_file
    if card.local_path and Path(card.local_path).is_file():
        return AdapterSource(card.id, Path(card.local_path), "local")
    cached = cache_path(settings, card)
    url = download_url(card)
    own = time.monotonic() + settings.download_timeout_s
    deadline = own if deadline is None else min(own, deadline)
    lock = _download_lock(cached)
    if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        notices.append(f"{card.name} ({card.id}): another request is still downloading its file; skipped")
        return None
    try:
        if cached.is_file():  # also when another request just downloaded it
            return AdapterSource(card.id, cached, "cache")
        if not url:
            notices.append(f"{card.name} ({card.id}): no local file and no download URL; skipped")
            return None
        policy = DownloadPolicy(hosts=list(settings.download_hosts), max_mb=settings.download_max_mb,
                                civitai_token=settings.civitai_token, hf_token=settings.hf_token,
                                deadline=deadline, allow_nsfw=settings.allow_nsfw)
        hub = hf_file(card)
        try:
            if hub is not None:  # through huggingface_hub: the hub's CDN, Xet storage, auth, resume
                download_hf(*hub, cached, policy, Path(settings.cache_dir) / "hf",
                            sha256=f.sha256 if f else None)
            else:
                download(url, cached, policy, sha256=f.sha256 if f else None)
        except DownloadError as exc:
            notices.append(f"{card.name} ({card.id}): {_redact(str(exc), settings)}; skipped")
            return None
    finally:
        lock.release()
    if f is None or not f.sha256:
        notices.append(f"{card.name} ({card.id}): downloaded without a SHA256 on the card; not verified")
    return AdapterSource(card.id, cached, "download")


def _redact(text: str, settings: Settings) -> str:
    for secret in settings.secrets():
        text = text.replace(secret, "***")
    return text


def _on_disk(settings: Settings, card: AdapterCard) -> bool:
    return bool(card.local_path and Path(card.local_path).is_file()) or cache_path(settings, card).is_file()


def adapter_name(card_id: str) -> str:
    """peft adapter names may not contain dots or slashes."""
    return "a_" + re.sub(r"[^A-Za-z0-9_]", "_", card_id)[:80]


@contextmanager
def captured_load_messages(sink: list[str]) -> Iterator[None]:
    """Collect diffusers/peft/transformers warnings raised while loading one adapter."""
    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sink.append(record.getMessage())

    handler = _Handler(level=logging.WARNING)
    loggers = [logging.getLogger(n) for n in ("diffusers", "peft", "transformers")]
    quiet = _DropCosmetic()
    console = [h for lg in loggers for h in lg.handlers]
    for h in console:
        h.addFilter(quiet)
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        sink.extend(str(w.message) for w in caught)
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        for h in console:
            h.removeFilter(quiet)


def _relevant(messages: list[str]) -> list[str]:
    keep = []
    for m in messages:
        if _cosmetic(m):
            continue
        if re.search(r"unexpected|missing|not found|could not|incompatible|unsupported|mismatch", m, re.I):
            keep.append(" ".join(m.split())[:300])
    return keep


class AdapterManager:
    """LoRAs loaded on one set of weights, at most ``capacity``, least recently used evicted."""

    def __init__(self, pipe, settings: Settings, preview: bool):
        self.pipe = pipe
        self.settings = settings
        self.preview = preview
        self.capacity = max(1, settings.lora_cache_size)
        self.loaded: OrderedDict[str, AdapterSource] = OrderedDict()  # adapter name -> source
        self.timings: dict[str, float] = {}

    def ensure(self, cards: list[AdapterCard], notices: list[str],
               fetched: dict[str, AdapterSource | None] | None = None) -> dict[str, AdapterSource]:
        """Load what is missing; return card id -> source for the cards that are usable.

        ``fetched``: card id -> file already fetched for this request (``fetch_card_file``, run
        before the generator lock; None = not available, its notice already given)."""
        self.timings = {"load_cold": 0.0, "load_warm": 0.0, "resolve": 0.0}
        fetched = fetched or {}
        ready: dict[str, AdapterSource] = {}
        if len(cards) > self.capacity:
            notices.append(f"{len(cards)} adapters requested but lora_cache_size is "
                           f"{self.capacity}; only the first {self.capacity} are used")
            cards = cards[: self.capacity]
        keep = {adapter_name(c.id) for c in cards}
        for card in cards:
            t0 = time.perf_counter()
            name = adapter_name(card.id)
            if name in self.loaded:
                self.loaded.move_to_end(name)
                ready[card.id] = self.loaded[name]
                self.timings["load_warm"] += time.perf_counter() - t0
                continue
            source = self._load(card, name, keep, notices, fetched)
            self.timings["load_cold"] += time.perf_counter() - t0
            if source is not None:
                ready[card.id] = source
        return ready

    def _load(self, card: AdapterCard, name: str, keep: set[str], notices: list[str],
              fetched: dict[str, AdapterSource | None]) -> AdapterSource | None:
        source, lora, stand_in_ok = self._real_file(card, notices, fetched)
        if source is None and self.preview and stand_in_ok:
            source, lora = self._stand_in(card, notices)
        if source is None or lora is None:
            return None
        self._make_room(keep)
        messages: list[str] = []
        try:
            with captured_load_messages(messages):
                unmatched = self._inject(lora, source, name)
        except AdapterFileError as exc:  # the file's own problem, said in full
            notices.append(f"{card.name} ({card.id}): {exc}; skipped")
            self._forget(name)
            return None
        except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            notices.append(f"{card.name} ({card.id}): {source.path.name} could not be loaded "
                           f"({type(exc).__name__}: {str(exc)[:200]}); skipped")
            self._forget(name)
            return None
        if unmatched:
            notices.append(f"{card.name} ({card.id}): {source.path.name}: {len(unmatched)} of its modules "
                           f"match no layer of this model ({', '.join(unmatched[:3])}); loaded the rest")
        for message in _relevant(messages):
            notices.append(f"{card.name} ({card.id}): loader reported: {message}")
        if not source.short_hash and not source.stand_in:  # once per load; a stand-in has no hash to cite
            source.short_hash = autov3_of_file(source.path)
        self.loaded[name] = source
        return source

    def _inject(self, lora: LoraFile, source: AdapterSource, name: str) -> list[str]:
        """Load ``lora`` as the adapter ``name``; return its module names that matched no layer.

        LoHa, LoKr and kohya DoRA go through peft (``lycoris.py``), LoRA and LoCon through
        diffusers' ``load_lora_weights`` (kohya conversion, conv layers included). Either way the
        result is peft tuner layers, which ``apply.active_adapters`` drives alike."""
        if lora.format == "lycoris":
            state = lora.state_dict if lora.state_dict is not None else load_safetensors(str(source.path))
            return load_lycoris(self.pipe, state, lora.adapter_type, name, source.path.name).unmatched
        if lora.format == "kohya":
            require_a_match(self.pipe, lora.shapes, source.path.name)
        if lora.state_dict is not None:  # an allowed pickle, already read
            self.pipe.load_lora_weights(lora.state_dict, adapter_name=name)
        else:  # from the file, so safetensors metadata (peft alpha) is honoured
            self.pipe.load_lora_weights(str(source.path.parent), weight_name=source.path.name,
                                        adapter_name=name, local_files_only=True)
        return []

    def _real_file(self, card: AdapterCard, notices: list[str], fetched: dict[str, AdapterSource | None]):
        """``(source, lora, stand_in_ok)``: the card's own file, checked. With the preview model
        nothing is downloaded (real files cannot apply to it) and a missing file or a good SD-1.5
        file leaves the way to a stand-in; a bad file is skipped, never papered over."""
        width = self.pipe.unet.config.cross_attention_dim
        if self.preview and not _on_disk(self.settings, card):
            return None, None, True
        if card.id in fetched:
            source = fetched[card.id]
        else:
            source = fetch_card_file(self.settings, card, notices)
        if source is None:
            return None, None, True
        try:
            return source, read_lora_file(source.path, allow_pickle=self.settings.allow_pickle,
                                          cross_attention_dim=width), False
        except ModelMismatchError as exc:
            if self.preview and exc.width == SD15_WIDTH:
                return None, None, True
            notices.append(f"{card.name} ({card.id}): {exc}; skipped")
        except AdapterFileError as exc:
            notices.append(f"{card.name} ({card.id}): {exc}; skipped")
        return None, None, False

    def _stand_in(self, card: AdapterCard, notices: list[str]):
        path = ensure_standin(self.pipe, self.settings.cache_dir, card.id)
        lora = read_lora_file(path, allow_pickle=False,
                              cross_attention_dim=self.pipe.unet.config.cross_attention_dim)
        notices.append(f"{card.name} ({card.id}): stand-in LoRA generated for the preview model "
                       f"(the real adapter is used only with a real SD-1.5 model)")
        return AdapterSource(card.id, path, "stand-in"), lora

    def _make_room(self, keep: set[str]) -> None:
        while len(self.loaded) >= self.capacity:
            victim = next((n for n in self.loaded if n not in keep), None)
            if victim is None:
                return
            self.pipe.delete_adapters(victim)
            del self.loaded[victim]

    def _forget(self, name: str) -> None:
        """Remove a half-loaded adapter after a failure so it cannot be activated."""
        present = set(self.pipe.get_list_adapters().get("unet", [])) | set(
            self.pipe.get_list_adapters().get("text_encoder", []))
        if name in present:
            self.pipe.delete_adapters(name)
