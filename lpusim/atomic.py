"""Crash-safe file output: write to a temporary file in the same directory, then rename.

A kill or crash at any moment leaves either the old file or the complete new one, never a
truncated file. The temporary file is hidden, `.NAME.PID.XXXXXXXX.tmp`, next to NAME; a
SIGKILL (or power loss) between its creation and the rename can leave it behind. Such a
leftover is never mistaken for output (readers look for NAME only), and the next write of
NAME removes the leftovers of processes that are no longer running.
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
    remove_stale_temporaries(p)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp", dir=p.parent)
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


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer of `path` left behind (the writer's process
    is gone); a live writer's file is left alone. Returns what was removed."""
    p = Path(path)
    prefix = f".{p.name}."
    removed: list[Path] = []
    try:
        names = os.listdir(p.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(p.parent / name)
                removed.append(p.parent / name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True     # someone else's process, or not a pid: leave the file alone
    return True
