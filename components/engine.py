"""The Stylus engine: one object the front ends talk to (select -> compose -> generate).

Heavy parts (catalog, index, embedder, pipelines) are built lazily on first use and kept
process-wide; every method takes and returns the typed values of :mod:`components.types`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

from catalog.card import MAX_WEIGHT, MIN_WEIGHT
from catalog.settings import Settings
from catalog.card import AdapterCard
from catalog.service import CatalogService
from catalog.store import CatalogStore
from ground.choices import CHARACTER_POLICIES, COMPOSERS, DEFAULT_MASK_STRATEGY, MaskStrategy
from ground.errors import StylusError

from .limits import ADAPTERS_PER_TOPIC, MAPPING_ROWS, PROMPT, TOP_K, check_request, check_selection
from .types import (Composition, GenerationRequest, GenerationResult, RetrievalResult, SelectRequest, Selection,
                    Topic, TopicAdapter, Variant, split_keywords)

if TYPE_CHECKING:  # results of the index and refiner section, imported where they are made
    from .index.card_index import RankedCard
    from .refiner.offline import RefineReport as OfflineRefineReport
    from .refiner.vlm import RefineReport as VlmRefineReport


WARM_UP_PROMPT = "a castle on a hill at dusk, watercolor"  # one select at start-up loads what selects use


@dataclass
class StartupStatus:
    """What the start-up warm-up (:meth:`StylusEngine.warm_up`) is doing, for a status line.

    ``phase``: idle (no warm-up started) | catalog | indexing | model | ready | failed."""
    phase: str = "idle"
    done: int = 0  # cards indexed so far (phase "indexing")
    total: int = 0  # cards to index
    error: str = ""

    @property
    def busy(self) -> bool:
        return self.phase in ("catalog", "indexing", "model")

    def line(self) -> str:
        """One line for a user; empty when there is nothing to say (idle or ready)."""
        if self.phase == "catalog":
            return "Starting: opening the adapter catalog..."
        if self.phase == "indexing":
            percent = 100 * self.done // self.total if self.total else 0
            return (f"Starting: indexing the catalog: {percent}% ({self.done:,} of {self.total:,} adapters). "
                    f"A selection made now waits until the index is complete.")
        if self.phase == "model":
            return "Starting: loading the embedding model; a selection made now waits a few seconds."
        if self.phase == "failed":
            return f"The catalog index could not be prepared at start-up ({self.error}); Select tries again."
        return ""


class StylusEngine:
    def __init__(self, settings: Settings | None = None, seed_catalog: bool = True):
        """``seed_catalog``: a new, empty catalog gets the starter cards on first use (the app);
        False leaves it empty (``catalog refine`` before the user's own import)."""
        self.settings = settings or Settings.from_env()
        self._seed_catalog = seed_catalog
        self._lock = threading.RLock()  # guards _part_locks
        self._part_locks: dict[str, threading.Lock] = {}  # one per lazily built part (see _once)
        self.startup = StartupStatus()
        self._index_observer: Callable[[int, int], None] | None = None  # see warm_up
        self._index_lock = threading.RLock()  # a retrieval never sees an index half refreshed
        self._catalog_version: int | None = None  # SQLite data_version the index follows
        from ground.redact import environment_secrets, install_log_redaction, register_secrets
        register_secrets([*self.settings.secrets(), *environment_secrets()])
        install_log_redaction()  # tokens never reach a log line, even inside a traceback

    # ---- lazily built parts ---------------------------------------------------------
    @cached_property
    def store(self) -> CatalogStore:
        from catalog.starter import open_catalog
        return self._once("store", lambda: open_catalog(self.settings, seed=self._seed_catalog))

    @cached_property
    def retriever(self):
        from .index_lock import index_lock
        from .retriever import Retriever

        def build():
            version = self.store.data_version()  # read first: a commit during the build shows up later
            with index_lock(self.settings.catalog_dir):  # other processes may share the index files
                retriever = Retriever(self.settings, self.store, on_progress=self._index_progress)
            self._catalog_version = version
            if self.startup.phase == "failed":  # a select built it after the warm-up failed
                self.startup.phase = "ready"
            return retriever
        return self._once("retriever", build)

    @cached_property
    def generator(self):
        if self.settings.workers:  # a Ray Serve worker pool (issue 17): the same generate() call
            from .workers.pool import WorkerPool
            return self._once("generator", lambda: WorkerPool(self.settings))
        from .generator import Generator
        return self._once("generator", lambda: Generator(self.settings))

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        """Build a part once even when two requests (web app threads) ask for it together; a
        request for another part does not wait for it (the index builds while a pipeline loads)."""
        with self._lock:
            lock = self._part_locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self.__dict__:
                self.__dict__[name] = build()  # published only when complete: never half built
            return self.__dict__[name]

    # ---- start-up --------------------------------------------------------------------
    def start_warm_up(self, on_progress: Callable[[int, int], None] | None = None) -> threading.Thread:
        """Run :meth:`warm_up` in a background thread (the web app starts it after launch)."""
        self.startup.phase = "catalog"  # at once: a page that loads now shows the status line
        thread = threading.Thread(target=self.warm_up, args=(on_progress,), name="stylus-warm-up", daemon=True)
        thread.start()
        return thread

    def warm_up(self, on_progress: Callable[[int, int], None] | None = None) -> None:
        """Prepare what the first select needs: open (seed) the catalog, bring its index up to date
        (the starter's shipped vectors make this a few seconds), load the embedding model and the
        word lists through one select. ``self.startup`` says how far it is; ``on_progress(done,
        total)`` is called as cards are indexed. A select made meanwhile waits for the index
        (``_once``) and never sees it half built. A failure is logged and shown in the status;
        the next select tries again and reports its own error."""
        import logging
        from ground.redact import redact

        log = logging.getLogger("stylus.engine")
        started = time.perf_counter()
        self._index_observer = on_progress
        try:
            self.startup.phase = "catalog"
            self.store
            self.startup.phase = "indexing"
            retriever = self.retriever
            self.startup.phase = "model"
            self.select(WARM_UP_PROMPT, composer="offline")  # never an LLM call at start-up
        except Exception as exc:  # noqa: BLE001 - a background thread: report, never crash the app
            self.startup.error = redact(str(exc) if isinstance(exc, StylusError) else f"{type(exc).__name__}: {exc}")
            self.startup.phase = "failed"
            log.warning("start-up warm-up failed: %s", self.startup.error)
            return
        finally:
            self._index_observer = None
        self.startup.phase = "ready"
        report = retriever.last_report
        log.info("ready for selects in %.1f s (%s)", time.perf_counter() - started,
                 report.summary() if report else "index up to date")
        for notice in report.notices if report else []:
            log.warning("%s", notice)

    def _index_progress(self, done: int, total: int) -> None:
        self.startup.done, self.startup.total = done, total
        observer = self._index_observer
        if observer is not None:
            observer(done, total)

    # ---- the method ---------------------------------------------------------------
    def select(self, request: SelectRequest | str, **options: Any) -> Selection:
        """The "Select adapters" step: check the request once, retrieve, compose.

        ``engine.select("a castle", top_k=50)`` is short for ``engine.select(SelectRequest("a castle",
        top_k=50))``. The selection carries the request as checked (defaults filled in)."""
        if isinstance(request, str):
            request = SelectRequest(request, **options)
        elif options:
            raise TypeError("pass options either in the SelectRequest or as keywords with a prompt, not both")
        request = self.checked_select(request)
        retrieval = self.retrieve(request.prompt, top_k=request.top_k, characters=request.characters)
        composition = self.compose(request.prompt, retrieval, composer=request.composer,
                                   llm_model=request.llm_model, adapters_per_topic=request.adapters_per_topic,
                                   temperature=request.temperature, characters=request.characters)
        return Selection(request=request, retrieval=retrieval, composition=composition)

    def checked_select(self, request: SelectRequest) -> SelectRequest:
        """``request`` with its limits and choices checked (each message names the value) and every
        absent option replaced by its setting."""
        top_k, per_topic = check_selection(request.prompt, request.top_k, request.adapters_per_topic)
        s = self.settings
        composer = _choice("composer", request.composer, COMPOSERS) or s.composer
        characters = _choice("characters", request.characters, CHARACTER_POLICIES) or s.characters
        return replace(request, top_k=s.top_k if top_k is None else top_k, composer=composer,
                       llm_model=request.llm_model or s.llm_model, characters=characters,
                       adapters_per_topic=s.adapters_per_topic if per_topic is None else per_topic)

    def retrieve(self, prompt: str, top_k: int | None = None, characters: str | None = None) -> RetrievalResult:
        """The first step of :meth:`select` alone (the CLI's evaluation files use it line by line).
        ``characters``: named | all | none for this call (default: the setting)."""
        top_k = TOP_K.check_or("top_k", top_k, self.settings.top_k)  # before the index is built
        retriever = self.retriever
        filters = None
        if characters is not None:
            filters = replace(retriever.filters, characters=characters)
        with self._index_lock:
            behind = self._follow_catalog()
            result = retriever.retrieve(prompt, top_k=top_k, filters=filters)
        result.notices.extend(behind)
        return result

    def _follow_catalog(self) -> list[str]:
        """Another process (sharing the catalog) committed since the index was updated: update it
        (incremental) before ranking. If the vector store is down, rank with the index as it is."""
        if self.store.data_version() == self._catalog_version:
            return []
        from .retriever import VECTOR_STORE_DOWN
        try:
            self._refresh_index()
        except VECTOR_STORE_DOWN as exc:
            self._catalog_version = None  # try again on the next query
            return [f"the catalog changed in another process but the index could not follow yet "
                    f"({type(exc).__name__}); results may miss the latest edits"]
        return []

    def compose(self, prompt: str, retrieval: RetrievalResult, *, composer: str | None = None,
                llm_model: str | None = None, adapters_per_topic: int | None = None,
                temperature: float = 0.0, characters: str | None = None) -> Composition:
        """The second step of :meth:`select` alone, on candidates already retrieved."""
        from .composer import ComposeOptions, compose
        options = ComposeOptions(
            composer=composer or self.settings.composer,
            llm_model=llm_model or self.settings.llm_model,
            api_base=self.settings.llm_api_base, api_key=self.settings.llm_api_key,
            timeout=self.settings.llm_timeout, total_timeout=self.settings.llm_total_timeout_s,
            # named as the caller passed it (ComposeOptions calls it top_k)
            top_k=ADAPTERS_PER_TOPIC.check_or("adapters_per_topic", adapters_per_topic,
                                              self.settings.adapters_per_topic),
            temperature=temperature, characters=characters or self.settings.characters)
        from ground.redact import redact
        comp = compose(prompt, retrieval.candidates, options)
        comp.notices = [redact(n) for n in comp.notices]  # a provider error may echo the key
        return comp

    def variants(self, composition: Composition, n: int, strategy: MaskStrategy = DEFAULT_MASK_STRATEGY,
                 seed: int = 0, debias: str = "") -> list[Variant]:
        """``n`` masked variants; ``n``, ``seed`` and ``debias`` are checked (components.limits)
        before any mask is drawn."""
        from .masks import sample_variants
        return sample_variants(composition, n=n, strategy=strategy, seed=seed,
                               base_weight=self.settings.base_weight, debias=debias)

    def generation_defaults(self) -> GenerationRequest:
        """The request a front end starts from (widget values, absent API arguments): the preview
        model draws small and few steps (noise either way: keep it quick), a real model 512 px."""
        if not self.settings.model:
            return GenerationRequest(prompt="", steps=12, width=128, height=128)
        return GenerationRequest(prompt="", steps=25, width=512, height=512)

    def generation_request(self, prompt: str, composition: Composition | None = None,
                           **given: Any) -> GenerationRequest:
        """The one way a front end builds a :class:`GenerationRequest`: ``given`` fields (``None``:
        absent) over :meth:`generation_defaults`, the texts and numbers checked against
        components.limits at once, before a select or any other work (an image is checked where it
        is decoded)."""
        values = {k: v for k, v in given.items() if v is not None}
        return check_request(replace(self.generation_defaults(), prompt=prompt, composition=composition, **values))

    def generate(self, request: GenerationRequest,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Draw the request's variants and generate them. The composition is checked against the
        catalog once (one read of its cards), and the cards travel with the variants to the
        generator (here or on a worker) and back on the result (``result.cards``).

        ``cancel``: an event another thread sets to stop the request (at the next denoising step);
        the request also stops when it runs past ``generation_timeout_s``."""
        timings: dict[str, float] = {}
        comp = request.composition
        cards: dict[str, AdapterCard] = {}
        variants = None
        if comp is not None:
            cards = self.validate_composition(comp)
            t0 = time.perf_counter()
            variants = self.variants(comp, request.num_images, request.mask_strategy, request.seed,
                                     request.debias)
            timings["masks"] = time.perf_counter() - t0
        result = self.generator.generate(request, variants=variants, cards=cards, progress=progress, cancel=cancel)
        result.timings = {**timings, **result.timings}
        result.cards = cards
        return result

    # ---- editing a composition ------------------------------------------------------
    def validate_composition(self, comp: Composition,
                             cards: dict[str, AdapterCard] | None = None) -> dict[str, AdapterCard]:
        """Every adapter must exist, be loadable and have a weight in [-2, 2]; each at most once.
        Returns the composition's cards (read from the catalog unless ``cards`` holds them)."""
        seen: set[str] = set()
        found = self.store.get_many(comp.adapter_ids()) if cards is None else cards
        for topic in comp.topics:
            for a in topic.adapters:
                if a.card_id not in found:
                    raise StylusError(f"adapter {a.card_id!r} (keyword {', '.join(topic.keywords)!r}) "
                                      f"is not in the catalog; search the catalog for a valid id")
                if a.card_id in seen:
                    raise StylusError(f"adapter {a.card_id!r} appears twice; each adapter may be used once")
                seen.add(a.card_id)
                if not MIN_WEIGHT <= a.weight <= MAX_WEIGHT:
                    raise StylusError(f"weight {a.weight} of adapter {a.card_id!r} is outside "
                                      f"[{MIN_WEIGHT}, {MAX_WEIGHT}]")
                if found[a.card_id].blocked:
                    raise StylusError(f"adapter {a.card_id!r} is blocked in the catalog")
        return {card_id: found[card_id] for card_id in comp.adapter_ids()}  # in the composition's order

    def composition_from_rows(self, prompt: str, rows: list[dict[str, Any]]) -> Composition:
        """Build a composition from an edited keyword/adapter/weight table; a row's optional
        ``applied_weight`` (number, empty or null) fixes the weight applied when it is on. A row's
        ``keyword`` may join several topic keywords with ``KEYWORD_JOIN`` (" + ")."""
        PROMPT.check("prompt", prompt)
        MAPPING_ROWS.check("mapping", rows)
        topics: dict[str, Topic] = {}
        cards = self.store.get_many([str(r.get("id") or "").strip() for r in rows if r.get("id")])
        for i, row in enumerate(rows, 1):
            keyword = str(row.get("keyword") or "").strip()
            card_id = str(row.get("id") or "").strip()
            if not card_id:
                continue
            if card_id not in cards:
                raise StylusError(f"row {i}: adapter id {card_id!r} is not in the catalog")
            weight = _row_weight(i, "weight", row.get("weight", ""))
            applied = row.get("applied_weight")  # optional: empty or null = the weight rule
            applied = None if applied is None or not str(applied).strip() else _row_weight(
                i, "applied weight", applied, "; leave it empty to apply the recommended weight by the rule")
            card = cards[card_id]
            topic = topics.setdefault(keyword, Topic(keywords=split_keywords(keyword)))
            topic.adapters.append(TopicAdapter(card_id=card_id, name=card.name, weight=weight,
                                               reason="edited by user", civitai_model_id=card.civitai_model_id,
                                               lora_name=card.lora_name, applied_weight=applied))
        comp = Composition(prompt=prompt, topics=list(topics.values()), composer="user-edited")
        self.validate_composition(comp, cards)
        return comp

    # ---- the catalog (curation tab) ------------------------------------------------
    @cached_property
    def catalog(self) -> CatalogService:
        """Search, curation, import and identify (catalog/service.py); each write refreshes the index."""
        return self._once("catalog", lambda: CatalogService(self.store, self.settings, on_change=self._refresh_index))

    def reindex(self) -> str:
        """Bring the retrieval index up to date with the catalog; returns a summary line."""
        return self._refresh_index(force=True) or "index is up to date"

    def _refresh_index(self, force: bool = False) -> str:
        if "retriever" not in self.__dict__ and not force:
            return ""  # built lazily: it indexes the current catalog when first used
        from .index_lock import index_lock
        retriever = self.retriever
        with self._index_lock, index_lock(self.settings.catalog_dir):
            self._catalog_version = self.store.data_version()
            refresh = getattr(retriever, "refresh", None)
            result = refresh() if callable(refresh) else None
        return str(result) if result is not None else ""

    # ---- index and refiner (the CLI's catalog index / refine, retrieve --queries) ----
    def index_changes(self) -> str:
        """Opens the retrieval index (brought up to date, as for any retrieval) and returns the
        summary of that update when it added, updated or removed cards; "" when nothing changed."""
        report = self.retriever.last_report
        if report is None or not (report.added or report.updated or report.removed):
            return ""
        return report.summary()

    def rank(self, queries: list[str], top_k: int | None = None,
             characters: str | None = None) -> list[list[RankedCard]]:
        """Ranking only (evaluation files): for each query, in order, its best ``top_k`` cards as id,
        Civitai model id and fused score; no card is read from the catalog and no evidence is
        gathered. A blank query ranks nothing. ``characters``: named | all | none (default: the setting)."""
        from .index.card_index import RankedCard
        top_k = TOP_K.check_or("top_k", top_k, self.settings.top_k)  # before the index is built
        characters = _choice("characters", characters, CHARACTER_POLICIES)
        retriever = self.retriever
        filters = replace(retriever.filters, characters=characters) if characters else None
        rankings: list[list[RankedCard]] = []
        with self._index_lock:
            behind = self._follow_catalog()  # once: every query of a file ranks against one index
            ids, facts = retriever.ids, retriever.index.facts
            for query in queries:
                ranked = retriever.rank(query, top_k, filters) if query.strip() else []
                rankings.append([RankedCard(ids[i], facts[ids[i]].civitai_model_id, score)
                                 for i, score, _ in ranked])
        if behind:  # a ranking has no notices: the log says the index could not follow the catalog
            import logging
            logging.getLogger("stylus.engine").warning("%s", "; ".join(behind))
        return rankings

    def build_index(self, rebuild: bool = False, refine: bool = True, progress: bool = False) -> list[str]:
        """Refine offline the cards that need it (unless ``refine`` is False), then bring the
        retrieval index up to date, re-embedding only the cards that changed; ``rebuild`` drops the
        index (also one built with another embedding model) and embeds every card again. Returns the
        lines to show: the refiner's summary when it refined a card, then the index's summary."""
        from .encoder import make_embedder
        from .index.card_index import CardIndex
        from .index_lock import index_lock
        from .refiner.offline import refine_store

        lines = []
        if refine:
            report = refine_store(self.store, progress=progress)
            if report.refined:
                lines.append(report.summary())
        built = self.__dict__.get("retriever")  # a retriever in use keeps its index and follows it
        with self._index_lock, index_lock(self.settings.catalog_dir):
            if built is not None:  # one update (or rebuild) of its index, then its arrays follow
                self._catalog_version = self.store.data_version()
                built.refresh(rebuild=rebuild, progress=progress)
                result = built.last_report
            else:
                index = CardIndex(self.settings, make_embedder(self.settings), allow_other_model=rebuild)
                result = (index.rebuild if rebuild else index.update)(self.store, progress=progress)
        lines.append(result.summary())
        return lines

    def refine(self, vlm: str | None = None, limit: int | None = None, concurrency: int = 4,
               max_retries: int = 3, api_base: str | None = None, api_key: str | None = None,
               progress: bool = False) -> OfflineRefineReport | VlmRefineReport:
        """Write each card's refined description, category and weight. Offline (deterministic, no
        network) when ``vlm`` is None; otherwise through the litellm model ``vlm`` ("" for the
        ``llm_model`` setting), ``concurrency`` requests at a time and ``max_retries`` per card,
        answers cached by card content; ``api_base`` / ``api_key`` replace the settings' for this
        run. ``limit``: at most that many of the cards that need it, most downloaded first (the
        model is asked about active cards only)."""
        if limit is not None and limit < 1:
            raise StylusError(f"limit {limit} is not allowed; use at least 1 card")
        if vlm is None:
            from .refiner.offline import refine_store
            report: OfflineRefineReport | VlmRefineReport = refine_store(self.store, limit=limit, progress=progress)
        else:
            from ground.redact import register_secrets
            from .refiner.vlm import VlmRefiner
            register_secrets([api_key] if api_key else [])  # never shown, even in a provider's error
            overrides = {k: v for k, v in (("llm_api_base", api_base), ("llm_api_key", api_key)) if v is not None}
            refiner = VlmRefiner.from_settings(self.settings.replace(**overrides), model=vlm,
                                               concurrency=concurrency, max_retries=max_retries)
            cards = [c for c in self.catalog.search(status="active", limit=None) if refiner.needs_refine(c)]
            report = refiner.refine(cards[:limit], store=self.store, progress=progress)
        if report.refined:
            self._refresh_index()  # a retriever in use follows the new descriptions
        return report

    def status(self) -> dict[str, Any]:
        return {"settings": self.settings.public_dict(), "catalog": str(self.settings.catalog_dir),
                "preview_model": not self.settings.model}


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    """``value`` if it is one of ``allowed``; None when absent (empty); else a message naming it."""
    if not value:
        return None
    if value not in allowed:
        raise StylusError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _row_weight(row: int, name: str, value: Any, hint: str = "") -> float:
    """A weight cell of an edited mapping (a number, or text from the UI's table), checked against
    the catalog's weight range; the message names the row and the column."""
    try:
        weight = float(str(value).strip())
    except ValueError:
        raise StylusError(f"row {row}: {name} {value!r} is not a number in "
                          f"[{MIN_WEIGHT}, {MAX_WEIGHT}]{hint}") from None
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:  # also false for nan
        raise StylusError(f"row {row}: {name} {value!r} is outside [{MIN_WEIGHT}, {MAX_WEIGHT}]{hint}")
    return weight


