"""A real ``chroma run`` server on 127.0.0.1 for tests (the chromadb package ships the command)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def start_chroma(path: Path, port: int, timeout: float = 30) -> subprocess.Popen:
    """Start the server and wait until it listens; skip when the command is missing."""
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        pytest.skip("the `chroma` command of the chromadb package is not installed")
    proc = subprocess.Popen([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"chroma run did not listen on port {port} within {timeout:.0f} s")


@contextmanager
def chroma_server(path: Path, port: int) -> Iterator[int]:
    """A running server for the ``with`` block; yields its port."""
    proc = start_chroma(path, port)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
