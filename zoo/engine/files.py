"""Writing files so that nothing is ever half-written: a temporary file in the same folder, renamed into place
when the write succeeded, removed when it failed. (`wts/` keeps its own copy: it is a standalone numpy package.)"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same extension, for writers that look at it); rename on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, *chunks: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "xb") as f:  # 'x': the usual permissions (umask), unlike mkstemp
        for chunk in chunks:
            f.write(chunk)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
