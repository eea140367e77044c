"""The catalog as both front ends use it: search, curation, import and identify.

:class:`CatalogService` wraps a :class:`~catalog.store.CatalogStore` and writes each policy
once: which server folders may be imported (:func:`catalog.importers.folder.allowed_roots`),
which token and pickle rule apply when a caller gives none (the settings'), and the message
for a missing card id. After every write it calls ``on_change`` (the engine passes its index
refresh), never after a read. The web app reaches it as ``engine.catalog``; the CLI opens one
with :meth:`CatalogService.open` (the catalog sits below components: no engine needed).
Searching is :mod:`catalog.search` (a typed :class:`~catalog.search.CardQuery`); no SQL here.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from catalog.card import AdapterCard
from catalog.search import CardQuery, search_cards
from catalog.settings import Settings
from catalog.store import CatalogError, CatalogStore, ImportReport

if TYPE_CHECKING:
    from catalog.importers.identify import IdentifyReport


class CatalogService:
    """Search, curation and imports over one store; ``on_change()`` runs after each write."""

    def __init__(self, store: CatalogStore, settings: Settings, on_change: Callable[[], object] | None = None):
        self.store = store
        self.settings = settings
        self._on_change = on_change

    @classmethod
    def open(cls, settings: Settings, seed: bool = True) -> "CatalogService":
        """The catalog of ``settings`` for a command of its own (close it, or use ``with``). A new,
        empty catalog is seeded with the starter cards unless ``seed`` is False (imports: the user
        picks the source)."""
        from catalog.starter import open_catalog
        return cls(open_catalog(settings, seed=seed), settings)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "CatalogService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts by base model, adapter type, source, flags and content screen (``CatalogStore.stats``)."""
        return self.store.stats()

    def card(self, card_id: str) -> AdapterCard:
        """The card ``card_id`` (surrounding spaces ignored); an empty or unknown id is a CatalogError."""
        return self.store.get(_checked_id(card_id))

    def search(self, query: CardQuery | None = None, **fields: Any) -> list[AdapterCard]:
        """The cards ``query`` asks for, or a :class:`CardQuery` made of ``fields`` (text, base_model,
        category, flags, status, limit), most downloaded first."""
        if query is not None and fields:
            raise CatalogError(f"give a CardQuery or its fields ({', '.join(fields)}), not both")
        return search_cards(self.store, query if query is not None else CardQuery(**fields))

    # ---- curation --------------------------------------------------------------------
    def edit(self, card_id: str, editor: str = "web", **changes: Any) -> AdapterCard:
        """Curator edits (fields of ``catalog.card.Curation``), recorded with ``editor``."""
        return self._changed(self.store.edit(_checked_id(card_id), editor=editor, **changes))

    def set_blocked(self, card_id: str, blocked: bool, editor: str = "web") -> AdapterCard:
        """Block (never retrieved) or unblock a card."""
        return self.edit(card_id, editor=editor, blocked=blocked)

    # ---- imports ---------------------------------------------------------------------
    def import_civitai_file(self, path: str | Path, progress: bool = False) -> ImportReport:
        """A Civitai API dump (JSON array or JSONL, optionally .gz); a bad item is skipped and reported."""
        from catalog.importers.civitai import import_civitai_file
        return self._changed(import_civitai_file(self.store, path, progress=progress))

    def import_folder(self, folder: str | Path, allow_pickle: bool = False, progress: bool = False) -> ImportReport:
        """A server folder of adapter files: only inside the allowed roots (:meth:`_roots`).
        ``allow_pickle`` lets this run record .ckpt/.pt/.bin files; the settings may allow them always."""
        from catalog.importers.folder import import_folder
        return self._changed(import_folder(self.store, folder, allow_pickle=self._pickle(allow_pickle),
                                           roots=self._roots(), progress=progress))

    def identify_folder(self, folder: str | Path, *, base_url: str | None = None, token: str | None = None,
                        offline: bool = False, refresh: bool = False, workers: int = 4,
                        allow_pickle: bool = False, progress: bool = False) -> IdentifyReport:
        """A server folder's files identified by SHA256 on Civitai (``base_url``: Civitai itself when
        None; ``token``: the settings' when none given); the same roots as :meth:`import_folder`."""
        from catalog.importers.identify import identify_folder
        roots = self._roots()  # checked before any file is hashed or any request sent
        return self._changed(identify_folder(
            self.store, folder, **_host(base_url), token=token or self.settings.civitai_token,
            allow_pickle=self._pickle(allow_pickle), roots=roots, offline=offline, refresh=refresh,
            workers=workers, progress=progress))

    def import_civitai_api(self, token: str | None = None, query: str | None = None, limit: int | None = None,
                           *, base_url: str | None = None, base_models: Iterable[str] | None = None,
                           restart: bool = False, progress: bool = False) -> ImportReport:
        """LoRA models live from the Civitai API (``limit`` models at most; None: all). ``token``:
        the settings' when none given; ``base_models``: the settings' ``base_model_filter``."""
        from catalog.importers.civitai_api import import_civitai_api
        return self._changed(import_civitai_api(
            self.store, **_host(base_url), token=token or self.settings.civitai_token,
            base_models=tuple(base_models or (self.settings.base_model_filter,)), query=query or None,
            limit=limit, restart=restart, progress=progress))

    def import_hf(self, repo_or_dir: str | Path, progress: bool = False) -> ImportReport:
        """A Hugging Face model repository (hub id, with the settings' token) or a local directory."""
        from catalog.importers.hf import import_hf
        return self._changed(import_hf(self.store, repo_or_dir, token=self.settings.hf_token, progress=progress))

    # ---- the policies, once ------------------------------------------------------------
    def _roots(self) -> list[str] | None:
        """The folders a server may import from: ``folder_import_roots``; with none set, anywhere on
        a private server and nowhere on a public one (a CatalogError saying so)."""
        from catalog.importers.folder import allowed_roots
        return allowed_roots(self.settings)

    def _pickle(self, allow_pickle: bool) -> bool:
        """Pickled adapter files (.ckpt/.pt/.bin can run code): when the caller or the settings allow them."""
        return bool(allow_pickle) or self.settings.allow_pickle

    def _changed(self, result: Any) -> Any:
        """``result`` of a write, after ``on_change`` has run."""
        if self._on_change is not None:
            self._on_change()
        return result


def _checked_id(card_id: str | None) -> str:
    """``card_id`` without surrounding spaces; none at all is a CatalogError saying what to do."""
    card_id = (card_id or "").strip()
    if not card_id:
        raise CatalogError("no adapter id given; pick a card from the list or type its id")
    return card_id


def _host(base_url: str | None) -> dict[str, str]:
    """The importer's ``base_url`` argument: only when given, else the importer's own (Civitai)."""
    return {"base_url": base_url} if base_url else {}
