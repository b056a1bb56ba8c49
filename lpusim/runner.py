"""Running one scenario: the baseline decode step, then speculation if configured.

`run_scenario` is the engine behind `lpusim.api.run` and every sweep point: it asks the step
layer for the simulated decode step of the target model and, when the scenario speculates,
the speculation layer (the scenario's registered strategy) for drafter and verification
steps, and assembles a `RunResult`, whose `speculation` is that strategy's
`SpeculationResult.to_dict()`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from lpusim.config import load_scenario as _load_scenario
from lpusim.config import resolve_ref
from lpusim.config.specs import GpuSystemSpec, ScenarioSpec, SystemSpec
from lpusim.deploy import resolve
from lpusim.gpu import gpu_assumptions
from lpusim.gpu.deploy import resolve_gpu
from lpusim.sim import StepMetrics
from lpusim.speculative.checks import SCENARIO_CHECKS
from lpusim.step import step_metrics

DEFAULT_SCENARIO = "llama-3.1-70b-groqrack-576"


@dataclass(frozen=True)
class RunResult:
    """The result of one scenario. Field names are a public contract: add, never rename."""

    scenario: str
    model: str
    chip: str
    system: str
    chips: int
    tensor_parallel: int
    stages: int
    batch: int
    context: int
    fidelity: str
    tokens_per_second: float
    token_latency_us: float
    step_latency_us: float
    step_latency_cycles: int
    throughput_tokens_per_second: float
    sram_bytes_per_chip_max: int
    sram_capacity_bytes_per_chip: int
    sram_bytes_by_category: dict[str, int]
    breakdown_us: dict[str, float]
    unit_utilisation: dict[str, float]
    link_utilisation: float
    program_hash: str
    baseline_tokens_per_second: float
    speedup: float = 1.0
    speculation: dict[str, Any] | None = None
    assumptions: dict[str, Any] = field(default_factory=dict)
    context_window: int = 0              # KV cache reserved per sequence (tokens)
    # serving many users without speculation: independent decode steps interleaved in the
    # static pipeline, spaced by its initiation interval, each with its own KV cache
    interleaved_steps: int = 1
    interleaved_limit: str = ""          # "pipeline" (initiation interval) or "sram" (KV)
    system_tokens_per_second: float = 0.0
    # the deployment used and why (lpusim.deploy): chips installed/active, tp, stages, policy
    deployment: dict[str, Any] = field(default_factory=dict)
    # share of the token time that comes from fitted constants (0..1), and which they are
    fitted_share: float = 0.0
    fitted_constants: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict gives (a copy of every container), for JSON-like fields only
        # and several times faster: a sweep writes one per point
        return {f.name: _copied(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _copied(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _copied(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_copied(v) for v in x]
    if isinstance(x, (str, int, float)) or x is None:
        return x                        # immutable
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    return copy.deepcopy(x)


def load_scenario(ref: str | os.PathLike[str] = DEFAULT_SCENARIO,
                  overrides: dict[str, Any] | None = None) -> ScenarioSpec:
    """A scenario from a path or a shipped name, with dotted-key overrides applied; its
    acceptance (string or trace file) is checked now (lpusim.speculative.checks)."""
    return _load_scenario(resolve_ref("scenario", str(ref)), overrides, SCENARIO_CHECKS)


def baseline_step(sc: ScenarioSpec, positions: int = 1, with_heads: bool = False) -> StepMetrics:
    """The simulated decode step of the scenario's target model at a given width."""
    return step_metrics(sc.model, sc.system, chips=sc.chips_used, tp=sc.tp,
                        positions=positions, batch=sc.batch, context=sc.context,
                        precision=sc.precision, with_heads=with_heads, fidelity=sc.fidelity,
                        context_window=sc.context_window,
                        expert_parallel=bool(sc.expert_parallel))


def run_scenario(scenario: ScenarioSpec | str | os.PathLike[str] = DEFAULT_SCENARIO
                 ) -> RunResult:
    """Simulate a scenario: the baseline decode step, and speculation if it has any."""
    sc = scenario if isinstance(scenario, ScenarioSpec) else load_scenario(scenario)
    gpu = isinstance(sc.system, GpuSystemSpec)     # GPUs: lpusim.gpu's deployment rule
    sc, dep = resolve_gpu(sc) if gpu else resolve(sc)
    m = baseline_step(sc)
    base_tps = 1e6 / m.latency_us
    tps, lat_us, speedup, spec = base_tps, m.latency_us, 1.0, None
    if sc.speculation is not None:
        from lpusim.speculative.strategies import evaluate
        result = evaluate(sc, m)
        spec = result.to_dict()          # the result JSON's form
        tps = result.tokens_per_second
        lat_us = 1e6 / tps
        speedup = tps / base_tps
    sysx = sc.system
    return RunResult(
        scenario=sc.name, model=sc.model.name, chip=sysx.chip.name, system=sysx.name,
        chips=sc.chips_used, tensor_parallel=sc.tp, stages=sc.chips_used // sc.tp,
        batch=sc.batch, context=sc.context, fidelity=m.fidelity, tokens_per_second=tps,
        token_latency_us=lat_us, step_latency_us=m.latency_us,
        step_latency_cycles=m.latency_cycles,
        throughput_tokens_per_second=tps * sc.batch,
        sram_bytes_per_chip_max=m.sram_bytes_per_chip_max,
        sram_capacity_bytes_per_chip=m.sram_capacity_bytes,
        sram_bytes_by_category=m.sram_bytes_by_category, breakdown_us=m.breakdown_us,
        unit_utilisation=m.unit_utilisation, link_utilisation=m.link_utilisation,
        program_hash=m.program_hash, baseline_tokens_per_second=base_tps, speedup=speedup,
        speculation=spec, assumptions=assumptions(sysx),
        context_window=sc.window, **interleaving(m, sc.batch), deployment=dep.to_dict(),
        **fitted(m, sysx))


def interleaving(m: StepMetrics, batch: int) -> dict[str, Any]:
    """How many independent decode steps (users, or batches of `batch`) the pipeline can carry
    at once without speculation, what limits it, and the tokens/s of all of them together:
    steps spaced by the initiation interval never share a unit or link, so each keeps the
    single-user step time; each needs its own KV cache in SRAM."""
    by_pipe = max(1, m.latency_cycles // max(1, m.initiation_interval_cycles))
    by_sram = m.kv_slots if m.kv_slots > 0 else by_pipe
    n = max(1, min(by_pipe, by_sram))
    return {"interleaved_steps": n,
            "interleaved_limit": "pipeline" if by_pipe <= by_sram else "sram",
            "system_tokens_per_second": n * batch * 1e6 / m.latency_us}


# breakdown categories whose time rests on each fittable system constant
FITTED_CATEGORIES = {"sync.collective_latency_ps": ("collective_latency",),
                     "sync.layer_barrier_ps": ("layer_barrier",),
                     "sync.deskew_per_stage_ps": ("stage_deskew",),
                     "chip.mxm.weight_load_streams": ("compute_mxm",),
                     # GPUs: the kernel latency, and the HBM efficiency every byte streams at
                     "chip.latency.kernel.value_ps": ("launch_overhead",),
                     "chip.efficiency.hbm.value": ("weights", "kv_cache")}


def fitted(m: StepMetrics, system: SystemSpec | GpuSystemSpec) -> dict[str, Any]:
    """Which of the system's constants were fitted (its `fitted` list) and the share of the
    step's time that rests on them, from the breakdown categories those constants fill."""
    names = tuple(system.fitted)
    cats = {c for n in names for c in FITTED_CATEGORIES.get(n, ())}
    share = sum(m.breakdown_cycles.get(c, 0) for c in cats) / max(1, m.latency_cycles)
    return {"fitted_share": share,
            "fitted_constants": {n: dotted_get(system, n) for n in names}}


def dotted_get(obj: Any, dotted: str) -> Any:
    """The value at a dotted path of attributes (`sync.collective_latency_ps`)."""
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def assumptions(system: SystemSpec | GpuSystemSpec) -> dict[str, Any]:
    """The unpublished constants this result depends on (to calibrate)."""
    if isinstance(system, GpuSystemSpec):
        return gpu_assumptions(system)
    return {
        "local_hop_latency_ns": system.links.local_hop_latency_ps / 1000,
        "global_hop_latency_ns": system.links.global_hop_latency_ps / 1000,
        "deskew_per_stage_ns": system.sync.deskew_per_stage_ps / 1000,
        "collective_latency_ns": system.sync.collective_latency_ps / 1000,
        "layer_barrier_ns": system.sync.layer_barrier_ps / 1000,
        "link_bandwidth_bytes_per_s": system.link_bandwidth_bytes_per_s,
    }
