"""The benchmark runner: runs each case in its own process, one at a time, and reports.

Prints one table (case, wall time, peak memory, target, PASS/FAIL), then the full-fidelity
simulator's rate in simulated events per second (StepMetrics.events / seconds inside the simpy
simulator) and the scaling of one decode step from 8B to 70B to 405B: wall time against
layers x chips and against simulated events (instructions plus link hops: the size of the
program), normalised to the smallest model. A case without a
target is measured and reported, marked '-'. `--json FILE` saves everything.

Other work on the machine distorts wall times, so before each case the runner waits (up to
`--idle-wait` seconds) until the CPUs have been idle for half a second, and flags a case that
started on a busy machine; `--repeat N` runs every case N times, round after round, and
reports each case's median run with the range of its wall times (a virtual machine's speed
drifts between minutes), and `--against DIR` runs each case in another checkout too (an
earlier commit), right before or after it runs here, so that a change is measured against
its base in the same minutes. The on-disk step cache (LPUSIM_CACHE_DIR) is removed from the
cases' environment: every case starts cold unless it says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.cases import CASES, ROOT, Case

CASE_TIMEOUT_S = 1800
BUSY = 0.15         # fraction of all CPUs busy with other work that counts as a busy machine


def cpu_busy(interval: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over `interval` seconds (Linux /proc/stat; None elsewhere)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0)
    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_for_idle(max_wait: float) -> float | None:
    """Wait until the machine is idle (or `max_wait` s have passed); the last busy fraction."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy is not None and busy > BUSY and time.monotonic() < deadline:
        time.sleep(1)
        busy = cpu_busy()
    return busy


def run_case(case: Case, idle_wait: float = 60, root: Path = ROOT) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its measurements plus name, target and verdict.
    `root`: the checkout whose benchmarks and lpusim run (another than this one: put first on
    the import path, so its `lpusim` command and package are the ones measured)."""
    env = {k: v for k, v in os.environ.items() if k != "LPUSIM_CACHE_DIR"}
    if root != ROOT:
        env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    busy = wait_for_idle(idle_wait) if idle_wait > 0 else None
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "result.json"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.cases", case.name, str(out)],
                              cwd=root, capture_output=True, text=True, timeout=CASE_TIMEOUT_S,
                              env=env)
        process_s = time.perf_counter() - t0
        if proc.returncode or not out.exists():
            res: dict[str, Any] = {"error": (proc.stderr or proc.stdout)[-3000:]}
        else:
            res = json.loads(out.read_text())
    res.update(name=case.name, title=case.title, target_s=case.target_s,
               target_mb=case.target_mb, process_s=process_s, busy_before=busy)
    res["result"] = verdict(res)
    return res


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time (the lower middle of an even number; an error if any run
    failed), with every run's wall time (`walls_s`, in run order) when there were several."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    mid = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    if len(runs) > 1:
        mid = {**mid, "walls_s": [r["wall_s"] for r in runs]}
    return mid


def verdict(res: dict[str, Any]) -> str:
    if "error" in res:
        return "ERROR"
    if res["target_s"] is None and res["target_mb"] is None:
        return "-"
    ok = True
    if res["target_s"] is not None:
        ok &= res["wall_s"] <= res["target_s"]
    if res["target_mb"] is not None:
        ok &= res["peak_rss_bytes"] / 1e6 <= res["target_mb"]
    return "PASS" if ok else "FAIL"


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{1000 * s:.1f} ms"
    return f"{s:.2f} s"


def fmt_range(res: dict[str, Any]) -> str:
    """' (lo-hi)' of a repeated case's wall times, else ''."""
    walls = res.get("walls_s")
    if not walls:
        return ""
    return f" ({fmt_time(min(walls))}-{fmt_time(max(walls))})"


def fmt_target(res: dict[str, Any]) -> str:
    parts = []
    if res["target_s"] is not None:
        parts.append(f"<= {fmt_time(res['target_s'])}")
    if res["target_mb"] is not None:
        parts.append(f"<= {res['target_mb'] / 1000:g} GB")
    return ", ".join(parts) or "-"


def table(results: list[dict[str, Any]], previous: dict[str, Any] | None = None) -> str:
    """The results as text; with `previous` (`--against`), its wall times beside them."""
    before = previous["wall_s"] if previous else None
    head = ("case", "what", "wall") + ((f"before ({previous['commit']})",) if previous else ())
    rows = [(*head, "peak RSS", "target", "result")]
    for r in results:
        was = (fmt_time(before.get(r["name"])),) if before is not None else ()
        if "error" in r:
            rows.append((r["name"], r["title"], "-", *was, "-", fmt_target(r), "ERROR"))
            continue
        flag = " *" if (r.get("busy_before") or 0) > BUSY else ""
        rows.append((r["name"], r["title"], fmt_time(r["wall_s"]) + flag + fmt_range(r), *was,
                     f"{r['peak_rss_bytes'] / 1e6:,.0f} MB", fmt_target(r), r["result"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def events_rate(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Simulated events per second of the full-fidelity step cases."""
    out = []
    for r in results:
        if r["name"].startswith("step_") and r["name"].endswith("_full") and "error" not in r:
            out.append({"case": r["name"], "events": r["events"], "sim_s": r["sim_s"],
                        "events_per_s": r["events"] / r["sim_s"] if r["sim_s"] else None})
    return out


def scaling(results: list[dict[str, Any]], fidelity: str) -> list[dict[str, Any]]:
    """Wall time of one step against layers x chips and simulated items, per model."""
    rows = []
    for model in ("8b", "70b", "405b"):
        r = next((x for x in results if x["name"] == f"step_{model}_{fidelity}"), None)
        if r is None or "error" in r:
            continue
        lc = r["layers"] * r["chips"]
        items = r["instructions"] + r["transfers"]
        rows.append({"case": r["name"], "layers": r["layers"], "chips": r["chips"],
                     "tp": r["tp"], "layers_x_chips": lc, "items": items,
                     "events": r["events"], "wall_s": r["wall_s"],
                     "us_per_layer_chip": 1e6 * r["wall_s"] / lc,
                     "us_per_item": 1e6 * r["wall_s"] / items,
                     "us_per_event": 1e6 * r["wall_s"] / r["events"],
                     "fallback": r.get("fast_fallback")})
    if rows:
        base = rows[0]
        for row in rows:
            row["layers_x_chips_ratio"] = row["layers_x_chips"] / base["layers_x_chips"]
            row["events_ratio"] = row["events"] / base["events"]
            row["wall_ratio"] = row["wall_s"] / base["wall_s"]
            row["cost_per_layer_chip_ratio"] = row["us_per_layer_chip"] / base[
                "us_per_layer_chip"]
    return rows


def scaling_text(rows: list[dict[str, Any]], fidelity: str) -> str:
    if not rows:
        return ""
    lines = [f"scaling, {fidelity} fidelity (ratios against {rows[0]['case']}):",
             f"  {'case':16s} {'layers x chips':>16s} {'ratio':>7s} {'events':>9s} "
             f"{'ratio':>7s} {'wall':>9s} {'ratio':>7s} {'us/layer.chip':>14s} "
             f"{'us/event':>9s}"]
    for r in rows:
        note = "  (fast fell back to full)" if r["fallback"] else ""
        lines.append(f"  {r['case']:16s} {r['layers_x_chips']:>16,d} "
                     f"{r['layers_x_chips_ratio']:>6.1f}x {r['events']:>9,d} "
                     f"{r['events_ratio']:>6.1f}x {fmt_time(r['wall_s']):>9s} "
                     f"{r['wall_ratio']:>6.1f}x {r['us_per_layer_chip']:>14.2f} "
                     f"{r['us_per_event']:>9.2f}{note}")
    last = rows[-1]
    ok = all(r["wall_ratio"] <= r["layers_x_chips_ratio"] for r in rows[1:])
    lines.append(f"  no faster than linear in layers x chips: {'PASS' if ok else 'FAIL'} "
                 f"(wall x{last['wall_ratio']:.1f} for layers x chips "
                 f"x{last['layers_x_chips_ratio']:.1f}; per simulated event "
                 f"{rows[0]['us_per_event']:.1f} -> {last['us_per_event']:.1f} us)")
    return "\n".join(lines)


def _commit(root: Path) -> str:
    """The short commit of a checkout (with '+' if its tracked files were edited), else its
    directory's name."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return root.name
    return head + ("+" if dirty else "")


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a subset that runs in under 60 s")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--case", action="append", metavar="NAME", choices=sorted(CASES),
                    help="run only this case (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--idle-wait", type=float, default=60, metavar="S",
                    help="wait up to S seconds for an idle machine before each case (0: no)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run every case N times, round after round, and report each case's "
                         "median run with the range of its wall times")
    ap.add_argument("--against", metavar="DIR",
                    help="another checkout of lpusim (an earlier commit, say as a git "
                         "worktree): run each case there too, right after or before it runs "
                         "here, and report its median wall times beside these ('before')")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"argument --repeat: must be at least 1, got {args.repeat}")
    against = Path(args.against).resolve() if args.against else None
    if against is not None and not (against / "benchmarks" / "cases.py").is_file():
        ap.error(f"argument --against: {args.against} is not a checkout of lpusim "
                 f"(no benchmarks/cases.py)")
    if args.list:
        for c in CASES.values():
            print(f"{c.name:22s} {'quick' if c.quick else '     '}  {c.title}")
        return 0
    cases = [c for c in CASES.values()
             if (not args.case or c.name in args.case) and (c.quick or not args.quick)]
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cases}
    other: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cases}
    t0 = time.perf_counter()
    for k in range(args.repeat):        # round after round: a drift of the machine's speed
        for c in cases:                 # reaches every case alike
            more = f" ({k + 1} of {args.repeat})" if args.repeat > 1 else ""
            print(f"running {c.name}{more} ...", file=sys.stderr, flush=True)
            if against is None:
                runs[c.name].append(run_case(c, args.idle_wait))
                continue
            # both checkouts, in turn first: neither gains from the other's leftovers
            for here in ((True, False) if k % 2 == 0 else (False, True)):
                if here:
                    runs[c.name].append(run_case(c, args.idle_wait))
                else:
                    other[c.name].append(run_case(c, args.idle_wait, against))
    results = [median_run(runs[c.name]) for c in cases]
    previous = None
    if against is not None:
        before = {n: median_run(rs) for n, rs in other.items()}
        previous = {"commit": _commit(against), "same_rounds": True,
                    "wall_s": {n: r["wall_s"] for n, r in before.items() if "error" not in r}}
    total = time.perf_counter() - t0
    m = machine()
    print(f"lpusim benchmarks on {m['cpus']} CPUs, Python {m['python']}, {m['platform']}")
    print(table(results, previous))
    if any((r.get("busy_before") or 0) > BUSY for r in results):
        print(f"* the machine was busy (> {BUSY:.0%} of its CPUs) when this case started")
    for r in results:
        if "error" in r:
            print(f"\n{r['name']} failed:\n{r['error']}")
    rate = events_rate(results)
    if rate:
        print("\nfull-fidelity simulator rate (StepMetrics.events / time inside simulate):")
        for e in rate:
            print(f"  {e['case']:16s} {e['events']:>9,d} events in {fmt_time(e['sim_s']):>9s}"
                  f" = {e['events_per_s']:>10,.0f} events/s")
    scale = {f: scaling(results, f) for f in ("full", "fast")}
    for f, rows in scale.items():
        if len(rows) > 1:
            print()
            print(scaling_text(rows, f))
    print(f"\ntotal {total:.1f} s")
    if args.json:
        data: dict[str, Any] = {"machine": m, "quick": args.quick, "total_s": total,
                                "cases": results, "events_per_s": rate, "scaling": scale}
        if previous is not None:
            data["previous"] = previous
        Path(args.json).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 1 if any(r["result"] == "ERROR" for r in results) else 0
