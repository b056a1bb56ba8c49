"""Calibration of the GPU step model on its one training point.

The only GPU figure fitted on: NVIDIA NIM documentation, Llama 3.3 70B on 2x H100 SXM, FP8,
tensor parallel 2, concurrency 1, 500 input / 2,000 output tokens: inter-token latency 18.9 ms
(scenario `llama-3.3-70b-nim-h100x2`, ~1,500 tokens in the cache at the measured step). One
number pins down one unknown, so the fit is sequential, as the LPU calibration
(`lpusim.calibrate`): each named constant in turn is moved within the bounds the GPU's YAML gives
it (bisection; the step time is monotone in each) until the point is met or the bound is hit,
then the next one is moved. The better-bounded constant goes first: the achieved HBM bandwidth,
whose bounds come from published H100 measurements, then the per-kernel fixed latency, which has
no published figure and takes what is left. Both start at their optimistic end (efficiency at its
maximum, latency at its minimum), so the fit does not depend on the values the YAML held before.
Every other constant keeps its YAML value; every other GPU figure is a prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lpusim.config.gpu_specs import GpuSpec
from lpusim.runner import load_scenario, run_scenario

TRAINING_SCENARIO = "llama-3.3-70b-nim-h100x2"
TRAINING_ITL_MS = 18.9            # NVIDIA NIM docs: Llama 3.3 70B, 2x H100 FP8, TP 2, conc. 1


@dataclass(frozen=True)
class GpuParameter:
    field: str          # dotted field of the scenario
    kind: str           # "fraction" or "time" (picoseconds)
    low: float
    high: float
    why: str


@dataclass(frozen=True)
class GpuFitRow:
    field: str
    before: float
    fitted: float
    low: float
    high: float
    hit_bound: bool
    why: str


@dataclass(frozen=True)
class GpuCalibration:
    scenario: str
    target_itl_ms: float
    predicted_itl_ms: float
    error_percent: float
    rows: tuple[GpuFitRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def values(self) -> dict[str, float]:
        return {r.field: r.fitted for r in self.rows}


def parameters(scenario: str = TRAINING_SCENARIO) -> tuple[GpuParameter, ...]:
    """The constants to fit, in order, with the bounds of the scenario's GPU YAML."""
    gpu = load_scenario(scenario).system.chip
    assert isinstance(gpu, GpuSpec)
    e, k = gpu.efficiency.hbm, gpu.latency.kernel
    return (
        GpuParameter("system.chip.efficiency.hbm.value", "fraction", e.min, e.max,
                     "achieved HBM bandwidth of the streaming kernels (bounds: published "
                     "H100 measurements)"),
        GpuParameter("system.chip.latency.kernel.value_ps", "time", k.min_ps, k.max_ps,
                     "per-kernel launch gap, ramp-up and tail (no published figure)"),
    )


def _override(p: GpuParameter, v: float) -> Any:
    return f"{round(v)}ps" if p.kind == "time" else v


def itl_ms(scenario: str, values: dict[GpuParameter, float]) -> float:
    """Inter-token latency (ms) of `scenario` without speculation, with `values` set."""
    ov = {p.field: _override(p, v) for p, v in values.items()}
    return run_scenario(load_scenario(scenario, ov)).step_latency_us / 1000


def _start(p: GpuParameter) -> float:
    """The optimistic end: the fastest step."""
    return p.high if p.kind == "fraction" else p.low


def _end(p: GpuParameter) -> float:
    return p.low if p.kind == "fraction" else p.high


def calibrate(scenario: str = TRAINING_SCENARIO, target_ms: float = TRAINING_ITL_MS
              ) -> GpuCalibration:
    """Fit the parameters in order to the training point; deterministic, writes nothing."""
    params = parameters(scenario)
    sc = load_scenario(scenario)
    gpu = sc.system.chip
    assert isinstance(gpu, GpuSpec)
    before = {params[0]: gpu.efficiency.hbm.value,
              params[1]: float(gpu.latency.kernel.value_ps)}
    values = {p: _start(p) for p in params}
    rows = []
    done = False
    for p in params:
        if done:
            rows.append(GpuFitRow(p.field, before[p], values[p], p.low, p.high, False, p.why))
            continue
        values[p] = _start(p)
        if itl_ms(scenario, values) > target_ms:       # even the fastest end is too slow
            rows.append(GpuFitRow(p.field, before[p], values[p], p.low, p.high, True, p.why))
            done = True
            continue
        values[p] = _end(p)
        if itl_ms(scenario, values) < target_ms:       # even the slowest end is too fast
            rows.append(GpuFitRow(p.field, before[p], values[p], p.low, p.high, True, p.why))
            continue
        fast, slow = _start(p), _end(p)
        tol = 1e-4 if p.kind == "fraction" else 1000.0     # 1e-4, or 1 ns
        while abs(slow - fast) > tol:
            mid = (fast + slow) / 2
            values[p] = mid
            if itl_ms(scenario, values) < target_ms:
                fast = mid
            else:
                slow = mid
        def snap(v: float, q: GpuParameter = p) -> float:     # 1e-4, or a whole ns
            return round(v, 4) if q.kind == "fraction" else round(v / 1000.0) * 1000.0
        cands = sorted({snap(fast), snap(slow)})
        def miss(v: float, q: GpuParameter = p) -> tuple[float, float]:
            return abs(itl_ms(scenario, {**values, q: v}) - target_ms), v

        values[p] = min(cands, key=miss)
        rows.append(GpuFitRow(p.field, before[p], values[p], p.low, p.high, False, p.why))
        done = True
    predicted = itl_ms(scenario, values)
    return GpuCalibration(scenario, target_ms, predicted,
                          100 * (predicted - target_ms) / target_ms, tuple(rows))
