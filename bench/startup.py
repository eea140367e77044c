"""Start-up benchmark (issue 14): how long after ``python app.py`` can a user select adapters?

    python bench/startup.py                 # fresh STYLUS_HOME (first start: seeds the starter
                                            # catalog, builds its index), then a second start
    python bench/startup.py --runs 1        # the first start only
    python bench/startup.py --home DIR      # an existing STYLUS_HOME (kept)

Each run starts ``app.py`` as ``bash dev.sh app`` does (its environment, the preview model, no
test catalog), polls ``/`` until HTTP 200, then calls ``/select`` through ``gradio_client`` at
once, as a user pressing *Select* right after the page opens would. Prints per run: seconds to
HTTP 200, the first select's own latency, and seconds from process start to the first answer
(the goal: under 20 s). The app's own log lines (seeding, indexing) are printed last.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a castle on a hill at dusk, studio ghibli style"
START_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(home: Path, port: int) -> dict[str, str]:
    """The environment ``bash dev.sh app`` gives the app, on ``home`` and ``port``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STYLUS_", "GRADIO_"))}
    env.update({"STYLUS_HOME": str(home), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"app did not answer within {START_TIMEOUT:.0f} s")


def one_run(home: Path, label: str) -> dict[str, float]:
    from gradio_client import Client

    port = free_port()
    log = home / f"startup-{port}.log"
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=str(REPO),
                                env=app_env(home, port), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(url, proc, log)
        http = time.perf_counter() - start
        client = Client(url, verbose=False)
        asked = time.perf_counter()
        result = client.predict(prompt=PROMPT, api_name="/select")
        answered = time.perf_counter()
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    figures = {"http_200_s": http, "first_select_s": answered - asked, "start_to_answer_s": answered - start,
               "candidates": len(result.get("candidates", []))}
    print(f"{label}: HTTP 200 after {http:.1f} s; first /select took {answered - asked:.1f} s "
          f"({figures['candidates']} candidates); answered {answered - start:.1f} s after start")
    # the app's own lines: "stylus: ..." prints and "... INFO stylus.engine: ..." log records
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if ln.startswith("stylus") or " stylus." in ln]
    for line in lines:
        print(f"    app: {line}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="starts on the same home (default 2: first, second)")
    parser.add_argument("--home", type=Path, default=None, help="an existing STYLUS_HOME (default: a fresh one)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="stylus-startup-"))
    try:
        for run in range(args.runs):
            one_run(home, "first start (fresh STYLUS_HOME)" if run == 0 and args.home is None
                    else f"start {run + 1}")
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
