"""Forked workers: results computed ahead in child processes, for a caller whose next keys
are known before it asks for them: the gamma or window search of a speculative run
(`lpusim.speculative.search`), a serving study's prefill chunks and batches, calibration's
hypotheses, independent scenarios (`api.run_many`), and (one child, `fork`) 405B's group
signatures and validate-published's GPU rows and system checks.

What it models: nothing of the machine; it only spends idle CPUs. What it assumes: the
computation is a deterministic function of the state of the process it was forked from, with
a picklable result, so a result computed in a child is the one the parent would compute; a
child that fails for any reason returns nothing, and the caller computes that result itself,
so an error surfaces exactly as it would with no child. Children are forked (POSIX
`os.fork`, used on Linux only: elsewhere everything runs in the caller), write their result to
a pipe and leave with `os._exit`, running none of the parent's exit handlers; a result not
needed is killed and reaped.

At most `jobs()` processes compute at once, the caller included, however many users start
children (`busy_children` counts this process's running ones). The library's default is 1
(no child): a program that imports lpusim decides (`set_jobs`); the `lpusim` command sets it
from the environment variable LPUSIM_JOBS, by default the CPUs the process may run on, and a
sweep's workers run with 1 (the sweep spreads its points over the CPUs instead).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Ahead", "Forked", "busy_children", "can_fork", "fork", "free_cpus", "jobs",
           "set_jobs", "usable_cpus"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

# a computation shorter than this is not worth a child: forking, and copying the pages the
# child touches, cost a few milliseconds (5-8 ms from a 50 MB process, measured)
WORTH_A_CHILD_S = 0.010

_JOBS = 1


def set_jobs(n: int) -> int:
    """Compute with at most `n` processes at once (1: no child); returns the previous value."""
    global _JOBS
    if n < 1:
        raise ValueError(f"jobs must be at least 1, got {n}")
    was, _JOBS = _JOBS, n
    return was


def jobs() -> int:
    return _JOBS


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_children() -> int:
    """This process's forked children still computing (every `Forked` not yet finished):
    one user of children leaves the CPUs another's are using."""
    return sum(1 for f in list(_LIVE) if not f.done())


def free_cpus() -> int:
    """The children that may start now: `jobs()` less this process and its busy children."""
    return jobs() - 1 - busy_children() if jobs() > 1 and can_fork() else 0


def fork(fn: Callable[[], T]) -> Forked[T] | None:
    """`Forked(fn)` when a CPU is free for it (`free_cpus`) and a process can be had, else
    None: the caller then computes `fn` itself."""
    if free_cpus() < 1:
        return None
    try:
        return Forked(fn)
    except OSError:                 # no process to be had (a limit)
        return None


def can_fork() -> bool:
    """Whether children are forked here: Linux (a fork elsewhere may inherit a runtime that
    does not survive it, as on macOS)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _child_setup() -> None:
    """A child computes alone and says nothing: it forks no children of its own, and what it
    would print (a warning) goes nowhere, as the parent prints what the result needs."""
    global _JOBS
    _JOBS = 1
    _LIVE.clear()                   # the parent's other children are not this one's
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.close(quiet)
    sys.stdout = sys.stderr = open(os.devnull, "w")     # noqa: SIM115 - gone with the child


class Forked(Generic[T]):
    """`fn()` computing in a forked child process from the moment this is made."""

    def __init__(self, fn: Callable[[], T]):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:                                # the child
            try:
                os.close(read)
                _child_setup()
                data = memoryview(pickle.dumps((fn(),), protocol=pickle.HIGHEST_PROTOCOL))
                while data:
                    data = data[os.write(write, data):]
            except BaseException:           # noqa: BLE001 - nothing sent: the caller computes
                pass
            finally:
                os._exit(0)
        os.close(write)
        self._pid: int | None = pid
        self._read = read
        self._exited = False            # reaped already (its result waits in the pipe)
        _LIVE.add(self)

    def done(self) -> bool:
        """Whether the child has finished (without waiting; a result larger than the pipe
        holds keeps its child running until it is read)."""
        if self._pid is not None and not self._exited:
            self._exited = os.waitpid(self._pid, os.WNOHANG)[0] != 0
        return self._pid is None or self._exited

    def result(self) -> tuple[T] | None:
        """Wait for the child: its result (in a 1-tuple), or None if it failed or was
        cancelled."""
        if self._pid is None:
            return None
        chunks = []
        try:
            while chunk := os.read(self._read, 1 << 20):
                chunks.append(chunk)
        except BaseException:           # interrupted while waiting: the child goes too
            self.cancel()
            raise
        self._reap()
        try:
            got = pickle.loads(b"".join(chunks)) if chunks else None
        except Exception:                   # noqa: BLE001 - a torn result: the caller computes
            return None
        return got if isinstance(got, tuple) and len(got) == 1 else None

    def cancel(self) -> None:
        """Stop the child if it still runs, and reap it."""
        if self._pid is not None:
            if not self._exited:            # a reaped child's number may be another's now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        os.close(self._read)
        assert self._pid is not None
        if not self._exited:
            os.waitpid(self._pid, 0)
        self._pid = None
        _LIVE.discard(self)


# the children forked here and not yet reaped (`busy_children`)
_LIVE: set[Forked[Any]] = set()


class Ahead(Generic[K, T]):
    """`compute(key)` for the keys a caller asks for, the likely next ones computed ahead in
    children (`each`: all of given keys, in order). `ahead(keys)` takes the keys the caller
    may still ask for, the one it asks for next first: it stops the children of keys no
    longer among them, and starts children for the next keys while a CPU is free
    (`free_cpus`: every user's children count; one more when the caller is about to wait for
    a child's key instead of computing). `get(key)` takes a child's result, or computes it
    here, and hands a child's result to `keep` (the caller keeps it as if it had computed it:
    a step cached). No child is started for a key `known` says the caller has,
    and a key it did not have, computed here in less than `WORTH_A_CHILD_S` (a tiny model),
    stops the children and starts no more, unless `alike=False` says the keys' costs differ
    too much for one to tell of the next (whole scenarios, say). Use it as a context manager:
    children whose results were never asked for are stopped at the end."""

    def __init__(self, compute: Callable[[K], T], known: Callable[[K], bool] | None = None,
                 keep: Callable[[K, T], None] | None = None, alike: bool = True):
        self._alike = alike
        self._compute = compute
        self._known = known
        self._keep = keep
        self._pending: dict[K, Forked[T]] = {}
        self._forking = True            # False once children are not worth it, or not had

    def ahead(self, keys: Iterable[K]) -> None:
        if not self._forking:
            return
        order = list(keys)
        wanted = set(order)
        for k in [k for k in self._pending if k not in wanted]:
            self._pending.pop(k).cancel()
        free = free_cpus()
        if order and order[0] in self._pending and not self._pending[order[0]].done():
            free += 1                   # the caller waits for that child: its CPU is idle
        for k in order[1:]:
            if free <= 0:
                break
            if k not in self._pending and not (self._known and self._known(k)):
                try:
                    self._pending[k] = Forked(functools.partial(self._compute, k))
                except OSError:         # no process to be had (a limit): compute here
                    self._forking = False
                    return
                free -= 1

    def get(self, key: K) -> T:
        child = self._pending.pop(key, None)
        got = child.result() if child is not None else None
        if got is not None:
            if self._keep is not None:
                self._keep(key, got[0])     # as if computed here: later searches reuse it
            return got[0]
        had = self._known is not None and self._known(key)
        t0 = time.perf_counter()
        value = self._compute(key)
        if self._alike and not had and time.perf_counter() - t0 < WORTH_A_CHILD_S:
            self.close()                # the keys come quicker than children: none more
            self._forking = False
        return value

    def each(self, keys: Sequence[K]) -> Iterator[T]:
        """`get` of every key in order, each after `ahead` of it and the keys after it (the
        caller asks for all of them: the later ones are computed in children meanwhile)."""
        for i, key in enumerate(keys):
            self.ahead(keys[i:])
            yield self.get(key)

    def close(self) -> None:
        for child in self._pending.values():
            child.cancel()
        self._pending.clear()

    def __enter__(self) -> Ahead[K, T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

