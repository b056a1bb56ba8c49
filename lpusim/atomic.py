"""Crash-safe file output: write to a temporary file in the same directory, then rename.

A kill or crash at any moment leaves either the old file or the complete new one, never a
truncated file. The temporary file is hidden, `.NAME.PID.XXXXXXXX.tmp`, next to NAME (a NAME
too long for that keeps its first bytes and a hash of the rest, so any name the file system
accepts can be written); a SIGKILL (or power loss) between its creation and the rename can
leave it behind. Such a leftover is never mistaken for output (readers look for NAME only),
and the next write of NAME removes the leftovers of processes that are no longer running.

A command that writes several files wraps its work in `all_or_none(outputs)`: writes under
those paths then only make their temporary files, renamed into place together when the work
succeeds, and deleted (with the directories the command created) when it fails, so a failed
run leaves either all its outputs or none. `check_output` is the one check of an output path
made before any work.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

NAME_MAX_DEFAULT = 255
# what the temporary name adds to NAME: '.' NAME '.' PID (up to 7 digits) '.' 8 random '.tmp'
_TEMP_EXTRA = 1 + 1 + 7 + 1 + 8 + 4


@dataclass
class _Group:
    roots: tuple[Path, ...]
    pending: list[tuple[Path, Path]] = field(default_factory=list)   # (temporary, final)
    made_dirs: list[Path] = field(default_factory=list)

    def covers(self, p: Path) -> bool:
        a = p.absolute()
        return any(a == r or r in a.parents for r in self.roots)


_GROUP: ContextVar[_Group | None] = ContextVar("lpusim_atomic_group", default=None)


def name_max(directory: str | os.PathLike[str]) -> int:
    """The longest file name (in bytes) the file system holding `directory` accepts."""
    d = Path(directory)
    while not d.exists() and d != d.parent:
        d = d.parent
    try:
        return int(os.pathconf(d, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX_DEFAULT


def _temp_prefix(p: Path) -> str:
    """`.NAME.`, or for a long NAME its first bytes and a hash, so the temporary name fits."""
    raw = os.fsencode(p.name)
    room = name_max(p.parent) - _TEMP_EXTRA
    if len(raw) <= room:
        return f".{p.name}."
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[: max(0, room - len(digest) - 1)].decode("utf-8", "ignore")
    return f".{head}~{digest}."


def _mkdirs(d: Path, group: _Group | None) -> None:
    missing = []
    cur = d.absolute()
    while not cur.exists() and cur != cur.parent:
        missing.append(cur)
        cur = cur.parent
    d.mkdir(parents=True, exist_ok=True)
    if group is not None:
        group.made_dirs.extend(missing)          # deepest first


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *,
                 gz: bool | None = None) -> None:
    """Write `data` to `path` atomically; gzip it when `gz` (default: path ends in .gz)."""
    p = Path(path)
    if gz is None:
        gz = p.name.endswith(".gz")
    raw = data.encode() if isinstance(data, str) else data
    if gz:
        raw = gzip.compress(raw, mtime=0)
    group = _GROUP.get()
    if group is not None and not group.covers(p):
        group = None
    _mkdirs(p.parent, group)
    remove_stale_temporaries(p)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(p)}{os.getpid()}.", suffix=".tmp",
                               dir=p.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if group is not None:
            group.pending.append((Path(tmp), p))
        else:
            os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_output(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file written by `write_atomic`, also while its group is pending."""
    p = Path(path)
    group = _GROUP.get()
    if group is not None:
        for tmp, final in reversed(group.pending):
            if final == p:
                return tmp.read_bytes()
    return p.read_bytes()


@contextlib.contextmanager
def all_or_none(outputs: Sequence[str | os.PathLike[str]]) -> Iterator[None]:
    """Defer the renames of every write under `outputs` (files or directories) to the end of
    the block: all of them happen when it succeeds, none when it raises."""
    group = _Group(tuple(Path(o).absolute() for o in outputs))
    token = _GROUP.set(group)
    try:
        yield
    except BaseException:
        _GROUP.reset(token)
        _rollback(group, group.pending)
        raise
    _GROUP.reset(token)
    done = 0
    try:
        for _tmp, final in group.pending:   # what would make a rename fail, before any
            if final.is_dir() and not final.is_symlink():
                raise IsADirectoryError(21, "Is a directory (an output file's place)",
                                        str(final))
        for tmp, final in group.pending:
            os.replace(tmp, final)
            done += 1
    except BaseException:
        # the renames already made stay (each is a complete file); the rest are dropped
        _rollback(group, group.pending[done:], keep_dirs=done > 0)
        raise


def _rollback(group: _Group, pending: list[tuple[Path, Path]], keep_dirs: bool = False
              ) -> None:
    for tmp, _final in pending:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    if not keep_dirs:
        for d in group.made_dirs:
            with contextlib.suppress(OSError):
                d.rmdir()                       # only if still empty


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer of `path` left behind (the writer's process
    is gone); a live writer's file is left alone. Returns what was removed."""
    p = Path(path)
    prefix = _temp_prefix(p)
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


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"))


def check_output(path: str | os.PathLike[str], *, directory: bool) -> str | None:
    """Why `path` cannot be written as an output file (or, `directory`, an output directory),
    or None. Looks only: never opens, creates or changes anything, so it never blocks on a
    FIFO and never modifies a file it then refuses."""
    p = Path(path)
    text = str(path)
    if not text.strip():
        return "is empty"
    limit = name_max(p.absolute().parent)
    for part in p.parts:
        n = len(os.fsencode(part))
        if n > limit:
            return f"has a name of {n} bytes; the file system allows {limit}"
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        return f"cannot be used: {e.strerror}"
    if st is not None:
        kind = next((what for test, what in _KINDS if test(st.st_mode)), None)
        if kind:
            return f"is {kind}, not a {'directory' if directory else 'regular file'}"
        if directory and not stat.S_ISDIR(st.st_mode):
            return "exists and is not a directory"
        if not directory and stat.S_ISDIR(st.st_mode):
            return "is a directory, not a file"
        if directory and not os.access(p, os.W_OK | os.X_OK):
            return "cannot be written: no permission"
        if not directory:
            parent = p.absolute().parent
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot be replaced: no permission to write in {parent}"
        return None
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: no permission to write in {parent}"
    return None
