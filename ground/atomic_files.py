"""Files appear complete or not at all: write to a unique temporary name, then rename.

A crash (even ``kill -9``) in the middle of a write leaves at most a ``*.tmp-*`` file next to
the target, never a half-written file under the real name. The temporary name is unique per
writer, so two threads or two processes writing the same target do not mix their bytes; the
last rename wins with a whole file.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"


def temp_name(target: Path) -> Path:
    """``<stem>.tmp-<random><suffix>`` beside ``target`` (the suffix kept for libraries that
    choose the format from it, e.g. PIL and numpy)."""
    target = Path(target)
    return target.with_name(f"{target.stem}{TMP_MARK}{uuid.uuid4().hex[:12]}{target.suffix}")


def is_temp(path: Path) -> bool:
    return TMP_MARK in Path(path).name


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(target: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)


def write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
