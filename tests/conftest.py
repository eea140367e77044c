"""Shared fixtures. Environment first: offline, quiet, one thread (see ../shared/ENVIRONMENT.md)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: a user's clone does not have it."""
    if not (SHARED_DATA / "civitai-loras-2023-07.jsonl.gz").exists():
        pytest.skip(f"real data not present at {SHARED_DATA} (only the project's CI and developers have it)")
    return SHARED_DATA


@pytest.fixture
def settings(tmp_path):
    """Settings with every directory under tmp_path."""
    from catalog.settings import Settings
    return Settings(home=tmp_path / "stylus")


@pytest.fixture
def store(tmp_path):
    from catalog.store import CatalogStore
    s = CatalogStore(tmp_path / "catalog")
    yield s
    s.close()
