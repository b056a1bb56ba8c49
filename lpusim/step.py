"""One decode step, end to end: graph -> compile -> simulate -> StepMetrics, memoised.

`step_metrics` builds the decode graph of a model at a width (positions x batch), compiles it
for a system at the requested fidelity and simulates it. Results are cached in memory by the
value of every input (specs are frozen dataclasses), so a sweep whose points differ only in
speculation settings compiles each distinct step once.

With the environment variable LPUSIM_CACHE_DIR set, steps are also kept on disk there, one
JSON file per step named by a SHA-256 of every input and of lpusim's own source code (any
code change starts a fresh cache); later processes (a re-run, another sweep over the same
hardware) load them instead of compiling. Unreadable entries are ignored and recomputed.

Python's cyclic garbage collector is paused while a step is built: a compile allocates 10^5 to
10^6 small objects that all stay alive, and each full collection would rescan all of them
(20-30% of a full-fidelity step); the little cyclic garbage left is collected afterwards.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

from lpusim.atomic import write_atomic
from lpusim.compiler import compile_pipeline, compile_program
from lpusim.config.specs import ModelSpec, PrecisionSpec, SystemSpec
from lpusim.errors import NoStageTemplate
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.sim import StepMetrics, metrics_full, metrics_pipeline

_DEFAULT_PRECISION = PrecisionSpec()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it is on) for the duration of the block."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@lru_cache(maxsize=256)
def step_metrics(model: ModelSpec, system: SystemSpec, *, chips: int, tp: int,
                 positions: int = 1, batch: int = 1, context: int = 8192,
                 precision: PrecisionSpec = _DEFAULT_PRECISION, with_heads: bool = False,
                 fidelity: str = "fast", context_window: int | None = None) -> StepMetrics:
    """Latency and metrics of one decode step of `model` on the first `chips` of `system`."""
    inputs: dict[str, Any] = dict(model=model, system=system, chips=chips, tp=tp,
                                  positions=positions, batch=batch, context=context,
                                  precision=precision, with_heads=with_heads, fidelity=fidelity,
                                  context_window=context_window)
    where = _disk_path(inputs)
    if where is not None:
        hit = _disk_load(where)
        if hit is not None:
            return hit
    with _gc_paused():
        m = _step(**inputs)
    if where is not None:
        _disk_store(where, m)
    return m


CACHE_ENV = "LPUSIM_CACHE_DIR"
_code_hash: list[str] = []


def _code_fingerprint() -> str:
    """SHA-256 of lpusim's source files (so that a code change never reuses old steps)."""
    if not _code_hash:
        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        _code_hash.append(h.hexdigest())
    return _code_hash[0]


def _disk_path(inputs: dict[str, Any]) -> Path | None:
    """Where the step with these inputs is cached on disk, or None when caching is off."""
    base = os.environ.get(CACHE_ENV)
    if not base:
        return None
    key = hashlib.sha256(f"{_code_fingerprint()}\0{sorted(inputs.items())!r}".encode())
    digest = key.hexdigest()
    return Path(base) / "steps" / digest[:2] / f"{digest}.json"


def _disk_load(path: Path) -> StepMetrics | None:
    try:
        return StepMetrics(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _disk_store(path: Path, m: StepMetrics) -> None:
    """Best effort, atomic (lpusim.atomic.write_atomic); never raises."""
    try:
        text = json.dumps(dataclasses.asdict(m))      # key order kept: outputs list it
        exact = StepMetrics(**json.loads(text)) == m
    except (TypeError, ValueError):
        return
    if not exact:                                     # not exactly representable in JSON
        return
    with suppress(OSError):
        write_atomic(path, text)


def _step(model: ModelSpec, system: SystemSpec, *, chips: int, tp: int, positions: int,
          batch: int, context: int, precision: PrecisionSpec, with_heads: bool,
          fidelity: str, context_window: int | None) -> StepMetrics:
    graph = build_decode_graph(model, GraphParams(
        positions=positions, batch=batch, context=context, precision=precision,
        with_heads=with_heads, context_window=context_window,
        window_attention=system.compiler.attention_span == "window"))
    if fidelity == "full":
        return metrics_full(compile_program(graph, system, chips=chips, tp=tp))
    try:
        return metrics_pipeline(compile_pipeline(graph, system, chips=chips, tp=tp))
    except NoStageTemplate:
        pass
    # stages whose chips are not interchangeable (a group spanning nodes) have no exact
    # template: simulate the whole program instead
    m = metrics_full(compile_program(graph, system, chips=chips, tp=tp))
    return dataclasses.replace(m, extra={**m.extra, "fast_fallback": "full"})
