"""The benchmark cases and the child-process side of measuring one.

Each case is a function run in a fresh interpreter (`python -m benchmarks.cases NAME OUT`): it
returns its own wall time (`wall_s`, measured with time.perf_counter around the work, so the
interpreter start and imports are excluded unless the case is about them) and whatever else
it measured (simulated events, time inside the simulator, chips, layers, ...). The child adds
its peak resident memory (resource.getrusage: the larger of itself and its reaped children,
so a subprocess or a worker pool counts) and writes everything to OUT as JSON.

lpusim is imported inside the case functions only, so the runner can list the cases without
importing the simulator.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# model -> (scenario, overrides) for one decode step on the model's system
STEP_SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "8b": ("llama-3.1-70b-groqrack-576", {"model": "llama-3.1-8b", "chips": 48,
                                          "context_window": 8192}),
    "70b": ("llama-3.1-70b-groqrack-576", {}),
    "405b": ("llama-3.1-405b-groqrack-2304", {}),
}
# the same models with speculative decoding: Llama 3.2 1B drafter, acceptance 0.9, gamma auto
SPEC_SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "8b": ("llama-3.1-70b-specdec", {"model": "llama-3.1-8b", "chips": 48}),
    "70b": ("llama-3.1-70b-specdec", {}),
    "405b": ("llama-3.1-70b-specdec", {"model": "llama-3.1-405b", "system": "groqrack-2304",
                                       "chips": 2048, "tensor_parallel": 16}),
}
SYSTEM_NAMES = {"8b": "48 chips of groqrack-576", "70b": "groqrack-576",
                "405b": "2,048 chips of groqrack-2304"}

# the mixed sweep: 8 hardware points x 125 speculation points = 1,000
SWEEP_GRID: dict[str, list[Any]] = {
    "chips": [504, 384],           # with the drafter's chips, within the 576 installed
    "system.links.bandwidth_bytes_per_s": ["14.55GB/s", "29.1GB/s"],
    "system.links.global_hop_latency_ps": ["300ns", "600ns"],
    "speculation.acceptance": [0.6, 0.7, 0.8, 0.85, 0.9],
    "speculation.gamma": [2, 4, 8, 12, "auto"],
    "speculation.draft_model": ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-2-7b",
                                "mistral-7b"],
}
SWEEP_BASE = "llama-3.1-70b-specdec"
SWEEP_WORKERS = 2


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    fn: Callable[[], dict[str, Any]]
    target_s: float | None = None       # wall time target (seconds)
    target_mb: float | None = None      # peak memory target (MB, 10^6 bytes)
    quick: bool = False                 # part of --quick


# -- helpers -------------------------------------------------------------------------------

def _usage() -> tuple[int, float]:
    """(peak RSS in bytes of this process or its largest reaped child, CPU seconds of all)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return max(own.ru_maxrss, kids.ru_maxrss) * 1024, cpu      # Linux reports KiB


def lpusim_command() -> list[str]:
    """The installed `lpusim` script next to this interpreter, else `python -m lpusim.cli`."""
    script = Path(sys.executable).parent / "lpusim"
    if script.exists():
        return [str(script)]
    found = shutil.which("lpusim")
    return [found] if found else [sys.executable, "-m", "lpusim.cli"]


def timed_process(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Run a command as a new process: (wall seconds, its peak RSS bytes, exit code)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            out.seek(0)
            tail = out.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return wall, usage.ru_maxrss * 1024, proc.returncode


class _SimTimer:
    """Accumulates the time spent inside the simpy simulator (lpusim.sim.engine.simulate)."""

    def __init__(self) -> None:
        import lpusim.sim.metrics as met
        self.seconds = 0.0
        self.calls = 0
        self._met = met
        self._orig = met.simulate

        def timed(prog: Any) -> Any:
            t = time.perf_counter()
            try:
                return self._orig(prog)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1

        met.simulate = timed

    def close(self) -> None:
        self._met.simulate = self._orig


# -- cases ---------------------------------------------------------------------------------

def cli_run(args: list[str], repeats: int = 5) -> dict[str, Any]:
    """A whole `lpusim run` process (`cli`)."""
    return cli(["run", *args], repeats)


def cli(args: list[str], repeats: int = 5, warm_up: bool = True) -> dict[str, Any]:
    """A whole `lpusim` process, as an installed lpusim runs: with Python's bytecode cache (a
    machine may set PYTHONDONTWRITEBYTECODE, which would make every process compile lpusim's
    source again; pip writes the bytecode of an installed package), the CPUs it may use
    (`LPUSIM_JOBS` unset), and after a first, unmeasured run that warms the OS file cache and
    the bytecode (`warm_up`; a command of seconds needs none)."""
    cmd = lpusim_command() + args
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "LPUSIM_JOBS")}
    if warm_up:
        timed_process(cmd, env)
    runs = [timed_process(cmd, env) for _ in range(repeats)]
    walls = sorted(w for w, _m, _c in runs)
    return {"wall_s": statistics.median(walls), "min_s": walls[0], "max_s": walls[-1],
            "repeats": repeats, "peak_rss_bytes": max(m for _w, m, _c in runs),
            "command": " ".join(["lpusim", *args])}


def step(model: str, fidelity: str) -> dict[str, Any]:
    """Compile + simulate one decode step (graph, place, lower, schedule, verify, simulate,
    critical path, program hash), as `lpusim run` does before any speculation."""
    from lpusim import api
    from lpusim.runner import baseline_step
    ref, ov = STEP_SCENARIOS[model]
    sc = api.load_scenario(ref, {**ov, "fidelity": fidelity})
    timer = _SimTimer()
    t0 = time.perf_counter()
    m = baseline_step(sc)
    wall = time.perf_counter() - t0
    timer.close()
    return {"wall_s": wall, "sim_s": timer.seconds, "simulations": timer.calls,
            "events": m.events, "instructions": m.instructions, "transfers": m.transfers,
            "layers": sc.model.layers, "chips": sc.chips_used, "tp": sc.tp,
            "stages": sc.chips_used // sc.tp, "fidelity_run": m.fidelity,
            "fast_fallback": m.extra.get("fast_fallback"), "latency_us": m.latency_us,
            "program_hash": m.program_hash, "system": SYSTEM_NAMES[model]}


def specdec(model: str, fidelity: str, jobs: int | None = None) -> dict[str, Any]:
    """A whole speculative run (gamma auto): baseline, drafter, and the verification steps
    the gamma search evaluates (of 24 candidate widths), then the Monte Carlo. `jobs`: the
    processes that may compute at once (lpusim.parallel; the search computes its likely next
    widths in forked children); by default as `lpusim run` does, the usable CPUs. The
    simulator time (`sim_s`) is this process's only."""
    from lpusim import api, parallel
    jobs = jobs or parallel.usable_cpus()
    parallel.set_jobs(jobs)
    ref, ov = SPEC_SCENARIOS[model]
    sc = api.load_scenario(ref, {**ov, "fidelity": fidelity})
    timer = _SimTimer()
    t0 = time.perf_counter()
    r = api.run(sc)
    wall = time.perf_counter() - t0
    timer.close()
    spec = r.speculation or {}
    return {"wall_s": wall, "sim_s": timer.seconds, "simulations": timer.calls,
            "gamma": spec.get("gamma"), "tokens_per_second": r.tokens_per_second,
            "speedup": r.speedup, "chips": r.chips, "system": SYSTEM_NAMES[model],
            "jobs": jobs, "widths": len(spec.get("gamma_curve", ()))}


def fast_cached() -> dict[str, Any]:
    """Default scenario: the first run compiles; a second run of the same shape (load + run)
    hits the in-memory step cache."""
    from lpusim import api
    from lpusim.runner import DEFAULT_SCENARIO
    t0 = time.perf_counter()
    api.run(api.load_scenario(DEFAULT_SCENARIO))
    first = time.perf_counter() - t0
    again = []
    for _ in range(5):
        t0 = time.perf_counter()
        api.run(api.load_scenario(DEFAULT_SCENARIO))
        again.append(time.perf_counter() - t0)
    return {"wall_s": statistics.median(again), "first_s": first, "max_s": max(again)}


def fast_cached_specdec() -> dict[str, Any]:
    """Speculative scenario: new speculation settings (acceptance, gamma auto or fixed) on
    compiled steps. A first, unmeasured pass compiles the steps of each acceptance (a new
    acceptance can move the search to widths not compiled yet); the measured pass asks for
    acceptances 1e-4 higher, new to the process, whose steps are all cached. Each run still
    pays loading, the gamma search and the 100,000-pass Monte Carlo. `compiles` counts the
    steps compiled while measuring (0: the measured runs only reused compiled steps)."""
    from lpusim import api, caches
    accs = (0.6, 0.7, 0.8, 0.85, 0.95)
    t0 = time.perf_counter()
    api.run(api.load_scenario(SWEEP_BASE))
    first = time.perf_counter() - t0
    for acc in accs:
        for gamma in ("auto", 4):
            api.run(api.load_scenario(SWEEP_BASE, {"speculation.acceptance": acc,
                                                   "speculation.gamma": gamma}))
    steps = caches.info()["step"][0]
    again = []
    for acc in accs:
        for gamma in ("auto", 4):
            ov = {"speculation.acceptance": acc + 1e-4, "speculation.gamma": gamma}
            t0 = time.perf_counter()
            api.run(api.load_scenario(SWEEP_BASE, ov))
            again.append(time.perf_counter() - t0)
    return {"wall_s": statistics.median(again), "first_s": first, "max_s": max(again),
            "scenarios": len(again), "compiles": caches.info()["step"][0] - steps}


def warm_changed() -> dict[str, Any]:
    """70B, fast: after a first run in the same process, predictions whose link bandwidth, hop
    latency or context changed. A link change compiles the steps anew (the unchanged model's
    graph, placement and lowering are reused); a context the KV window holds is answered from
    the step compiled for the window (`GraphParams.canonical`). `by_change`: each one's wall
    time."""
    from lpusim import api
    from lpusim.runner import DEFAULT_SCENARIO
    api.run(api.load_scenario(DEFAULT_SCENARIO))
    changes: list[dict[str, Any]] = [
        {"system.links.bandwidth_bytes_per_s": "20GB/s"},
        {"system.links.global_hop_latency_ps": "450ns"},
        {"context": 2000},
        {"system.links.bandwidth_bytes_per_s": "25GB/s"},
        {"context": 3000},
        {"system.links.local_hop_latency_ps": "300ns"},
    ]
    walls = []
    for ov in changes:
        t0 = time.perf_counter()
        api.run(api.load_scenario(DEFAULT_SCENARIO, ov))
        walls.append(time.perf_counter() - t0)
    return {"wall_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "predictions": len(walls),
            "by_change": [[f"{k}={v}" for k, v in ov.items()][0] + f": {w * 1e3:.1f} ms"
                          for ov, w in zip(changes, walls, strict=True)]}


class _PassTimer:
    """Accumulates, per pass of a fast-fidelity compile and for the simulator, the seconds
    spent and the items handled (tasks lowered or scheduled, instructions and transfers
    verified or simulated), by wrapping lpusim.compiler's pass runner (its stage-template
    lowering, scheduling and verification, and its hand-off routes), its group signatures
    (with the group routes they read) and the fast metrics' simulate. A forked child's share
    would be hidden, so `passes()` is measured in one process."""

    def __init__(self) -> None:
        import lpusim.compiler as comp
        import lpusim.sim.metrics as met
        self.seconds: dict[str, float] = {}
        self.items: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []
        run_pass, sign, sim = comp._run_pass, comp.group_signature, met.simulate

        def add(name: str, t0: float, n: int) -> None:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.items[name] = self.items.get(name, 0) + n

        def timed_pass(pass_name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = run_pass(pass_name, fn, *args, **kw)
            name = {"lower_stage_template": "lower", "timed": "schedule",
                    "verify_schedule": "verify", "plan_routes": "routes"}.get(fn.__name__)
            if name is not None:
                n = {"lower": lambda: len(out.tasks), "schedule": lambda: len(args[0]),
                     "verify": lambda: len(args[0].instructions) + len(args[0].transfers),
                     "routes": lambda: 0}[name]()
                add(name, t0, n)
            return out

        def signature(*args: Any) -> Any:
            t0 = time.perf_counter()
            out = sign(*args)
            add("signatures", t0, 0)
            return out

        def simulate(prog: Any) -> Any:
            t0 = time.perf_counter()
            out = sim(prog)
            add("simulate", t0, len(prog.instructions) + len(prog.transfers))
            return out

        for mod, attr, fn in ((comp, "_run_pass", timed_pass),
                              (comp, "group_signature", signature),
                              (met, "simulate", simulate)):
            self._undo.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, fn)

    def close(self) -> None:
        for mod, attr, fn in self._undo:
            setattr(mod, attr, fn)


PASSES = ("lower", "schedule", "verify", "simulate", "routes", "signatures")


def passes() -> dict[str, Any]:
    """Where the time of the three work-bound predictions goes, in one process (LPUSIM_JOBS
    1): a 70B link what-if after a first run (`warm_changed`'s median kind), a first 70B
    speculative prediction (`specdec_70b_fast`, its imports included) and a first 405B step
    (`step_405b_fast`). Per workload: its wall time, each pass's seconds and items (tasks
    lowered or scheduled; instructions and transfers verified or simulated) and microseconds
    per item, and the rest (composing the stages, keys and caches, loading, imports, the
    search and the Monte Carlo). `wall_s` is the sum of the three walls."""
    from lpusim import api, parallel
    from lpusim.runner import DEFAULT_SCENARIO, baseline_step
    parallel.set_jobs(1)

    def measured(work: Callable[[], Any]) -> dict[str, Any]:
        timer = _PassTimer()
        t0 = time.perf_counter()
        try:
            work()
        finally:
            wall = time.perf_counter() - t0
            timer.close()
        rows = {p: {"s": timer.seconds[p], "items": timer.items[p],
                    "us_per_item": (1e6 * timer.seconds[p] / timer.items[p]
                                    if timer.items[p] else None)}
                for p in PASSES if p in timer.seconds}
        return {"wall_s": wall, "passes": rows,
                "rest_s": wall - sum(r["s"] for r in rows.values())}

    api.run(api.load_scenario(DEFAULT_SCENARIO))
    out = {"link_what_if_70b": measured(lambda: api.run(api.load_scenario(
        DEFAULT_SCENARIO, {"system.links.bandwidth_bytes_per_s": "20GB/s"})))}
    ref, ov = SPEC_SCENARIOS["70b"]
    sc = api.load_scenario(ref, {**ov, "fidelity": "fast"})
    out["specdec_70b_first"] = measured(lambda: api.run(sc))
    ref, ov = STEP_SCENARIOS["405b"]
    sc = api.load_scenario(ref, {**ov, "fidelity": "fast"})
    out["step_405b_first"] = measured(lambda: baseline_step(sc))
    return {"wall_s": sum(w["wall_s"] for w in out.values()), "workloads": out}


def write_sweep_file(directory: Path, grid: dict[str, list[Any]] | None = None) -> Path:
    """The mixed sweep as a sweep file (JSON is valid YAML)."""
    path = directory / "bench-sweep.yaml"
    doc = {"kind": "sweep", "version": 1, "name": "bench-mixed", "base": SWEEP_BASE,
           "grid": grid or SWEEP_GRID}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def sweep(warm: bool = False) -> dict[str, Any]:
    """1,000 points (8 hardware x 125 speculation) through `lpusim sweep`'s engine
    (lpusim.sweep.run_sweep: process pool, points batched by hardware), two workers, from
    loading the sweep file to the last result line written. `warm`: with the on-disk step
    cache (LPUSIM_CACHE_DIR) filled by a first, unmeasured run of the same sweep."""
    from lpusim import caches
    from lpusim.sweep import load_sweep, run_sweep
    with tempfile.TemporaryDirectory() as d:
        path = write_sweep_file(Path(d))
        if warm:
            caches.set_disk_dir(Path(d) / "cache")
            run_sweep(load_sweep(path), Path(d) / "first.jsonl", workers=SWEEP_WORKERS)
        else:
            caches.set_disk_dir(None)
        t0 = time.perf_counter()
        spec = load_sweep(path)
        rows = run_sweep(spec, Path(d) / "results.jsonl", workers=SWEEP_WORKERS)
        wall = time.perf_counter() - t0
    errors = sum(1 for r in rows if "error" in r)
    hw = {json.dumps({k: v for k, v in r["overrides"].items()
                      if not k.startswith("speculation.")}, sort_keys=True) for r in rows}
    return {"wall_s": wall, "points": len(rows), "errors": errors, "hardware_points": len(hw),
            "workers": SWEEP_WORKERS, "ms_per_point": 1000 * wall / max(1, len(rows))}


def _cases() -> list[Case]:
    out = [
        Case("cli_run_cold", "lpusim run (default 70B scenario), new process",
             lambda: cli_run([]), target_s=0.25, quick=True),
        Case("cli_run_specdec_cold", "lpusim run llama-3.1-70b-specdec, new process",
             lambda: cli_run([SWEEP_BASE], repeats=3)),
        Case("cli_serve", "lpusim serve llama-3.1-70b-specdec, new process",
             lambda: cli(["serve", SWEEP_BASE], repeats=1, warm_up=False)),
        Case("cli_validate_published", "lpusim validate-published, new process",
             lambda: cli(["validate-published"], repeats=1, warm_up=False)),
        Case("cli_calibrate", "lpusim calibrate --dry-run (8 hypotheses), new process",
             lambda: cli(["calibrate", "--dry-run"], repeats=1, warm_up=False)),
    ]
    for model in ("8b", "70b", "405b"):
        for fid in ("fast", "full"):
            target_s = {("70b", "full"): 5.0, ("405b", "fast"): 0.3}.get((model, fid))
            target_mb = 2000.0 if (model, fid) == ("405b", "full") else None
            out.append(Case(f"step_{model}_{fid}",
                            f"Llama 3.1 {model.upper()} step, {fid} ({SYSTEM_NAMES[model]})",
                            (lambda m=model, f=fid: step(m, f)), target_s=target_s,
                            target_mb=target_mb, quick=model != "405b"))
    for model in ("8b", "70b", "405b"):
        for fid in ("fast", "full"):
            out.append(Case(f"specdec_{model}_{fid}",
                            f"Llama 3.1 {model.upper()} + 1B drafter, gamma auto, {fid}, "
                            f"as lpusim run (LPUSIM_JOBS unset)",
                            (lambda m=model, f=fid: specdec(m, f)),
                            target_s={("70b", "fast"): 0.15,
                                      ("405b", "fast"): 5.0}.get((model, fid)),
                            quick=(model, fid) == ("70b", "fast")))
        if model != "8b":
            out.append(Case(f"specdec_{model}_fast_1job",
                            f"Llama 3.1 {model.upper()} + 1B drafter, gamma auto, fast, "
                            f"one process (LPUSIM_JOBS=1)",
                            (lambda m=model: specdec(m, "fast", jobs=1)),
                            quick=model == "70b"))
    out += [
        Case("warm_changed", "70B fast, changed hardware or context, same process",
             warm_changed, target_s=0.015, quick=True),
        Case("fast_cached", "fast fidelity, same shape again (load + run)", fast_cached,
             target_s=0.050, quick=True),
        Case("fast_cached_specdec", "specdec, new acceptance/gamma on compiled steps",
             fast_cached_specdec, target_s=0.001, quick=True),
        Case("sweep_1000", "1,000-point mixed sweep, 2 workers", sweep, target_s=5.0,
             quick=True),
        Case("sweep_1000_warm", "the same sweep again, on-disk step cache warm",
             lambda: sweep(warm=True)),
        Case("passes", "where a 70B link what-if, a first 70B speculative prediction and a "
             "first 405B step spend their time, one process", passes),
    ]
    return out


CASES: dict[str, Case] = {c.name: c for c in _cases()}


def main(argv: list[str]) -> int:
    """Child side: run one case and write its measurements to the output file."""
    name, out = argv
    import gc
    gc.disable()            # as lpusim's own entry points (the CLI, sweep workers) do
    res = CASES[name].fn()
    rss, cpu = _usage()
    res["peak_rss_bytes"] = max(res.get("peak_rss_bytes", 0), rss)
    res["cpu_s"] = cpu
    Path(out).write_text(json.dumps(res, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
