"""The real app as a separate process (``python app.py``) on a temporary STYLUS_HOME.

For tests that must kill it (``kill -9``), read what it prints, or probe its HTTP routes
exactly as a browser would. The small test catalog of ``web_catalog`` is written first, so the
app does not seed the 7,000-card starter catalog.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fakes.web_catalog import free_port, write_catalog

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0


@dataclass
class AppProcess:
    home: Path
    proc: subprocess.Popen
    port: int
    log: Path  # stdout and stderr together

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


def app_env(home: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STYLUS_", "GRADIO_"))}
    env.update({"STYLUS_HOME": str(home), "STYLUS_TORCH_THREADS": "1", "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
                "GRADIO_TEMP_DIR": str(home / "gradio-tmp"), "HF_HUB_OFFLINE": "1",
                "OMP_NUM_THREADS": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra or {})
    return env


def start_app(home: Path, extra_env: dict[str, str] | None = None, catalog: bool = True) -> AppProcess:
    """Start ``python app.py`` and wait until it answers HTTP 200 (or fail with its output)."""
    home.mkdir(parents=True, exist_ok=True)
    if catalog and not (home / "catalog" / "catalog.sqlite3").exists():
        write_catalog(home / "catalog")
    port = free_port()
    log = home / f"app-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=str(REPO),
                                env=app_env(home, port, extra_env), stdout=out, stderr=subprocess.STDOUT)
    app = AppProcess(home, proc, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{app.output()[-3000:]}")
        try:
            if httpx.get(app.url, timeout=2).status_code == 200:
                return app
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    app.kill9()
    raise RuntimeError(f"app did not answer within {START_TIMEOUT:.0f} s:\n{app.output()[-3000:]}")
