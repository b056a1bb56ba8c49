"""The `lpusim` command line: a thin shell over `lpusim.api`.

Only this module prints and chooses exit codes: bad input gives one line per problem on stderr
(file:line:column, field, what is wrong) and exit code 2, never a traceback; files are written
atomically, so an error leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpusim.errors import ConfigError, Issue, LpusimError

EXIT_BAD_INPUT = 2


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v, separators=(",", ":"))
        else:
            out[key] = v
    return out


def emit(data: dict[str, Any], fmt: str, out: Any = None) -> None:
    """Print a result as an aligned table, one JSON object, or CSV (header + one row)."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        return
    flat = _flatten(data)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(list(flat))
        w.writerow([flat[k] for k in flat])
        out.write(buf.getvalue())
        return
    width = max((len(k) for k in flat), default=0)
    for k, v in flat.items():
        out.write(f"{k:<{width}}  {_fmt_num(v)}\n")


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="output format (default: table)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lpusim",
        description="Cycle-approximate simulator of LPU-style deterministic dataflow "
                    "accelerators.")
    from lpusim import __version__
    ap.add_argument("--version", action="version", version=f"lpusim {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check spec files; report every error at once")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("describe", help="show a spec resolved, with its derived facts")
    p.add_argument("file", metavar="FILE")
    _format_arg(p)

    p = sub.add_parser("plan", help="minimum chips for a model, and SRAM per chip")
    p.add_argument("--model", required=True, help="model name or file")
    p.add_argument("--chip", default="groqchip1", help="chip name or file")
    p.add_argument("--context", type=int, default=8192)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tp", type=int, default=None,
                   help="tensor parallelism (chips per stage; default: the fewest whole nodes "
                        "that hold a layer)")
    _format_arg(p)

    p = sub.add_parser("speculate", help="textbook speculative-decoding calculator "
                                         "(Leviathan et al. 2023)")
    p.add_argument("--acceptance", required=True,
                   help="constant, preset name, list a1,a2,..., mix:w@a,..., or trace file")
    p.add_argument("--cost-ratio", type=float, required=True,
                   help="draft step time / target step time (c)")
    p.add_argument("--gamma", help="draft length (default: the optimum)")
    p.add_argument("--max-gamma", type=int, default=64)
    _format_arg(p)

    p = sub.add_parser("sweep", help="run a parameter grid in parallel, one JSON line per point")
    p.add_argument("file", metavar="SWEEP.yaml")
    p.add_argument("-o", "--output", required=True, help="results file (.jsonl)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes (default: the number of cores)")
    p.add_argument("--scheduler", help="address of a Dask scheduler (lpusim[dask])")

    p = sub.add_parser("compare", help="headline metrics of scenarios side by side")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    _format_arg(p)

    p = sub.add_parser("report", help="plots and report.html from a sweep's results")
    p.add_argument("results", metavar="RESULTS.jsonl")
    p.add_argument("-o", "--output", required=True, help="output directory")

    p = sub.add_parser("calibrate", help="fit the unpublished constants to Llama 3.1 70B at "
                                         "250 tokens/s and write them into the system file")
    p.add_argument("--scenario", default=None, help="anchor scenario (default: the 70B one)")
    p.add_argument("--target", type=float, default=None, help="anchor tokens/s (default 250)")
    p.add_argument("-o", "--output", help="write the calibrated system here instead of in place")
    p.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    _format_arg(p)

    p = sub.add_parser("validate-published", help="predicted vs published figures")
    _format_arg(p)

    p = sub.add_parser("sensitivity", help="tokens/s at +/-50%% of each uncertain parameter")
    p.add_argument("--scenario", default=None)
    p.add_argument("--delta", type=float, default=0.5)
    p.add_argument("-o", "--output", help="directory for the tornado plot (PNG and SVG)")
    _format_arg(p)

    for name, helptext in (("run", "simulate a scenario and print tokens/s"),
                           ("trace", "write a Perfetto/Chrome trace of one decode step")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("scenario", nargs="?", default=None,
                       help="scenario file or name (default: Llama 3.1 70B on 576 chips)")
        p.add_argument("--model", help="target model name or file")
        p.add_argument("--system", help="system name or file")
        p.add_argument("--chips", type=int, help="use the first N chips of the system")
        p.add_argument("--batch", type=int)
        p.add_argument("--context", type=int)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any scenario field by dotted path (repeatable)")
        if name == "run":
            p.add_argument("--fidelity", choices=("fast", "full"))
            p.add_argument("--draft", help="speculate with this draft model (name or file)")
            p.add_argument("--heads", type=int, help="speculate with K Medusa-style heads")
            p.add_argument("--gamma", help="draft length, or 'auto'")
            p.add_argument("--acceptance", help="constant, preset name, list, mix or file")
            p.add_argument("-o", "--output", help="directory for the scenario and result")
            _format_arg(p)
        else:
            p.add_argument("-o", "--output", required=True,
                           help="trace file (.json or .json.gz)")
            p.add_argument("--chip-range", help="only chips A:B (e.g. 0:16)")
            p.add_argument("--block-range", help="only blocks A:B (0 = embedding, then layers, "
                                                 "then the head)")
            p.add_argument("--layer-range", help="only transformer layers A:B (0-based)")
    return ap


def _range(flag: str, text: str | None) -> range | None:
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(Issue("command line", None, None, flag,
                                f"expected A:B with whole numbers, got {text!r}")) from None
    if b <= a or a < 0:
        raise ConfigError(Issue("command line", None, None, flag, f"empty range {text!r}"))
    return range(a, b)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from lpusim.config.yamlio import parse_scalar
    ov: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(Issue("command line", None, None, "--set",
                                    f"expected KEY=VALUE, got {item!r}"))
        k, v = item.split("=", 1)
        ov[k.strip()] = parse_scalar(v)
    for flag, key, kind in (("--model", "model", "model"), ("--system", "system", "system")):
        val = getattr(args, key, None)
        if val is not None:
            ov[key] = _ref(flag, kind, val)
    for key in ("chips", "batch", "context", "fidelity"):
        val = getattr(args, key, None)
        if val is not None:
            ov[key] = val
    spec: dict[str, Any] = {}
    if getattr(args, "draft", None):
        spec["strategy"] = "draft"
        spec["draft_model"] = _ref("--draft", "model", args.draft)
    if getattr(args, "heads", None):
        spec["strategy"] = "heads"
        spec["heads"] = args.heads
    if getattr(args, "gamma", None):
        g = args.gamma
        spec["gamma"] = g if g == "auto" else _int_flag("--gamma", g)
    if getattr(args, "acceptance", None):
        a = args.acceptance
        try:
            spec["acceptance"] = float(a)
        except ValueError:
            spec["acceptance"] = a
    if spec:
        ov["speculation"] = spec
    return ov


def _ref(flag: str, kind: str, value: str) -> str:
    """A spec named on the command line, as an absolute path (or an error naming the flag)."""
    from lpusim.config import resolve_ref
    try:
        return str(resolve_ref(kind, value).resolve())
    except ConfigError as e:
        raise ConfigError(Issue("command line", None, None, flag,
                                e.issues[0].message)) from None


def _int_flag(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(Issue("command line", None, None, flag,
                                f"expected a whole number or 'auto', got {text!r}")) from None


def _scenario(args: argparse.Namespace) -> Any:
    from lpusim import api
    from lpusim.config.load import apply_overrides
    ov = _overrides(args)
    spec_ov = ov.pop("speculation", None)
    ref = args.scenario or api.DEFAULT_SCENARIO
    if spec_ov is None:
        return api.load_scenario(ref, ov)
    # speculation flags make (or extend) the scenario's speculation section
    from lpusim.config.load import resolve_ref
    from lpusim.config.yamlio import load_document
    path = resolve_ref("scenario", ref)
    doc = load_document(path)
    base = dict(doc.data.get("speculation") or {})
    base.update(spec_ov)
    data = dict(doc.data)
    apply_overrides(data, {k: v for k, v in ov.items()}, str(path))
    data["speculation"] = base
    return api.load_scenario_data(path, data)


def cmd_validate(args: argparse.Namespace) -> int:
    from lpusim.config import load
    issues: list[Issue] = []
    for f in args.files:
        try:
            load(f)
        except ConfigError as e:
            issues.extend(e.issues)
    if issues:
        raise ConfigError(issues)
    for f in args.files:
        print(f"{f}: ok")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from lpusim import api
    emit(api.describe(args.file), args.format)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from lpusim import api
    from lpusim.config import load_chip, load_model, resolve_ref
    for flag in ("context", "batch", "tp"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(Issue("command line", None, None, f"--{flag}",
                                    f"must be at least 1, got {getattr(args, flag)}"))
    model = load_model(resolve_ref("model", args.model))
    chip = load_chip(resolve_ref("chip", args.chip))
    emit(api.plan(model, chip, context=args.context, batch=args.batch, tp=args.tp),
         args.format)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lpusim import api
    sc = _scenario(args)
    result = api.run(sc)
    data = result.to_dict()
    if args.output:
        from lpusim.atomic import write_atomic
        out = Path(args.output)
        write_atomic(out / "result.json", json.dumps(data, indent=2) + "\n")
        write_atomic(out / "scenario.json", json.dumps(api.describe_scenario(sc), indent=2)
                     + "\n")
        if result.speculation:
            api.plot_gamma_curve(result, out)
        else:
            api.plot_breakdown([result], out)
    emit(data, args.format)
    return 0


def cmd_speculate(args: argparse.Namespace) -> int:
    import math

    from lpusim.speculative import optimal_gamma, parse_acceptance, speedup
    c = args.cost_ratio
    if not math.isfinite(c) or c < 0:
        raise ConfigError(Issue("command line", None, None, "--cost-ratio",
                                f"must be a finite number >= 0, got {c}"))
    if args.max_gamma < 1:
        raise ConfigError(Issue("command line", None, None, "--max-gamma", "must be >= 1"))
    try:
        acc = parse_acceptance(args.acceptance)
    except ValueError as e:
        raise ConfigError(Issue("command line", None, None, "--acceptance", str(e))) from None
    best_g, best_s = optimal_gamma(acc, c, max_gamma=args.max_gamma)
    if args.gamma is None:
        g = best_g
    else:
        g = _int_flag("--gamma", args.gamma)
        if g < 1:
            raise ConfigError(Issue("command line", None, None, "--gamma", "must be >= 1"))
    try:
        e = acc.expected_tokens(g)
        s = speedup(acc, g, c)
    except ValueError as err:
        raise ConfigError(Issue("command line", None, None, "--gamma", str(err))) from None
    emit({"acceptance": acc.describe(), "cost_ratio": c, "gamma": g,
          "expected_tokens_per_pass": e, "speedup": s, "optimal_gamma": best_g,
          "optimal_speedup": best_s}, args.format)
    return 0


def emit_rows(rows: list[dict[str, Any]], fmt: str, out: Any = None) -> None:
    """Print a list of flat records as an aligned table, a JSON list or CSV."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    flat = [_flatten(r) for r in rows]
    cols = list(dict.fromkeys(k for r in flat for k in r))
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(cols)
        for r in flat:
            w.writerow([r.get(c, "") for c in cols])
        return
    cells = [[_fmt_num(r.get(c, "")) for c in cols] for r in flat]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out.write("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                  + "\n")


def cmd_sweep(args: argparse.Namespace) -> int:
    from lpusim.sweep import dask_executor, load_sweep, run_sweep, stderr_progress
    if args.workers < 1:
        raise ConfigError(Issue("command line", None, None, "--workers", "must be >= 1"))
    spec = load_sweep(args.file)
    ex = dask_executor(args.scheduler) if args.scheduler else None
    rows = run_sweep(spec, args.output, workers=args.workers, executor=ex,
                     progress=stderr_progress)
    bad = sum(1 for r in rows if "error" in r)
    print(f"{args.output}: {len(rows)} points ({bad} infeasible)", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lpusim import api
    emit_rows(api.compare([api.load_scenario(s) for s in args.scenarios]), args.format)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lpusim import api
    dest = api.report(args.results, args.output)
    print(f"wrote {dest}", file=sys.stderr)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from lpusim import calibrate as cal
    scenario = args.scenario or cal.ANCHOR_SCENARIO
    target = args.target if args.target is not None else cal.ANCHOR_TOKENS_PER_S
    if not target > 0:
        raise ConfigError(Issue("command line", None, None, "--target", "must be > 0"))
    fit = cal.calibrate(scenario, target)
    rows = [{"field": r.field, "before_ns": r.before_ps / 1000, "fitted_ns": r.fitted_ps / 1000,
             "bounds_ns": f"[{r.low_ps / 1000:g}, {r.high_ps / 1000:g}]",
             "hit_bound": r.hit_bound} for r in fit.rows]
    emit_rows(rows, args.format)
    print(f"predicted {fit.predicted_tokens_per_second:.2f} tokens/s vs target {target:g} "
          f"({fit.error_percent:+.3f}%)", file=sys.stderr)
    if not args.dry_run:
        dest = cal.write_calibrated(_system_ref_of(scenario), fit, args.output)
        print(f"wrote {dest}", file=sys.stderr)
    return 0


def _system_ref_of(scenario: str) -> str:
    from lpusim.config.load import resolve_ref
    from lpusim.config.yamlio import load_document
    path = resolve_ref("scenario", scenario)
    ref = load_document(path).data.get("system")
    if not isinstance(ref, str):
        raise ConfigError(Issue(str(path), None, None, "system",
                                "calibration needs the system as a file reference"))
    p = (path.parent / ref)
    return str(p) if p.is_file() else ref


def cmd_validate_published(args: argparse.Namespace) -> int:
    from lpusim import calibrate as cal
    emit_rows(cal.validate_published(), args.format)
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from lpusim import calibrate as cal
    if not 0 < args.delta < 1:
        raise ConfigError(Issue("command line", None, None, "--delta", "must be in (0, 1)"))
    rows = cal.sensitivity(args.scenario or cal.ANCHOR_SCENARIO, args.delta)
    if args.output:
        from lpusim.report.plots import tornado
        tornado(rows, Path(args.output))
    emit_rows(rows, args.format)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from lpusim.atomic import write_atomic
    from lpusim.compiler import compile_program
    from lpusim.graph import GraphParams, build_decode_graph
    from lpusim.report.trace import trace_json
    from lpusim.sim import simulate
    chips = _range("--chip-range", args.chip_range)
    blocks = _range("--block-range", args.block_range)
    layers = _range("--layer-range", args.layer_range)
    if layers is not None:
        if blocks is not None:
            raise ConfigError(Issue("command line", None, None, "--layer-range",
                                    "give --layer-range or --block-range, not both"))
        blocks = range(layers.start + 1, layers.stop + 1)     # block 0 is the embedding
    sc = _scenario(args)
    g = build_decode_graph(sc.model, GraphParams(batch=sc.batch, context=sc.context,
                                                 precision=sc.precision))
    prog = compile_program(g, sc.system, chips=sc.chips_used, tp=sc.tp, name=sc.name)
    res = simulate(prog)
    write_atomic(args.output, trace_json(res, chips=chips, blocks=blocks))
    print(f"wrote {args.output}: {len(prog.instructions)} instructions, "
          f"{len(prog.transfers)} transfers, step {res.latency_cycles} cycles")
    return 0


COMMANDS = {"validate": cmd_validate, "describe": cmd_describe, "plan": cmd_plan,
            "run": cmd_run, "trace": cmd_trace, "speculate": cmd_speculate,
            "calibrate": cmd_calibrate, "validate-published": cmd_validate_published,
            "sensitivity": cmd_sensitivity, "sweep": cmd_sweep, "compare": cmd_compare,
            "report": cmd_report}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        for issue in e.issues:
            print(f"lpusim: error: {issue}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LpusimError as e:
        print(f"lpusim: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lpusim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
