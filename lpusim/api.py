"""The public Python API: what the CLI and notebooks call.

`load_scenario` reads a scenario (file or shipped name) with optional dotted overrides; `run`
simulates it and returns a `RunResult`; `plan` sizes a model onto chips; `describe` reports a
spec and its derived facts. Every number here comes out of the model (graph, compiler,
simulator, speculation layer); nothing is typed in. `run`, `compare` and `serve` pause the
cyclic garbage collector while they compute and leave it as found (`lpusim.collector`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpusim import collector, parallel
from lpusim.compiler import minimum_chips, place
from lpusim.compiler.topology import build_link_graph
from lpusim.config import load, resolve_ref
from lpusim.config.gpu_specs import GpuSpec
from lpusim.config.specs import ChipSpec, GpuSystemSpec, ModelSpec, ScenarioSpec, SystemSpec
from lpusim.errors import CapacityError, ConfigError, Issue
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.runner import (
    DEFAULT_SCENARIO,
    RunResult,
    assumptions,
    baseline_step,
    load_scenario,
    run_scenario,
)

__all__ = ["DEFAULT_SCENARIO", "RunResult", "assumptions", "baseline_step", "compare",
           "describe", "load_scenario", "plan", "plan_chips", "plot_breakdown",
           "plot_gamma_curve", "report", "run", "sweep", "to_frame", "load_model", "load_chip",
           "load_system", "acceptance", "acceptance_presets", "textbook_optimum", "serve",
           "plot_frontier", "run_many"]


@collector.paused()
def run(scenario: ScenarioSpec | str | os.PathLike[str] = DEFAULT_SCENARIO) -> RunResult:
    """Simulate a scenario (file, shipped name or loaded spec): baseline and speculation."""
    return run_scenario(scenario)


@collector.paused()
def run_many(scenarios: Sequence[ScenarioSpec | str | os.PathLike[str]]) -> list[RunResult]:
    """`run` of each scenario, in order. They are independent: while one runs here, the next
    run in forked children (`lpusim.parallel`: the usable CPUs in the CLI, one process in the
    library unless `parallel.set_jobs` says more), each as it would here."""
    items = list(scenarios)

    def one(i: int) -> RunResult:
        return run_scenario(items[i])

    # a quick run (a GPU's, a cached one) says nothing of the next: keep forking
    with parallel.Ahead(one, alike=False) as ahead:
        return list(ahead.each(range(len(items))))


def describe_scenario(sc: ScenarioSpec) -> dict[str, Any]:
    """The resolved scenario as plain data (what `run -o` saves next to the result)."""
    return {"name": sc.name, "model": _plain(sc.model), "system": _plain(sc.system),
            "chips": sc.chips_used, "tensor_parallel": sc.tp, "batch": sc.batch,
            "context": sc.context, "context_window": sc.context_window,
            "precision": _plain(sc.precision), "fidelity": sc.fidelity, "seed": sc.seed,
            "speculation": _plain(sc.speculation) if sc.speculation else None}


def plan(model: ModelSpec, chip: ChipSpec, *, context: int = 8192, batch: int = 1,
         tp: int | None = None, chips_per_node: int = 8, nodes_per_rack: int = 9,
         precision: Any = None) -> dict[str, Any]:
    """Minimum chips for `model` on `chip`, a whole-node/rack system, and SRAM per chip.

    With `tp` None the tensor parallelism starts at one node and doubles (whole nodes) until
    every layer fits: a layer too big for one node's SRAM spans several nodes."""
    from lpusim.config.specs import PrecisionSpec
    prec = precision or PrecisionSpec()
    graph = build_decode_graph(model, GraphParams(context=context, batch=batch, precision=prec,
                                                  with_heads=model.speculative_heads is not None))
    tps = [tp] if tp else [chips_per_node * 2**k for k in range(8)]
    need = None
    for tp in tps:
        need = minimum_chips(graph, chip, tp)
        if need is not None:
            break
    assert tp is not None
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


def plan_chips(sc: ScenarioSpec, chips: int, tp: int | None = None) -> dict[str, Any]:
    """Every feasible split of `chips` chips for the scenario's model, simulated, fastest
    first (the first is what `run --chips` uses), and faster splits on fewer chips."""
    from lpusim.deploy import plan as _plan
    return _plan(sc, chips, tp)


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A spec file resolved, with its derived facts."""
    spec = load(path)
    if isinstance(spec, ChipSpec):
        return {"kind": "chip", "spec": _plain(spec), "derived": spec.derived()}
    if isinstance(spec, SystemSpec):
        return {"kind": "system", "spec": _plain(spec), "derived": system_facts(spec)}
    if isinstance(spec, ModelSpec):
        return {"kind": "model", "spec": _plain(spec), "derived": spec.derived()}
    if isinstance(spec, GpuSpec | GpuSystemSpec):
        kind = "gpu" if isinstance(spec, GpuSpec) else "gpu_system"
        return {"kind": kind, "spec": _plain(spec), "derived": spec.derived()}
    sc: ScenarioSpec = spec
    return {"kind": "scenario", "name": sc.name, "model": sc.model.name,
            "system": sc.system.name, "chip": sc.system.chip.name, "chips": sc.chips_used,
            "tensor_parallel": sc.tp, "batch": sc.batch, "context": sc.context,
            "context_window": sc.window,
            "precision": _plain(sc.precision), "fidelity": sc.fidelity,
            "speculation": _plain(sc.speculation) if sc.speculation else None,
            "model_derived": sc.model.derived(sc.precision.weights, sc.precision.kv),
            "system_derived": system_facts(sc.system)}


def system_facts(s: SystemSpec | GpuSystemSpec) -> dict[str, Any]:
    if isinstance(s, GpuSystemSpec):
        return s.derived()
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


HEADLINE = ("tokens_per_second", "baseline_tokens_per_second", "speedup", "token_latency_us",
            "step_latency_us", "chips", "stages", "sram_bytes_per_chip_max")


@collector.paused()
def compare(scenarios: list[ScenarioSpec | str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Headline metrics of several scenarios (LPU and GPU alike) side by side, with ratios
    against the first: tokens/s per user, chips (a drafter's own chips included), tokens/s per
    chip, and where the system has `power:` and `cost:` sections (lpusim.cost) its power, J per
    token and $ per million tokens. System tokens/s is the larger of the batch's throughput
    (with speculation if any) and the interleaved throughput of independent steps (an LPU
    pipeline carrying many users; 1 step on a GPU, which serves more users by batching)."""
    specs = [s if isinstance(s, ScenarioSpec) else load_scenario(s) for s in scenarios]
    results = run_many(specs)
    first = results[0].to_dict()
    rows = []
    for sc, r in zip(specs, results, strict=True):
        d = r.to_dict()
        row: dict[str, Any] = {"scenario": d["scenario"], "model": d["model"], "chip": d["chip"]}
        for k in HEADLINE:
            row[k] = d[k]
        spec = d.get("speculation") or {}
        # every chip the result uses (a drafter's own chips too); tokens/s per chip of this
        # batch, and of the system serving as many users as it can carry at once (an LPU
        # interleaves independent steps in its pipeline; a GPU serves them by batching)
        row["total_chips"] = spec.get("total_chips") or d["chips"]
        row["tokens_per_second_per_chip"] = d["throughput_tokens_per_second"] / row["total_chips"]
        system_tps = max(d["system_tokens_per_second"], d["throughput_tokens_per_second"])
        row["system_tokens_per_second_per_chip"] = system_tps / row["total_chips"]
        row.update(_power_and_cost(sc.system, row["total_chips"], system_tps))
        for k in ("tokens_per_second", "token_latency_us", "chips"):
            row[f"{k}_ratio"] = d[k] / first[k] if first[k] else float("nan")
        row["gamma"] = spec.get("gamma")
        for k, v in d["breakdown_us"].items():
            row[f"breakdown_us.{k}"] = v
        rows.append(row)
    return rows


def _power_and_cost(system: SystemSpec | GpuSystemSpec, chips: int, tokens_per_s: float
                    ) -> dict[str, float | None]:
    """Facility power (kW), J/token and $ per million tokens, or None without the inputs."""
    from lpusim import cost
    out: dict[str, float | None] = {"power_kw": None, "joules_per_token": None,
                                    "usd_per_million_tokens": None}
    if system.power is not None:
        watts = cost.system_power_watts(system, chips)
        out["power_kw"] = watts / 1000
        out["joules_per_token"] = cost.joules_per_token(watts, tokens_per_s)
    if system.cost is not None and (system.power is not None
                                    or system.cost.chip_hour_usd is not None):
        out["usd_per_million_tokens"] = cost.usd_per_million_tokens(
            system, chips, tokens_per_s)
    return out


def sweep(sweep_file: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
          *, workers: int = 1) -> Any:
    """Run a sweep file; returns its rows (a pandas DataFrame when pandas is installed)."""
    import tempfile

    from lpusim.sweep import load_sweep, run_sweep
    spec = load_sweep(sweep_file)
    if output is None:
        with tempfile.TemporaryDirectory() as d:
            rows = run_sweep(spec, Path(d) / "results.jsonl", workers=workers)
    else:
        rows = run_sweep(spec, output, workers=workers)
    return to_frame(rows)


def to_frame(rows: list[dict[str, Any]]) -> Any:
    """Flatten result rows into a pandas DataFrame if pandas is installed, else return them."""
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.json_normalize(rows)


def plot_gamma_curve(result: RunResult | dict[str, Any], outdir: str | os.PathLike[str]
                     ) -> dict[str, Any]:
    """Tokens/s vs gamma of one speculative result (PNG and SVG in outdir)."""
    from lpusim.report.plots import gamma_curve
    d = result.to_dict() if isinstance(result, RunResult) else result
    return gamma_curve(d, Path(outdir))


def plot_breakdown(results: list[RunResult | dict[str, Any]], outdir: str | os.PathLike[str],
                   labels: list[str] | None = None) -> dict[str, Any]:
    """Stacked per-token latency breakdown of several results."""
    from lpusim.report.plots import breakdown_bars
    ds = [r.to_dict() if isinstance(r, RunResult) else r for r in results]
    return breakdown_bars(ds, labels or [d["scenario"] for d in ds], Path(outdir))


def report(results_file: str | os.PathLike[str], outdir: str | os.PathLike[str]) -> Path:
    """Plots and a self-contained report.html from a sweep's results file."""
    from lpusim.report.html import build_report
    from lpusim.results import read_results
    p = Path(results_file)
    rows = read_results(p, missing_ok=False)        # typed: file:line errors, nothing drawn
    if not rows:
        raise ConfigError(Issue(str(p), None, None, "", "no results: the file is empty"))
    return build_report(rows, Path(outdir), str(results_file))


def load_model(ref: str) -> ModelSpec:
    """A model spec by shipped name (e.g. 'llama-3.1-70b') or path."""
    return load(resolve_ref("model", ref), "model")


def load_chip(ref: str) -> ChipSpec:
    """A chip spec by shipped name (e.g. 'groqchip1') or path."""
    return load(resolve_ref("chip", ref), "chip")


def load_system(ref: str) -> SystemSpec:
    """A system spec by shipped name (e.g. 'groqrack-576') or path."""
    return load(resolve_ref("system", ref), "system")


def acceptance_presets() -> dict[str, str]:
    """Shipped acceptance presets and their sources."""
    from lpusim.speculative import PRESET_SOURCES
    return dict(PRESET_SOURCES)


def acceptance(value: str | float) -> Any:
    """An acceptance model from a constant, preset, list, 'mix:...' or trace file."""
    from lpusim.speculative import parse_acceptance
    return parse_acceptance(value)


def textbook_optimum(acceptance_model: Any, cost_ratio: float, max_gamma: int = 64
                     ) -> tuple[int, float]:
    """Leviathan et al.'s optimal gamma and speedup for a drafter of relative cost c."""
    from lpusim.speculative import optimal_gamma
    return optimal_gamma(acceptance_model, cost_ratio, max_gamma=max_gamma)


@collector.paused()
def serve(scenario: ScenarioSpec | str | os.PathLike[str] = DEFAULT_SCENARIO,
          **options: Any) -> Any:
    """Sweep load on a scenario's deployment (`lpusim.serve`): the frontier of per-user against
    system tokens/s, TTFT, J/token and $ per million output tokens. `options` are the fields
    of `lpusim.serve.ServeOptions` (contexts, paged, page_tokens, prompt_tokens, max_batch,
    strategies, ttft_prompts)."""
    from lpusim.serve import ServeOptions
    from lpusim.serve import serve as _serve
    sc = scenario if isinstance(scenario, ScenarioSpec) else load_scenario(scenario)
    if "strategies" in options:
        options["strategies"] = tuple(options["strategies"])
    if "ttft_prompts" in options:
        options["ttft_prompts"] = tuple(options["ttft_prompts"])
    return _serve(sc, ServeOptions(**options))


def plot_frontier(result: Any, outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """The serving frontier of a `serve` result (PNG and SVG in outdir)."""
    from lpusim.report.plots import serving_frontier
    d = result if isinstance(result, dict) else result.to_dict()
    return serving_frontier(d, Path(outdir))
