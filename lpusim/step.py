"""One decode step, end to end, memoised. The whole path, in run order (`_step`):

1. graph: `decode_graph` builds the model's decode DAG at a width (positions x batch), with
   attention sized as the system's schedule is compiled (`lpusim.graph`);
2. compile (`lpusim.compiler`): place (blocks to pipeline stages of tp chips, SRAM checked) ->
   route (the link graph and the hand-off routes) -> lower (ops to timed-to-be instructions and
   transfers, collectives built from transfers) -> schedule (the list scheduler fixes every
   issue cycle) -> verify (no stall, no oversubscribed link). The full fidelity compiles every
   stage; the fast one each distinct stage (or block of a stage inside one node) once, passing
   each stage's per-chip output lags to the next (a typed `NoStageTemplate` sends a step whose
   stages have no exact template to the full program). With `set_pass_checks(True)` (the CLI:
   LPUSIM_CHECK_PASSES=1) invariants are checked between the passes (`compiler/checks.py`);
3. simulate and measure (`lpusim.sim`): simpy re-executes the schedule and the critical path,
   utilisation and SRAM give the `StepMetrics`.

GPU systems take the other backend of this layer (`lpusim.gpu`), over the same graph.

Results are cached in memory by the value of every input (specs are frozen dataclasses; the
cache is ``step`` in lpusim.caches), so a sweep whose points differ only in speculation
settings compiles each distinct step once. A step compiled for its KV window does not depend
on a context the window holds (`GraphParams.canonical`): such contexts share one entry.
Every call returns its own copy (fresh dicts): a caller that edits a result changes nothing
that a later call returns.

With a disk directory set (`lpusim.caches.set_disk_dir`; the CLI sets it from the environment
variable LPUSIM_CACHE_DIR), steps are also kept on disk there, one JSON file per step named by
a SHA-256 of every input and of lpusim's own source code (any code change starts a fresh
cache); later processes (a re-run, another sweep over the same hardware) load them instead of
compiling. Unreadable or corrupt entries are ignored and recomputed.

A step is compiled and simulated with the cyclic garbage collector paused, and leaves it as
it found it (`lpusim.collector`): a compile's 10^5-10^6 live objects would otherwise be
rescanned again and again.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from lpusim import caches, collector
from lpusim.atomic import write_atomic
from lpusim.compiler import compile_pipeline, compile_program, placement
from lpusim.config.specs import GpuSystemSpec, ModelSpec, PrecisionSpec, SystemSpec
from lpusim.errors import NoStageTemplate
from lpusim.gpu import gpu_step_metrics
from lpusim.graph import DecodeGraph, GraphParams, build_decode_graph
from lpusim.parallel import Ahead
from lpusim.sim import StepMemory, StepMetrics, metrics_full, metrics_pipeline, step_memory_of

_DEFAULT_PRECISION = PrecisionSpec()
K = TypeVar("K")


def step_metrics(model: ModelSpec, system: SystemSpec | GpuSystemSpec, *, chips: int, tp: int,
                 positions: int = 1, batch: int = 1, context: int = 8192,
                 precision: PrecisionSpec = _DEFAULT_PRECISION, with_heads: bool = False,
                 fidelity: str = "fast", context_window: int | None = None,
                 expert_parallel: bool = False) -> StepMetrics:
    """Latency and metrics of one decode step of `model` on the first `chips` of `system`
    (the caller's own copy of the cached answer)."""
    key = _key(model, system, chips, tp, positions, batch, context, precision, with_heads,
               fidelity, context_window, expert_parallel)
    m = _STEPS.get(key)
    if m is None:
        m = _stored_or_computed(*key)
        _STEPS.put(key, m)
    return _copy(m)


def step_known(model: ModelSpec, system: SystemSpec | GpuSystemSpec, *, chips: int, tp: int,
               positions: int = 1, batch: int = 1, context: int = 8192,
               precision: PrecisionSpec = _DEFAULT_PRECISION, with_heads: bool = False,
               fidelity: str = "fast", context_window: int | None = None,
               expert_parallel: bool = False) -> bool:
    """Whether `step_metrics` of these inputs is in this process's cache already (answered
    without compiling: a caller deciding where to compute it)."""
    return _key(model, system, chips, tp, positions, batch, context, precision, with_heads,
                fidelity, context_window, expert_parallel) in _STEPS


def steps_ahead(inputs_of: Callable[[K], dict[str, Any]]) -> Ahead[K, StepMetrics]:
    """The steps of a caller's keys, the step of key k being `step_metrics(**inputs_of(k))`:
    those `ahead` names next are computed in forked children meanwhile
    (`lpusim.parallel.Ahead`; none for a step this process has), and a child's step is kept
    here as if computed here (`step_keep`)."""
    return Ahead(lambda k: step_metrics(**inputs_of(k)), lambda k: step_known(**inputs_of(k)),
                 lambda k, m: step_keep(m, **inputs_of(k)))


def step_keep(metrics: StepMetrics, model: ModelSpec, system: SystemSpec | GpuSystemSpec, *,
              chips: int, tp: int, positions: int = 1, batch: int = 1, context: int = 8192,
              precision: PrecisionSpec = _DEFAULT_PRECISION, with_heads: bool = False,
              fidelity: str = "fast", context_window: int | None = None,
              expert_parallel: bool = False) -> None:
    """Keep `metrics`, the step of these inputs computed by another process (a forked child
    of this one, `lpusim.parallel`), as if computed here: `step_metrics` of these inputs
    then answers from it (a copy: the caller's object stays its own)."""
    _STEPS.put(_key(model, system, chips, tp, positions, batch, context, precision, with_heads,
                    fidelity, context_window, expert_parallel), _copy(metrics))


def _key(model: ModelSpec, system: SystemSpec | GpuSystemSpec, chips: int, tp: int,
         positions: int, batch: int, context: int, precision: PrecisionSpec, with_heads: bool,
         fidelity: str, context_window: int | None, expert_parallel: bool) -> tuple[Any, ...]:
    """The step cache's key of a step's inputs (`_stored_or_computed`'s arguments), with the
    context as the step depends on it: 0 for every context a step compiled for its window
    does not depend on (`GraphParams.canonical`), so their steps are one entry."""
    if not isinstance(system, GpuSystemSpec):
        context = GraphParams.canonical_context(context, positions, context_window,
                                                system.compiler.attention_span == "window")
    return (model, system, chips, tp, positions, batch, context, precision, with_heads,
            fidelity, context_window, expert_parallel)


def step_memory(model: ModelSpec, system: SystemSpec | GpuSystemSpec, *, chips: int, tp: int,
                positions: int = 1, batch: int = 1, context: int = 8192,
                precision: PrecisionSpec = _DEFAULT_PRECISION, with_heads: bool = False,
                context_window: int | None = None,
                expert_parallel: bool = False) -> StepMemory:
    """What the step `step_metrics` compiles from these inputs holds in SRAM, from its
    placement alone: a compiled program's SRAM is its placement's, so the numbers are the
    same, without lowering, scheduling or simulating (a serving study sizes its KV pool from
    as many steps as it times). Raises CapacityError as the compile would. A GPU system's,
    from its step."""
    if isinstance(system, GpuSystemSpec):
        m = step_metrics(model, system, chips=chips, tp=tp, positions=positions, batch=batch,
                         context=context, precision=precision, with_heads=with_heads,
                         context_window=context_window, expert_parallel=expert_parallel)
        return StepMemory(m.sram_bytes_per_chip_max, m.sram_bytes_by_category,
                          m.sram_capacity_bytes, m.kv_slots)
    graph = shared_graph(model, _params(system, positions, batch, context, precision,
                                         with_heads, context_window, expert_parallel))
    pl = placement(graph, system.chip, chips, tp)      # the placement the compile uses
    return step_memory_of(pl.chip_sram(), pl.capacity_bytes)


def _copy(m: StepMetrics) -> StepMetrics:
    """A StepMetrics whose dicts are the caller's own (the cached one stays as it was)."""
    return dataclasses.replace(m, breakdown_cycles=dict(m.breakdown_cycles),
                               unit_busy_cycles=dict(m.unit_busy_cycles),
                               sram_bytes_by_category=dict(m.sram_bytes_by_category),
                               extra=copy.deepcopy(m.extra))


# every input of a step -> its StepMetrics (callers get copies)
_STEPS: caches.BoundedCache[StepMetrics] = caches.BoundedCache("step", maxsize=256)


def _stored_or_computed(model: ModelSpec, system: SystemSpec | GpuSystemSpec, chips: int, tp: int,
                 positions: int, batch: int, context: int, precision: PrecisionSpec,
                 with_heads: bool, fidelity: str, context_window: int | None,
                 expert_parallel: bool = False) -> StepMetrics:
    if isinstance(system, GpuSystemSpec):          # the GPU backend (lpusim.gpu)
        return gpu_step_metrics(model, system, chips=chips, tp=tp, positions=positions,
                                batch=batch, context=context, precision=precision,
                                with_heads=with_heads, context_window=context_window,
                                expert_parallel=expert_parallel)
    inputs: dict[str, Any] = dict(model=model, system=system, chips=chips, tp=tp,
                                  positions=positions, batch=batch, context=context,
                                  precision=precision, with_heads=with_heads, fidelity=fidelity,
                                  context_window=context_window)
    if expert_parallel:         # absent otherwise, so earlier disk-cache keys stay valid
        inputs["expert_parallel"] = True
    where = _disk_path(inputs)
    if where is not None:
        hit = _disk_load(where)
        if hit is not None:
            return hit
    with collector.paused():
        m = _step(**inputs)
    if where is not None:
        _disk_store(where, m)
    return m


def _disk_path(inputs: dict[str, Any]) -> Path | None:
    """Where the step with these inputs is cached on disk, or None when caching is off."""
    base = caches.disk_dir()
    if base is None:
        return None
    key = hashlib.sha256(f"{caches.code_fingerprint()}\0{sorted(inputs.items())!r}".encode())
    digest = key.hexdigest()
    return Path(base) / "steps" / digest[:2] / f"{digest}.json"


def _disk_load(path: Path) -> StepMetrics | None:
    """The entry at `path`, or None when it is missing, unreadable, or not a StepMetrics
    (a torn or corrupt file, another program's JSON): such an entry is recomputed."""
    try:
        m = StepMetrics(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return m if _well_formed(m) else None


_FIELD_TYPES = {"int": int, "str": str, "dict[str, int]": dict, "dict[str, Any]": dict}


def _well_formed(m: StepMetrics) -> bool:
    """Every field of `m` has the type its annotation names (JSON has no other check)."""
    for f in dataclasses.fields(m):
        want = _FIELD_TYPES.get(str(f.type))
        v = getattr(m, f.name)
        if want is None or not isinstance(v, want) or (want is int and isinstance(v, bool)):
            return False
    return True


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


def decode_graph(model: ModelSpec, system: SystemSpec, *, positions: int = 1, batch: int = 1,
                 context: int = 8192, precision: PrecisionSpec = _DEFAULT_PRECISION,
                 with_heads: bool = False, context_window: int | None = None,
                 expert_parallel: bool = False) -> DecodeGraph:
    """The decode graph of one step of `model` as `system`'s schedule is compiled for it."""
    return build_decode_graph(model, _params(system, positions, batch, context, precision,
                                             with_heads, context_window, expert_parallel))


def _params(system: SystemSpec, positions: int, batch: int, context: int,
            precision: PrecisionSpec, with_heads: bool, context_window: int | None,
            expert_parallel: bool) -> GraphParams:
    return GraphParams(positions=positions, batch=batch, context=context, precision=precision,
                       with_heads=with_heads, context_window=context_window,
                       window_attention=system.compiler.attention_span == "window",
                       expert_parallel=expert_parallel)


def shared_graph(model: ModelSpec, params: GraphParams) -> DecodeGraph:
    """The decode graph for the compiles of `_step` and the deployment's sizing (read-only):
    a what-if that changes only the machine's links or clocks compiles the same graph, and
    its placement with it, and a run compiles the graph and placement its deployment sized.
    Params that build the same graph share it (`GraphParams.canonical`: the contexts a
    window-compiled step does not depend on)."""
    return _graph(model, params.canonical())


@caches.memoise("decode_graph", maxsize=16)
def _graph(model: ModelSpec, params: GraphParams) -> DecodeGraph:
    return build_decode_graph(model, params)


def _step(model: ModelSpec, system: SystemSpec, *, chips: int, tp: int, positions: int,
          batch: int, context: int, precision: PrecisionSpec, with_heads: bool,
          fidelity: str, context_window: int | None,
          expert_parallel: bool = False) -> StepMetrics:
    graph = shared_graph(model, _params(system, positions, batch, context, precision,
                                         with_heads, context_window, expert_parallel))
    if fidelity == "full":
        return metrics_full(compile_program(graph, system, chips=chips, tp=tp))
    try:
        return metrics_pipeline(compile_pipeline(graph, system, chips=chips, tp=tp))
    except NoStageTemplate:
        pass
    # a stage template with work outlasting its output cannot be composed exactly: simulate
    # the whole program instead
    m = metrics_full(compile_program(graph, system, chips=chips, tp=tp))
    return dataclasses.replace(m, extra={**m.extra, "fast_fallback": "full"})
