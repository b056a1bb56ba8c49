"""One decode step, end to end: graph -> compile -> simulate -> StepMetrics, memoised.

`step_metrics` builds the decode graph of a model at a width (positions x batch), compiles it
for a system at the requested fidelity and simulates it. Results are cached in memory by the
value of every input (specs are frozen dataclasses), so a sweep whose points differ only in
speculation settings compiles each distinct step once.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from lpusim.compiler import compile_pipeline, compile_program
from lpusim.config.specs import ModelSpec, PrecisionSpec, SystemSpec
from lpusim.errors import CompileError
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.sim import StepMetrics, metrics_full, metrics_pipeline

_DEFAULT_PRECISION = PrecisionSpec()


@lru_cache(maxsize=256)
def step_metrics(model: ModelSpec, system: SystemSpec, *, chips: int, tp: int,
                 positions: int = 1, batch: int = 1, context: int = 8192,
                 precision: PrecisionSpec = _DEFAULT_PRECISION, with_heads: bool = False,
                 fidelity: str = "fast") -> StepMetrics:
    """Latency and metrics of one decode step of `model` on the first `chips` of `system`."""
    graph = build_decode_graph(model, GraphParams(positions=positions, batch=batch,
                                                  context=context, precision=precision,
                                                  with_heads=with_heads))
    if fidelity == "full":
        return metrics_full(compile_program(graph, system, chips=chips, tp=tp))
    try:
        return metrics_pipeline(compile_pipeline(graph, system, chips=chips, tp=tp))
    except CompileError as e:
        if "use fidelity 'full'" not in str(e):
            raise
    # stages whose chips are not interchangeable (a group spanning nodes) have no exact
    # template: simulate the whole program instead
    m = metrics_full(compile_program(graph, system, chips=chips, tp=tp))
    return dataclasses.replace(m, extra={**m.extra, "fast_fallback": "full"})
