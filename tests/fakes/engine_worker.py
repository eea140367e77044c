"""One app process for the scale-out tests: a real StylusEngine driven over stdin/stdout.

    python -m tests.fakes.engine_worker        # settings from STYLUS_* (e.g. STYLUS_CHROMA_MODE=server)

Reads one JSON command per line and answers one JSON line each:
``{"op": "retrieve", "prompt": P, "top_k": K}`` -> ``{"ok": true, "ids": [...], "scores": [...]}``,
``{"op": "edit", "id": ID, "changes": {...}}``, ``{"op": "reindex"}``, ``{"op": "quit"}``.
A failing command answers ``{"ok": false, "error": "..."}`` and the worker goes on.
``EngineWorker`` starts one and talks to it from a test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _handle(engine, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "retrieve":
        result = engine.retrieve(cmd["prompt"], top_k=int(cmd.get("top_k", 10)))
        return {"ok": True, "ids": [c.id for c in result.candidates], "scores": [c.score for c in result.candidates],
                "descriptions": [c.card.effective_description() for c in result.candidates]}
    if op == "edit":
        card = engine.catalog.edit(cmd["id"], editor=f"worker-{os.getpid()}", **cmd.get("changes", {}))
        return {"ok": True, "id": card.id, "blocked": card.curation.blocked}
    if op == "reindex":
        return {"ok": True, "summary": engine.reindex()}
    raise ValueError(f"unknown op {op!r}; use retrieve, edit, reindex or quit")


def main() -> int:
    from catalog.settings import Settings, quiet_environment
    quiet_environment()
    import torch
    torch.set_num_threads(1)
    from components.engine import StylusEngine

    engine = StylusEngine(Settings.from_env())
    engine.retriever  # build / load the index before saying ready
    print(json.dumps({"ok": True, "ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            answer = _handle(engine, cmd)
        except Exception as exc:  # reported to the test, which decides; the worker goes on
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0


class EngineWorker:
    """A worker subprocess with the given STYLUS_* environment."""

    def __init__(self, env: dict[str, str], log: Path):
        full = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **env)
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.engine_worker"], cwd=REPO, env=full,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True)

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} exited ({self.proc.poll()}); stderr:\n"
                               f"{self.log.read_text(errors='replace')[-3000:]}")
        return json.loads(line)

    def ready(self) -> int:
        return self._read()["ready"]

    def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if not answer["ok"]:
            raise RuntimeError(f"worker {self.proc.pid}: {op} failed: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
