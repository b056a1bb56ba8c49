"""Crash-safe file output: write to a temporary file in the same directory, then rename.

A kill or crash at any moment leaves either the old file or the complete new one, never a
truncated file.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *,
                 gz: bool | None = None) -> None:
    """Write `data` to `path` atomically; gzip it when `gz` (default: path ends in .gz)."""
    p = Path(path)
    if gz is None:
        gz = p.name.endswith(".gz")
    raw = data.encode() if isinstance(data, str) else data
    if gz:
        raw = gzip.compress(raw, mtime=0)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
