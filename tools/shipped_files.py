"""How the build tools write a shipped artefact: gzip, byte-reproducible, replaced atomically."""
from __future__ import annotations

import gzip
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ground.atomic_files import atomic_path


@contextmanager
def reproducible_gzip(target: str | Path, header_name: str = "") -> Iterator[gzip.GzipFile]:
    """A gzip stream that replaces ``target`` once it is closed without an error (a failed build
    leaves the old file). No timestamp in the gzip header, and as file name ``header_name`` (the
    temporary name never reaches it), so the same content gives the same bytes; readable by all,
    whatever the umask."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename=header_name, fileobj=raw, mode="wb",
                                                   compresslevel=9, mtime=0) as gz:
            yield gz
        os.chmod(tmp, 0o644)
