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


# ---- browser tests (pytest-playwright with Debian's Chromium; see ../shared/ENVIRONMENT.md) ----
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments plus the system Chromium (Playwright's download is unavailable)."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    args = [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS]
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": args}


# ---- generation on the tiny preview model (built once per session into a temporary cache) ----
@pytest.fixture(scope="session")
def gen_settings(tmp_path_factory):
    from catalog.settings import Settings
    return Settings(home=tmp_path_factory.mktemp("gen"), device="cpu", scheduler="euler",
                    lora_cache_size=8)


@pytest.fixture(params=["fused", "unfused"])
def adapter_mode(request, tiny_generator):
    """Run a test with each way of applying adapters (Settings.adapter_mode)."""
    before = tiny_generator.settings.adapter_mode
    tiny_generator.settings.adapter_mode = request.param
    yield request.param
    tiny_generator.settings.adapter_mode = before


@pytest.fixture(scope="session")
def tiny_generator(gen_settings):
    """A Generator on the embedded preview model, pipelines loaded, one torch thread."""
    import torch
    torch.set_num_threads(1)
    from components.generator import Generator
    gen = Generator(gen_settings)
    gen.pipelines()
    return gen


# ---- retrieval (issue 3): one MiniLM per session, a deterministic fake embedder ----
@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2 embedder, loaded once per test session."""
    from components.encoder import SentenceTransformerEmbedder
    embedder = SentenceTransformerEmbedder("minilm")
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture
def hash_embedder():
    """A tiny deterministic embedder (bag of hashed words, 32-d) for index mechanics."""
    from tests.retrieval_helpers import HashEmbedder
    return HashEmbedder()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The web app on a free loopback port, preview model, a small test catalog; one per module."""
    import torch
    torch.set_num_threads(1)
    from tests.fakes.web_catalog import launched_app, write_catalog
    home = tmp_path_factory.mktemp("app") / "stylus"
    write_catalog(home / "catalog")
    with launched_app(home) as url:
        yield url
