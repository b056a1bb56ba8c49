"""The public Python API: what the CLI and notebooks call.

`load_scenario` reads a scenario (file or shipped name) with optional dotted overrides; `run`
simulates it and returns a `RunResult`; `plan` sizes a model onto chips; `describe` reports a
spec and its derived facts. Every number here comes out of the model (graph, compiler,
simulator, speculation layer); nothing is typed in.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpusim.compiler import minimum_chips, place
from lpusim.compiler.topology import build_link_graph
from lpusim.config import load, resolve_ref
from lpusim.config import load_scenario as _load_scenario
from lpusim.config.specs import ChipSpec, ModelSpec, ScenarioSpec, SystemSpec
from lpusim.errors import CapacityError, ConfigError, Issue
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.sim import StepMetrics
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_scenario(ref: str | os.PathLike[str] = DEFAULT_SCENARIO,
                  overrides: dict[str, Any] | None = None) -> ScenarioSpec:
    """A scenario from a path or a shipped name, with dotted-key overrides applied."""
    return _load_scenario(resolve_ref("scenario", str(ref)), overrides)


def load_scenario_data(path: str | os.PathLike[str], data: dict[str, Any]) -> ScenarioSpec:
    """A scenario from already-read (and edited) data, as if it were the file at `path`."""
    from lpusim.config.load import load_data
    return load_data(path, data, "scenario")


def describe_scenario(sc: ScenarioSpec) -> dict[str, Any]:
    """The resolved scenario as plain data (what `run -o` saves next to the result)."""
    return {"name": sc.name, "model": _plain(sc.model), "system": _plain(sc.system),
            "chips": sc.chips_used, "tensor_parallel": sc.tp, "batch": sc.batch,
            "context": sc.context, "precision": _plain(sc.precision),
            "fidelity": sc.fidelity, "seed": sc.seed,
            "speculation": _plain(sc.speculation) if sc.speculation else None}


def baseline_step(sc: ScenarioSpec, positions: int = 1, with_heads: bool = False) -> StepMetrics:
    """The simulated decode step of the scenario's target model at a given width."""
    return step_metrics(sc.model, sc.system, chips=sc.chips_used, tp=sc.tp,
                        positions=positions, batch=sc.batch, context=sc.context,
                        precision=sc.precision, with_heads=with_heads, fidelity=sc.fidelity)


def run(scenario: ScenarioSpec | str | os.PathLike[str] = DEFAULT_SCENARIO) -> RunResult:
    """Simulate a scenario: the baseline decode step, and speculation if it has any."""
    sc = scenario if isinstance(scenario, ScenarioSpec) else load_scenario(scenario)
    m = baseline_step(sc)
    base_tps = 1e6 / m.latency_us
    tps, lat_us, speedup, spec = base_tps, m.latency_us, 1.0, None
    if sc.speculation is not None:
        from lpusim.speculative.strategies import evaluate
        spec = evaluate(sc, m)
        tps = spec["tokens_per_second"]
        lat_us = 1e6 / tps
        speedup = tps / base_tps
    sysx = sc.system
    return RunResult(
        scenario=sc.name, model=sc.model.name, chip=sysx.chip.name, system=sysx.name,
        chips=sc.chips_used, tensor_parallel=sc.tp, stages=sc.chips_used // sc.tp,
        batch=sc.batch, context=sc.context, fidelity=sc.fidelity, tokens_per_second=tps,
        token_latency_us=lat_us, step_latency_us=m.latency_us,
        step_latency_cycles=m.latency_cycles,
        throughput_tokens_per_second=tps * sc.batch,
        sram_bytes_per_chip_max=m.sram_bytes_per_chip_max,
        sram_capacity_bytes_per_chip=m.sram_capacity_bytes,
        sram_bytes_by_category=m.sram_bytes_by_category, breakdown_us=m.breakdown_us,
        unit_utilisation=m.unit_utilisation, link_utilisation=m.link_utilisation,
        program_hash=m.program_hash, baseline_tokens_per_second=base_tps, speedup=speedup,
        speculation=spec, assumptions=assumptions(sysx))


def assumptions(system: SystemSpec) -> dict[str, Any]:
    """The unpublished constants this result depends on (to calibrate)."""
    return {
        "local_hop_latency_ns": system.links.local_hop_latency_ps / 1000,
        "global_hop_latency_ns": system.links.global_hop_latency_ps / 1000,
        "deskew_per_stage_ns": system.sync.deskew_per_stage_ps / 1000,
        "link_bandwidth_bytes_per_s": system.link_bandwidth_bytes_per_s,
    }


def plan(model: ModelSpec, chip: ChipSpec, *, context: int = 8192, batch: int = 1,
         tp: int = 8, chips_per_node: int = 8, nodes_per_rack: int = 9,
         precision: Any = None) -> dict[str, Any]:
    """Minimum chips for `model` on `chip`, a whole-node/rack system, and SRAM per chip."""
    from lpusim.config.specs import PrecisionSpec
    prec = precision or PrecisionSpec()
    graph = build_decode_graph(model, GraphParams(context=context, batch=batch, precision=prec))
    need = minimum_chips(graph, chip, tp)
    if need is None:
        raise CapacityError(f"one block of {model.name} does not fit in a chip's "
                            f"{chip.usable_sram_bytes} usable bytes at tensor parallelism {tp}")
    nodes = math.ceil(need / chips_per_node)
    racks = math.ceil(nodes / nodes_per_rack)
    pl = place(graph, chip, need, tp)
    per_chip = [dict(s, total=sum(s.values())) for s in pl.sram]
    return {
        "model": model.name, "chip": chip.name, "context": context, "batch": batch,
        "tensor_parallel": tp, "weights_dtype": prec.weights,
        "weight_bytes": graph.total("weight_bytes"),
        "usable_sram_bytes_per_chip": chip.usable_sram_bytes,
        "min_chips": need, "stages": need // tp,
        "recommended_chips": nodes * chips_per_node, "recommended_nodes": nodes,
        "recommended_racks": racks,
        "sram_bytes_per_chip_max": max(p["total"] for p in per_chip),
        "sram_per_stage": [{"stage": i, "blocks": f"{b[0]}..{b[-1]}", **p}
                           for i, (b, p) in enumerate(zip(pl.stages, per_chip, strict=True))],
    }


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A spec file resolved, with its derived facts."""
    spec = load(path)
    if isinstance(spec, ChipSpec):
        return {"kind": "chip", "spec": _plain(spec), "derived": spec.derived()}
    if isinstance(spec, SystemSpec):
        return {"kind": "system", "spec": _plain(spec), "derived": system_facts(spec)}
    if isinstance(spec, ModelSpec):
        return {"kind": "model", "spec": _plain(spec), "derived": spec.derived()}
    sc: ScenarioSpec = spec
    return {"kind": "scenario", "name": sc.name, "model": sc.model.name,
            "system": sc.system.name, "chip": sc.system.chip.name, "chips": sc.chips_used,
            "tensor_parallel": sc.tp, "batch": sc.batch, "context": sc.context,
            "precision": _plain(sc.precision), "fidelity": sc.fidelity,
            "speculation": _plain(sc.speculation) if sc.speculation else None,
            "model_derived": sc.model.derived(sc.precision.weights, sc.precision.kv),
            "system_derived": system_facts(sc.system)}


def system_facts(s: SystemSpec) -> dict[str, Any]:
    g = build_link_graph(s)
    kinds: dict[str, int] = {}
    for lk in g.links:
        kinds[lk.kind] = kinds.get(lk.kind, 0) + 1
    far = g.route(list(range(s.topology.chips_per_node)),
                  [s.chips - 1]) if s.chips > 1 else (0, 0, [])
    return {
        "chips": s.chips, "nodes": s.nodes, "racks": s.topology.racks,
        "sram_bytes_total": s.chips * s.chip.sram_bytes,
        "link_bandwidth_bytes_per_s": s.link_bandwidth_bytes_per_s,
        "directed_links": kinds,
        "hops_node0_to_last_chip": len(far[2]),
        "peak_int8_ops_per_s_total": s.chips * s.chip.peak_int8_ops_per_s,
    }


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.name != "file"}
    return obj


def find_spec(kind: str, ref: str) -> Path:
    return resolve_ref(kind, ref)


def bad_option(flag: str, message: str) -> ConfigError:
    return ConfigError(Issue("command line", None, None, flag, message))
