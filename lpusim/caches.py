"""Every in-process cache of lpusim, in one place: each bounded, listed by `info()`, and all
emptied by one `clear()`; and the directory of the optional on-disk step cache.

What is cached and why (each entry is keyed by the full value of its inputs; specs are frozen
dataclasses, so equal inputs give equal keys and a cached answer is the answer):

- ``step``: simulated decode steps (`lpusim.step`); a sweep whose points differ only in
  speculation settings compiles each distinct step once. Callers get a copy of the cached
  StepMetrics (fresh dicts), so mutating a result never changes a later one.
- ``link_graph``: the link graph of a system's first n chips and its route cache
  (`lpusim.compiler.topology`), shared by the compiles of one hardware point (read-only);
  ``link_shapes``: its links without their latencies, shared by the graphs of every hop
  latency (a latency what-if re-weighs the links instead of wiring them again).
- ``placement_graph``: decode graphs built to size a deployment (`lpusim.deploy`).
- ``decode_graph``: the graphs `lpusim.step` compiles and the deployment sizes (read-only).
  What the compiler derives from a graph or a link graph (placements, stage parts, hand-off
  plans, group signatures) is not a cache of its own: it lives in the object's `derived`
  mapping (`derived` below) and goes with it, so a what-if on links or clocks re-places
  nothing and no cache holds a graph alive.
- ``gpu_kernels``: a GPU step's graph, kernels and collectives (`lpusim.gpu.step`),
  independent of the GPU's rates.
- ``template_schedules``, ``template_runs``: the verified schedule of a fast-fidelity template
  by its lowered tasks (`lpusim.compiler`), and the simulation of those very items
  (`lpusim.sim.metrics`): a what-if on context, or another batch or width, leaves many blocks'
  tasks unchanged, and those templates are neither scheduled nor simulated again. Each is
  bounded by the items it holds (5 x 10^4: a few hundred 70B templates, a few dozen of 405B).
  ``program_item_bytes``: the marshalled bytes of a schedule's items, by the identity of
  their tuple (`lpusim.program`): a reused template's items are not hashed anew. Bounded by
  the items it holds (5 x 10^4).
  ``template_lowerings``: a stage's lowered tasks by all the lowering reads but the link
  bandwidth and hop latencies (`lpusim.compiler._lowered`): a what-if on those re-times the
  transfers instead of lowering again. Bounded by its tasks (5 x 10^4).
- ``least_chips``, ``headroom``: the fewest chips that hold a model, and the SRAM a split
  leaves (`lpusim.deploy`): every sweep point re-resolves its deployment, and most points of
  a hardware batch ask the same questions.
- ``nested_spec_types``: the spec class of each nested field (`lpusim.config.schema`).
- ``documents``: parsed YAML files by (path, mtime, size) (`lpusim.config.load`); callers get
  their own copy of a Document's data when they change it.
- ``file_kinds``, ``shipped_names``, ``packaged_data``: the `kind:` of each YAML file by (path,
  mtime, size), the short names of a search path by the modification times of its directories,
  and where the shipped data are (`lpusim.config.load`): a sweep resolves thousands of names.
- ``built_specs``: specs built from referenced files (a sweep point's model, system and chip),
  by the overrides that reach them, each with the state of every file read for it and of the
  lookup directories; a change to any of them rebuilds it (`lpusim.config.load`). Specs are
  frozen values. ``search_dirs``: the directories a short name is looked up in, by kind and
  data directories.
- ``cli_parser``: the command line's argparse parser per set of registered strategies
  (`lpusim.cli`): the hostile-input tests and a notebook run hundreds of commands in one
  process, and building it costs more than most commands' checks.
- ``code_fingerprint``: the SHA-256 of lpusim's source, part of every on-disk step key and of
  every sweep row's basis (`lpusim.sweep`), so a code change never reuses an old answer.

The on-disk cache is off unless a directory is set with `set_disk_dir` (the CLI sets it from
the environment variable LPUSIM_CACHE_DIR; the library itself reads no environment variable
for it). Its entries are JSON files named by a SHA-256 of every input and of the code
fingerprint, so a code change never reuses an old entry; see `lpusim.step`.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["BoundedCache", "clear", "code_fingerprint", "derived", "disk_dir", "info",
           "memoise", "set_disk_dir"]

F = TypeVar("F", bound=Callable[..., Any])
V = TypeVar("V")

# name -> (current size, bound, clear)
_REGISTRY: dict[str, tuple[Callable[[], int], int, Callable[[], None]]] = {}
_DISK: list[Path | None] = [None]


def _register(name: str, size: Callable[[], int], bound: int, clear_fn: Callable[[], None]
              ) -> None:
    if name in _REGISTRY:
        raise ValueError(f"cache {name!r} registered twice")
    _REGISTRY[name] = (size, bound, clear_fn)


def memoise(name: str, maxsize: int) -> Callable[[F], F]:
    """functools.lru_cache(maxsize), registered under `name` (a bound is required)."""
    if maxsize < 1:
        raise ValueError("a cache needs a bound of at least 1")

    def wrap(fn: F) -> F:
        cached = lru_cache(maxsize=maxsize)(fn)
        _register(name, lambda: cached.cache_info().currsize, maxsize, cached.cache_clear)
        return cached  # type: ignore[return-value]
    return wrap


class BoundedCache(Generic[V]):
    """A mapping cache that keeps the `maxsize` most recently used entries and, with `weigh`
    (an entry's size, say its items), at most `max_weight` of them in all (the most recent
    entry always stays). Each entry holds its value and weight together, so a look-up hashes
    its key once and a store twice (some keys are long tuples)."""

    def __init__(self, name: str, maxsize: int, *, weigh: Callable[[V], int] | None = None,
                 max_weight: int = 0):
        if maxsize < 1 or (weigh is not None and max_weight < 1):
            raise ValueError("a cache needs a bound of at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._weigh = weigh
        self._max_weight = max_weight
        self.weight = 0
        _register(name, lambda: len(self._data), maxsize, self._clear)

    def _clear(self) -> None:
        self._data.clear()
        self.weight = 0

    def get(self, key: Hashable) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        self._data.move_to_end(key)
        return hit[0]

    def put(self, key: Hashable, value: V) -> None:
        w = self._weigh(value) if self._weigh is not None else 0
        old = self._data.pop(key, None)
        if old is not None:
            self.weight -= old[1]
        self._data[key] = (value, w)        # a new key goes last: the most recent
        self.weight += w
        while len(self._data) > self.maxsize or (self.weight > self._max_weight
                                                 and len(self._data) > 1):
            _old, (_v, ow) = self._data.popitem(last=False)
            self.weight -= ow

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        """Whether `key` has an entry (a look that leaves the entries' order as it was)."""
        return key in self._data

    def values(self) -> list[V]:
        """The entries, least recently used first (a copy: the cache is not touched)."""
        return [v for v, _w in self._data.values()]


_MISSING = object()


def derived(obj: Any, key: Hashable, make: Callable[[], V]) -> V:
    """A value derived from `obj` (a decode graph, a link graph: objects not hashable by
    value), kept in the object's own `derived` mapping: it lives exactly as long as the object
    does, so no cache holds a graph alive, and is dropped with it when the cache that keeps
    the object (`lpusim.step.shared_graph`, the link graphs) lets it go. Treat it as
    read-only."""
    store: dict[Hashable, Any] = obj.derived
    hit = store.get(key, _MISSING)
    if hit is _MISSING:
        hit = store[key] = make()
    return hit


@memoise("code_fingerprint", maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of lpusim's source files (their paths and bytes)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def clear() -> None:
    """Empty every in-process cache (the on-disk cache is left alone)."""
    for _size, _bound, clear_fn in _REGISTRY.values():
        clear_fn()


def info() -> dict[str, tuple[int, int]]:
    """name -> (entries now, bound) of every registered cache."""
    return {name: (size(), bound) for name, (size, bound, _c) in sorted(_REGISTRY.items())}


def set_disk_dir(path: str | os.PathLike[str] | None) -> None:
    """Keep simulated steps on disk under `path` (None: no disk cache, the default)."""
    _DISK[0] = Path(path) if path else None


def disk_dir() -> Path | None:
    """The on-disk step cache directory, or None when it is off."""
    return _DISK[0]
