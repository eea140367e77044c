"""The VLM refiner: asks any litellm model for a card's description, category, weight and
trigger words, from the card's facts, its author text (as untrusted data) and example images.

- validated at the boundary (:mod:`components.refiner.vlm_prompt`): a bad answer is retried,
  then the card is skipped with a notice naming it and the problem;
- cached on disk by card content hash (JSON lines, one fsync'd line per answer): a re-run, or a
  run after a kill, asks only for cards it has no answer for;
- bounded concurrency, exponential backoff on rate limits / 5xx / timeouts, a tqdm bar and a
  summary of cards, tokens, cost and time.

litellm is imported inside functions only: offline use never loads it.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from catalog.card import AdapterCard, Refined
from catalog.settings import Settings
from components.refiner.vlm_prompt import (PROMPT_VERSION, RETRY_PROMPT, AnswerError, VlmAnswer,
                                           build_messages, keep_known_triggers, parse_answer)
from components.types import StylusError

CACHE_NAME = "vlm-refiner.jsonl"


@dataclass
class RefineReport:
    """What a refine run did; ``failed`` holds (card id, reason) pairs."""
    refined: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    results: dict[str, Refined] = field(default_factory=dict)
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = 0.0  # None once any answer had no known price
    seconds: float = 0.0

    def summary(self) -> str:
        cost = "unknown" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        return (f"refined {self.refined}, cached {self.cached}, failed {len(self.failed)}; "
                f"{self.requests} requests, tokens in {self.tokens_in} / out {self.tokens_out}, "
                f"cost {cost}, {self.seconds:.1f} s")


@dataclass
class _Outcome:
    card: AdapterCard
    answer: VlmAnswer | None = None
    error: str = ""
    fatal: bool = False  # authentication / unknown model: every other card would fail the same way
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = 0.0
    notices: list[str] = field(default_factory=list)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


class AnswerCache:
    """Validated answers keyed by (model, prompt version, card content hash), on disk as JSON
    lines. Appends are flushed and fsync'd one by one, so a kill loses at most the answer in
    flight; a torn last line is ignored on read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    self._data[row["key"]] = row["answer"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill

    @staticmethod
    def key(model: str, card: AdapterCard) -> str:
        return hashlib.sha256(f"{model}|{PROMPT_VERSION}|{card.content_hash()}".encode()).hexdigest()[:32]

    def get(self, key: str) -> dict | None:
        return self._data.get(key)

    def put(self, key: str, card_id: str, answer: VlmAnswer) -> None:
        row = {"key": key, "card_id": card_id, "answer": answer.model_dump()}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                # a line torn by a kill has no newline: start on a fresh line, or this answer
                # would be glued to the torn one and lost with it
                lead = "\n" if fh.tell() and not _ends_with_newline(self.path) else ""
                fh.write(lead + json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._data[key] = row["answer"]


class VlmRefiner:
    def __init__(self, model: str, api_base: str = "", api_key: str = "", concurrency: int = 4,
                 timeout: float = 60.0, max_retries: int = 3, cache_dir: str | Path | None = None,
                 max_images: int = 3, max_prompts: int = 5, backoff_base: float = 1.0):
        if not model or not model.strip():
            raise StylusError("VLM refiner needs a litellm model string, e.g. 'openai/gpt-4o-mini' "
                              "(set --vlm MODEL or STYLUS_LLM_MODEL)")
        if concurrency < 1:
            raise StylusError(f"concurrency={concurrency} must be at least 1")
        if timeout <= 0:
            raise StylusError(f"timeout={timeout} must be a positive number of seconds")
        if max_retries < 0:
            raise StylusError(f"max_retries={max_retries} must be 0 or more")
        self.model = model.strip()
        self.api_base, self.api_key = api_base, api_key
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.max_images, self.max_prompts, self.backoff_base = max_images, max_prompts, backoff_base
        cache_dir = Path(cache_dir) if cache_dir else Settings.from_env().cache_dir / "refiner"
        self.cache = AnswerCache(cache_dir / CACHE_NAME)
        self._json_mode_cached: bool | None = None

    @classmethod
    def from_settings(cls, settings: Settings, model: str = "", **kwargs: Any) -> "VlmRefiner":
        """Model, endpoint, key and timeout from ``STYLUS_LLM_*``; ``model`` overrides the setting."""
        return cls(model or settings.llm_model, api_base=settings.llm_api_base,
                   api_key=settings.llm_api_key, timeout=settings.llm_timeout,
                   cache_dir=settings.cache_dir / "refiner", **kwargs)

    @property
    def name(self) -> str:
        return f"vlm:{self.model}"

    def needs_refine(self, card: AdapterCard) -> bool:
        """False when the card already carries this model's answer for its current content."""
        return not (card.refined.refiner == self.name and card.refined.source_hash == card.content_hash())

    # ---- the run -------------------------------------------------------------------
    def refine(self, cards: Iterable[AdapterCard], store: Any = None, progress: bool = True) -> RefineReport:
        """Refine ``cards``; results go to ``report.results`` and, given a CatalogStore, to the catalog."""
        from tqdm.auto import tqdm

        started = time.monotonic()
        report = RefineReport()
        todo: list[AdapterCard] = []
        for card in cards:
            cached = self.cache.get(self.cache.key(self.model, card))
            answer = _revalidate(cached)
            if answer is None:
                todo.append(card)
            else:
                self._store(card, answer, store, report)
                report.cached += 1
        bar = tqdm(total=len(todo), desc=f"refine {self.model}", unit="card", disable=not progress)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="vlm")
        futures = [pool.submit(self._ask, card) for card in todo]
        try:
            for future in as_completed(futures):
                self._collect(future.result(), store, report)
                bar.update(1)
        except BaseException:  # Ctrl-C or a fatal error: cached answers survive, the rest is dropped
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
        pool.shutdown()
        report.seconds = time.monotonic() - started
        return report

    def _collect(self, outcome: _Outcome, store: Any, report: RefineReport) -> None:
        report.requests += outcome.requests
        report.tokens_in += outcome.tokens_in
        report.tokens_out += outcome.tokens_out
        if report.cost_usd is not None:
            report.cost_usd = None if outcome.cost_usd is None else report.cost_usd + outcome.cost_usd
        report.notices += outcome.notices
        if outcome.fatal:
            raise StylusError(f"VLM refiner stopped at card {outcome.card.id}: {outcome.error}")
        if outcome.answer is None:
            report.failed.append((outcome.card.id, outcome.error))
            report.notices.append(f"skipped {outcome.card.id}: {outcome.error}")
            return
        self.cache.put(self.cache.key(self.model, outcome.card), outcome.card.id, outcome.answer)
        self._store(outcome.card, outcome.answer, store, report)
        report.refined += 1

    def _store(self, card: AdapterCard, answer: VlmAnswer, store: Any, report: RefineReport) -> None:
        refined = Refined(
            description=answer.description, category=answer.category,
            keywords=list(card.refined.keywords),  # the offline refiner's prompt keywords stay for retrieval
            trigger_words=keep_known_triggers(card, answer.trigger_words),
            recommended_weight=answer.recommended_weight, weight_source="vlm",
            refiner=self.name, source_hash=card.content_hash())
        report.results[card.id] = refined
        if store is not None and card.refined != refined:
            store.set_refined(card.id, refined)

    # ---- one card ------------------------------------------------------------------
    def _ask(self, card: AdapterCard) -> _Outcome:
        """Ask until a valid answer or ``max_retries`` retries; one card's trouble never raises."""
        import litellm
        import openai  # litellm's exceptions all derive from openai.OpenAIError

        litellm.suppress_debug_info = True
        built = build_messages(card, max_prompts=self.max_prompts, max_images=self.max_images)
        messages = list(built.messages)
        out = _Outcome(card, notices=list(built.notices))
        for attempt in range(self.max_retries + 1):
            out.requests += 1
            try:
                response = litellm.completion(**self._request_args(messages))
            except (litellm.AuthenticationError, litellm.NotFoundError, litellm.PermissionDeniedError) as exc:
                out.error, out.fatal = f"{type(exc).__name__} from {self.model}: {_short(exc)}", True
                return out  # the same for every card: the run stops
            except (litellm.RateLimitError, litellm.InternalServerError, litellm.ServiceUnavailableError,
                    litellm.BadGatewayError, litellm.APIConnectionError, litellm.Timeout) as exc:
                out.error = f"{type(exc).__name__} after {attempt + 1} attempt(s): {_short(exc)}"
                if attempt < self.max_retries:
                    time.sleep(self._backoff(attempt))
                continue
            except openai.OpenAIError as exc:  # bad request, context window, content policy, ...
                out.error = f"{type(exc).__name__} from {self.model}: {_short(exc)}"
                return out
            self._account(response, out)
            content = response.choices[0].message.content if response.choices else None
            try:
                out.answer = parse_answer(content)
                out.error = ""
                return out
            except AnswerError as exc:
                out.error = f"invalid answer after {attempt + 1} attempt(s): {exc}"
                messages = built.messages + [{"role": "assistant", "content": content or ""},
                                             {"role": "user", "content": RETRY_PROMPT.format(problem=exc)}]
        return out

    def _request_args(self, messages: list[dict]) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.model, "messages": messages, "timeout": self.timeout, "temperature": 0,
            "max_retries": 0,  # retries and backoff are ours, counted in the report
            "drop_params": True,  # providers without temperature/response_format still answer
        }
        if self._json_mode():
            args["response_format"] = {"type": "json_object"}
        if self.api_base:
            args["api_base"] = self.api_base
        if self.api_key:
            args["api_key"] = self.api_key
        return args

    def _json_mode(self) -> bool:
        """JSON mode where the provider has it; the prompt and the validation hold either way."""
        if self._json_mode_cached is None:
            import litellm
            params = litellm.get_supported_openai_params(model=self.model) or []
            self._json_mode_cached = "response_format" in params
        return self._json_mode_cached

    def _backoff(self, attempt: int) -> float:
        return min(30.0, self.backoff_base * (2 ** attempt)) * (0.5 + random.random() / 2)

    @staticmethod
    def _account(response: Any, out: _Outcome) -> None:
        import litellm
        usage = getattr(response, "usage", None)
        out.tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
        out.tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
        if out.cost_usd is None:
            return
        try:
            out.cost_usd += float(litellm.completion_cost(completion_response=response))
        except Exception:  # noqa: BLE001 - litellm raises several types for unpriced models
            out.cost_usd = None  # reported as "unknown"


def _revalidate(cached: dict | None) -> VlmAnswer | None:
    if cached is None:
        return None
    try:
        return VlmAnswer.model_validate(cached)
    except ValueError:
        return None  # cache written by an older schema: ask again


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")
