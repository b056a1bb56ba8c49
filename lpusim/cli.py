"""The `lpusim` command line: a thin shell over `lpusim.api`.

Only this module prints and chooses exit codes: bad input gives one line per problem on stderr
(file:line:column, field, what is wrong) and exit code 2, never a traceback; files are written
atomically, so an error leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lpusim import caches, strategy_traits
from lpusim.errors import ConfigError, Issue, LpusimError

EXIT_BAD_INPUT = 2
# more processes than this only thrash (and a million would be a fork bomb)
MAX_WORKERS = min(256, 4 * (os.cpu_count() or 1))


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


def emit(data: dict[str, Any], fmt: str, out: Any = None, render: Any = None) -> None:
    """Print a result as an aligned table (or what `render` makes of it: see
    lpusim.report.tables), one JSON object, or CSV (header + one row)."""
    out = out or sys.stdout
    if fmt == "table" and render is not None:
        out.write(render(data))
        return
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


def _with_progress(fn: Any) -> Any:
    """A long command: progress on stderr when it is a terminal (lpusim.progress, tqdm)."""
    import functools

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from lpusim import progress
        progress.enable()
        try:
            return fn(args)
        finally:
            progress.enable(False)
    return wrapper


def _all_or_none(fn: Any) -> Any:
    """Run a command so that it leaves all of its -o outputs or none (see lpusim.atomic)."""
    import functools

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from lpusim.atomic import all_or_none
        out = getattr(args, "output", None)
        if not out:
            return fn(args)
        with all_or_none([out]):
            return fn(args)
    return wrapper


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="output format (default: table)")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, built once per set of registered strategies (their names
    are its choices): building it takes longer than most commands' own checks. Shared:
    parse with it, do not change it."""
    return _parser(tuple(strategy_traits.names()))


_ENVIRONMENT = """environment variables:
  LPUSIM_CACHE_DIR=DIR    keep compiled decode steps on disk in DIR between runs
  LPUSIM_JOBS=N           processes lpusim may compute with at once (speculative
                          searches, serve, calibrate, validate-published, compare,
                          sensitivity; default: the CPUs this process may use; 1: none
                          beside it)
  LPUSIM_DATA=DIR         look short names up in DIR/chip_configs and DIR/workloads first
  LPUSIM_CHECK_PASSES=1   check the compiler's invariants between its passes
  LPUSIM_DEBUG=1          show the traceback of an internal error"""


@caches.memoise("cli_parser", maxsize=4)
def _parser(strategies: tuple[str, ...]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lpusim",
        description="Cycle-approximate simulator of LPU-style deterministic dataflow "
                    "accelerators.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_ENVIRONMENT)
    from lpusim import __version__
    ap.add_argument("--version", action="version", version=f"lpusim {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check spec files; report every error at once")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("describe", help="show a spec resolved, with its derived facts")
    p.add_argument("file", metavar="FILE")
    _format_arg(p)

    p = sub.add_parser("plan", help="minimum chips for a model, SRAM per chip; with --chips, "
                                    "every feasible split of N chips, fastest first")
    p.add_argument("--model", required=True, help="model name or file")
    p.add_argument("--chip", default="groqchip1", help="chip name or file")
    p.add_argument("--context", type=int, default=8192)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tp", type=int, default=None,
                   help="tensor parallelism (chips per stage; default: the fewest whole nodes "
                        "that hold a layer)")
    p.add_argument("--chips", type=int, default=None,
                   help="list the splits of N chips of --system, simulated, fastest first")
    p.add_argument("--system", default=None, help="system name or file (with --chips)")
    p.add_argument("--context-window", type=int, default=None,
                   help="the endpoint's context window (with --chips; default: the context)")
    _format_arg(p)

    p = sub.add_parser("speculate", help="textbook speculative-decoding calculator "
                                         "(Leviathan et al. 2023)")
    p.add_argument("--acceptance", required=True,
                   help="constant, preset name, list a1,a2,..., mix:w@a,..., or trace file")
    p.add_argument("--cost-ratio", type=float, required=True,
                   help="draft step time / target step time (c)")
    p.add_argument("--gamma", help="draft length (default: the optimum)")
    p.add_argument("--max-gamma", type=int, default=64)
    p.add_argument("--pipeline-stages", type=int,
                   help="also the speedup of asynchronous speculation (window 1) on a target "
                        "pipeline of this many equal stages")
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

    p = sub.add_parser("calibrate", help="fit each mechanism hypothesis on the published "
                                         "training rows, choose by leave-one-out error, and "
                                         "write the chosen fit into the system files")
    p.add_argument("--hypothesis", default=None,
                   help="fit (and write) only this hypothesis instead of choosing")
    p.add_argument("-o", "--output", help="directory for the calibrated system files "
                                          "instead of rewriting them in place")
    p.add_argument("--dry-run", action="store_true", help="print the fits, write nothing")
    _format_arg(p)

    p = sub.add_parser("validate-published", help="predicted vs published figures")
    p.add_argument("--hypotheses", action="store_true",
                   help="every hypothesis's predictions of every published row, side by side")
    _format_arg(p)

    p = sub.add_parser("sensitivity", help="tokens/s at +/-50%% of each uncertain parameter")
    p.add_argument("--scenario", default=None)
    p.add_argument("--delta", type=float, default=0.5)
    p.add_argument("-o", "--output", help="directory for the tornado plot (PNG and SVG)")
    _format_arg(p)

    for name, helptext in (("run", "simulate a scenario and print tokens/s"),
                           ("trace", "write a Perfetto/Chrome trace of one decode step")):
        p = sub.add_parser(name, help=helptext, formatter_class=_LazyDefaults)
        p.add_argument("scenario", nargs="?", default=None,
                       help="scenario file or name (default: Llama 3.1 70B on 576 chips)")
        p.add_argument("--model", help="target model name or file")
        p.add_argument("--system", help="system name or file")
        p.add_argument("--chips", type=int, help="use N chips of the system, all active: the "
                                                 "fastest split of them")
        p.add_argument("--tp", type=int, help="pin tensor parallelism (chips per stage)")
        p.add_argument("--batch", type=int)
        p.add_argument("--context", type=int, help="tokens in the KV cache at the measured step")
        p.add_argument("--context-window", type=int,
                       help="KV cache reserved per sequence (default: the context)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any scenario field by dotted path (repeatable)")
        if name == "run":
            p.add_argument("--fidelity", choices=("fast", "full"))
            p.add_argument("--draft", help="speculate with this draft model (name or file)")
            p.add_argument("--heads", type=int, help="speculate with K Medusa-style heads")
            p.add_argument("--strategy", choices=strategies,
                           help=strategy_traits.described())
            p.add_argument("--gamma", help="draft length (async: window), or 'auto'")
            p.add_argument("--acceptance",
                           help="constant, preset name, list, mix or file (default: the "
                                "scenario's own; with --draft or --heads on a scenario "
                                f"without one, that of the shipped "
                                f"{DEFAULT_ACCEPTANCE_SCENARIO} scenario, "
                                f"{_DEFAULT_ACCEPTANCE_MARK})")
            p.add_argument("-o", "--output", help="directory for the scenario and result")
            _format_arg(p)
        else:
            p.add_argument("-o", "--output", required=True,
                           help="trace file (.json or .json.gz)")
            p.add_argument("--chip-range", help="only chips A:B (e.g. 0:16)")
            p.add_argument("--block-range", help="only placement blocks A:B (0 = embedding, "
                                                 "then each layer's attention, FFN and down "
                                                 "projection, then the head)")
            p.add_argument("--layer-range", help="only transformer layers A:B (0-based)")

    p = sub.add_parser("serve", help="many users on one deployment: per-user vs system "
                                     "tokens/s, time to first token, J and $ per token")
    p.add_argument("scenario", nargs="?", default=None,
                   help="scenario file or name (default: Llama 3.1 70B on 576 chips)")
    p.add_argument("--model", help="target model name or file")
    p.add_argument("--system", help="system name or file")
    p.add_argument("--chips", type=int, help="use the first N chips of the system")
    p.add_argument("--context-window", type=int,
                   help="KV cache reserved per user with --kv window (default: the context)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any scenario field by dotted path (repeatable)")
    p.add_argument("--strategies", default=None,
                   help="comma-separated speculation strategies to compare with none: "
                        f"{', '.join(strategies)} (default: the scenario's, if "
                        f"it speculates)")
    p.add_argument("--draft", help="draft model for draft and async (name or file)")
    p.add_argument("--heads", type=int, help="K Medusa-style heads for heads")
    p.add_argument("--gamma", help="draft length (async: window), or 'auto'")
    p.add_argument("--acceptance", help="constant, preset name, list, mix or file")
    p.add_argument("--contexts", default="chat",
                   help="context lengths of the traffic: N, A,B,C, chat (1k prompt + 1k "
                        "output, the default), uniform:LO:HI or exponential:MEAN")
    p.add_argument("--kv", choices=("paged", "window"), default="paged",
                   help="paged KV (each user holds its context in pages) or a whole window "
                        "reserved per user (default: paged)")
    p.add_argument("--page-tokens", type=int, default=None,
                   help="tokens per KV page (default 64, an assumption)")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="prompt length for ttft_ms (default 1000)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="widest batch (users per step) tried (default 64)")
    p.add_argument("-o", "--output", help="directory for the frontier plot and serve.json")
    _format_arg(p)
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
    import re

    from lpusim.config.yamlio import parse_scalar
    ov: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(Issue("command line", None, None, "--set",
                                    f"expected KEY=VALUE, got {item!r}"))
        k, v = item.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", k.strip(), flags=re.ASCII):
            raise ConfigError(Issue("command line", None, None, "--set",
                                    f"{k.strip()!r} is not a dotted field name "
                                    f"(e.g. system.chip.clock_hz)"))
        ov[k.strip()] = parse_scalar(v)
    for flag, key, kind in (("--model", "model", "model"), ("--system", "system", "system")):
        val = getattr(args, key, None)
        if val is not None:
            ov[key] = _ref(flag, kind, val)
    for key in ("chips", "batch", "context", "context_window", "fidelity"):
        val = getattr(args, key, None)
        if val is not None:
            ov[key] = val
    if getattr(args, "tp", None) is not None:
        ov["tensor_parallel"] = args.tp
    spec: dict[str, Any] = {}
    if getattr(args, "draft", None):
        spec["strategy"] = "draft"
        spec["draft_model"] = _ref("--draft", "model", args.draft)
    if getattr(args, "heads", None) is not None:
        spec["strategy"] = "heads"
        spec["heads"] = args.heads
    if getattr(args, "strategy", None) is not None:
        spec["strategy"] = args.strategy
    if getattr(args, "gamma", None) is not None:
        g = args.gamma
        spec["gamma"] = g if g == "auto" else _int_flag("--gamma", g, auto=True)
    if getattr(args, "acceptance", None) is not None:
        a = args.acceptance
        try:
            spec["acceptance"] = float(a)
        except ValueError:
            spec["acceptance"] = _acceptance_flag(a)
    if spec:
        ov["speculation"] = spec
    return ov


def _acceptance_flag(text: str) -> str:
    """A non-numeric --acceptance (preset, list, mix or trace file), checked now so that its
    errors name the flag; a trace file becomes an absolute path (a scenario resolves relative
    paths against its own directory, the command line against the working directory)."""
    from lpusim.speculative import parse_acceptance
    try:
        parse_acceptance(text)
    except ValueError as e:
        raise ConfigError(Issue("command line", None, None, "--acceptance", str(e))) from None
    p = Path(text)
    return str(p.resolve()) if p.is_file() else text


def _ref(flag: str, kind: str, value: str, *, absolute: bool = True) -> str:
    """A spec named on the command line, as an absolute path (or an error naming the flag)."""
    from lpusim.config import resolve_ref
    try:
        p = resolve_ref(kind, value)
        return str(p.resolve() if absolute else p)
    except ConfigError as e:
        raise ConfigError(Issue("command line", None, None, flag,
                                e.issues[0].message)) from None


def _int_flag(flag: str, text: str, *, auto: bool = False) -> int:
    try:
        return int(text)
    except ValueError:
        what = "a whole number or 'auto'" if auto else "a whole number"
        raise ConfigError(Issue("command line", None, None, flag,
                                f"expected {what}, got {text!r}")) from None


def _scenario(args: argparse.Namespace) -> Any:
    from lpusim import api
    ov = _overrides(args)
    spec_ov = ov.pop("speculation", None) or {}
    ov.update({f"speculation.{k}": v for k, v in spec_ov.items()})
    ref = _given("SCENARIO", args.scenario) or api.DEFAULT_SCENARIO
    if spec_ov and "acceptance" not in spec_ov:
        acc = _base_acceptance(ref)
        if acc is not None:
            ov["speculation.acceptance"] = acc
    if ov and not any(k == "name" or k.startswith("name.") for k in ov):
        from lpusim.config.load import resolve_ref
        from lpusim.config.yamlio import load_document
        doc = load_document(resolve_ref("scenario", ref)).data
        if isinstance(doc.get("name"), str):
            ov["name"] = _derived_name(doc, ov)
    return api.load_scenario(ref, ov)


DEFAULT_ACCEPTANCE_SCENARIO = "llama-3.1-70b-specdec"
_DEFAULT_ACCEPTANCE_MARK = "<default acceptance>"


class _LazyDefaults(argparse.HelpFormatter):
    """Fills in help text read from the shipped files only when help is shown (building the
    parser for every command must not parse YAML)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text and _DEFAULT_ACCEPTANCE_MARK in text:
            text = text.replace(_DEFAULT_ACCEPTANCE_MARK, str(_default_acceptance()))
        return text


def _default_acceptance() -> Any:
    """The acceptance of the shipped speculative scenario: what `--draft`/`--heads` use
    when neither the command line nor the scenario gives one."""
    from lpusim.config.load import find
    from lpusim.config.yamlio import load_document
    p = find("scenario", DEFAULT_ACCEPTANCE_SCENARIO)
    try:
        spec = load_document(p).data.get("speculation") if p else None
    except ConfigError:
        return None
    return spec.get("acceptance") if isinstance(spec, dict) else None


def _base_acceptance(ref: str) -> Any:
    """None when the scenario sets its own acceptance, else the documented default."""
    from lpusim.config.load import resolve_ref
    from lpusim.config.yamlio import load_document
    spec = load_document(resolve_ref("scenario", ref)).data.get("speculation")
    if isinstance(spec, dict) and "acceptance" in spec:
        return None
    return _default_acceptance()


def _derived_name(doc: dict[str, Any], ov: dict[str, Any]) -> str:
    """The name of an overridden run, so that it does not pass for the scenario it started
    from: `MODEL-SYSTEM` when either was replaced, then `+key=value` per other change."""
    name = str(doc["name"])
    if "model" in ov or "system" in ov:
        model = Path(str(ov.get("model", doc.get("model", "model")))).stem
        system = Path(str(ov.get("system", doc.get("system", "system")))).stem
        name = f"{model}-{system}"
    for k, v in ov.items():
        if k in ("model", "system"):
            continue
        if k == "speculation.draft_model":
            v = Path(str(v)).stem
        elif k == "speculation.acceptance" and isinstance(v, str) and Path(v).is_file():
            v = Path(v).name
        name += f"+{k.removeprefix('speculation.')}={v}"
    return name


def _given(what: str, value: str | None) -> str | None:
    """A file or name argument as given; an empty one is an error, not 'use the default'."""
    if value is not None and not value.strip():
        raise ConfigError(Issue("command line", None, None, what,
                                "is empty; give a file or a shipped name (or leave it out "
                                "for the default)"))
    return value


def _spec_file(ref: str) -> str:
    """A spec named on the command line: a path as given, else a shipped name of any kind
    (what `run` accepts for a scenario, `--model` for a model, ...)."""
    _given("FILE", ref)
    if Path(ref).exists():
        return ref
    from lpusim.config.load import KINDS, find
    for kind in KINDS:
        p = find(kind, ref)
        if p is not None:
            return str(p)
    return ref                  # the reader reports 'no such file'


def _is_sweep(path: str) -> bool:
    from lpusim.config.yamlio import load_document
    return Path(path).is_file() and load_document(path).data.get("kind") == "sweep"


def cmd_validate(args: argparse.Namespace) -> int:
    from lpusim.config import load
    from lpusim.speculative.checks import SCENARIO_CHECKS
    from lpusim.sweep import load_sweep
    issues: list[Issue] = []
    for f in args.files:
        try:
            path = _spec_file(f)
            if _is_sweep(path):
                load_sweep(path)
            else:
                load(path, checks=SCENARIO_CHECKS)
        except ConfigError as e:
            issues.extend(e.issues)
            continue
        print(f"{f}: ok", flush=True)
    if issues:
        raise ConfigError(issues)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from lpusim import api
    path = _spec_file(args.file)
    if _is_sweep(path):
        from lpusim.sweep import load_sweep
        sw = load_sweep(path)
        emit({"kind": "sweep", "name": sw.name, "base": str(sw.base), "points": sw.size,
              "axes": {k: [str(v) for v in vals] for k, vals in sw.axes}}, args.format)
        return 0
    emit(api.describe(path), args.format)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from lpusim import api
    from lpusim.config import load_chip, load_model
    for flag in ("context", "batch", "tp"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(Issue("command line", None, None, f"--{flag}",
                                    f"must be at least 1, got {getattr(args, flag)}"))
    for flag, top in (("context", 10**8), ("batch", 65_536), ("tp", 4096)):  # as scenarios
        if getattr(args, flag) is not None and getattr(args, flag) > top:
            raise ConfigError(Issue("command line", None, None, f"--{flag}",
                                    f"must be at most {top}, got {getattr(args, flag)}"))
    if args.chips is not None:
        if args.chips < 1:
            raise ConfigError(Issue("command line", None, None, "--chips",
                                    f"must be at least 1, got {args.chips}"))
        ov: dict[str, Any] = {"model": _ref("--model", "model", args.model),
                              "context": args.context, "batch": args.batch,
                              "chips": args.chips}
        if args.system:
            ov["system"] = _ref("--system", "system", args.system)
        if args.context_window is not None:
            ov["context_window"] = args.context_window
        sc = api.load_scenario(api.DEFAULT_SCENARIO, ov)
        emit(api.plan_chips(sc, args.chips, args.tp), args.format)
        return 0
    model = load_model(_ref("--model", "model", args.model, absolute=False))
    chip = load_chip(_ref("--chip", "chip", args.chip, absolute=False))
    from lpusim.report.tables import plan_table
    emit(api.plan(model, chip, context=args.context, batch=args.batch, tp=args.tp),
         args.format, render=plan_table)
    return 0


@_all_or_none
@_with_progress
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
    from lpusim.report.tables import run_table
    emit(data, args.format, render=run_table)
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
        tokens = acc.expected_tokens(g)
        s = speedup(acc, g, c)
    except ValueError as err:
        raise ConfigError(Issue("command line", None, None, "--gamma", str(err))) from None
    out = {"acceptance": acc.describe(), "cost_ratio": c, "gamma": g,
           "expected_tokens_per_pass": tokens, "speedup": s, "optimal_gamma": best_g,
           "optimal_speedup": best_s}
    if args.pipeline_stages is not None:
        from lpusim.speculative.asynchronous import evaluate_async
        stages = args.pipeline_stages
        if not 1 <= stages <= 10**6:
            raise ConfigError(Issue("command line", None, None, "--pipeline-stages",
                                    f"must be between 1 and 1000000, got {stages}"))
        # one target step = 1; a run of window 1 costs one step; runs at least 1/stages apart
        r = evaluate_async(acc, 1, c, 1.0, 0.0, 1.0 / stages, clock_hz=1.0)
        out.update({"pipeline_stages": stages, "async_speedup": r.tokens_per_second})
    emit(out, args.format)
    return 0


def emit_rows(rows: list[dict[str, Any]], fmt: str, out: Any = None, render: Any = None
              ) -> None:
    """Print a list of flat records as an aligned table (or `render`'s), a JSON list or
    CSV."""
    out = out or sys.stdout
    if fmt == "table" and render is not None:
        out.write(render(rows))
        return
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


@_with_progress
def cmd_sweep(args: argparse.Namespace) -> int:
    from lpusim.sweep import dask_executor, load_sweep, run_sweep, stale_rows
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(Issue("command line", None, None, "--workers",
                                f"must be between 1 and {MAX_WORKERS} (4 x the "
                                f"{os.cpu_count() or 1} cores), got {args.workers}"))
    from lpusim import progress
    spec = load_sweep(args.file)
    stale = stale_rows(spec, args.output)
    if stale:
        print(f"{args.output}: {stale} rows were computed from another base scenario or "
              "lpusim version; recomputing them", file=sys.stderr)
    ex = dask_executor(args.scheduler) if args.scheduler else None
    with progress.bar(spec.size, "sweep", "point") as bar:
        rows = run_sweep(spec, args.output, workers=args.workers, executor=ex,
                         progress=lambda done, _total: bar.update(done - bar.n))
    bad = sum(1 for r in rows if "error" in r)
    print(f"{args.output}: {len(rows)} points ({bad} infeasible)", file=sys.stderr)
    return 0


@_with_progress
def cmd_compare(args: argparse.Namespace) -> int:
    from lpusim import api
    from lpusim.report.tables import compare_table
    emit_rows(api.compare([api.load_scenario(str(_given('SCENARIO', s)))
                           for s in args.scenarios]),
              args.format, render=compare_table)
    return 0


@_all_or_none
def cmd_report(args: argparse.Namespace) -> int:
    from lpusim import api
    dest = api.report(args.results, args.output)
    print(f"wrote {dest}", file=sys.stderr)
    return 0


@_all_or_none
@_with_progress
def cmd_calibrate(args: argparse.Namespace) -> int:
    from lpusim import calibrate as cal
    if args.hypothesis is not None:
        cal.hypothesis(args.hypothesis)         # an unknown name fails before any work
    fit = cal.calibrate(args.hypothesis)
    emit_rows(cal.summary_rows(fit), args.format)
    chosen = fit.report(fit.chosen)
    print(f"chosen: {fit.chosen} (mean leave-one-out error "
          f"{chosen.mean_abs_loo_percent:.1f}%)" + "".join(f"; {n}" for n in fit.notes),
          file=sys.stderr)
    if not args.dry_run:
        for dest in cal.write_calibrated(fit, args.output):
            print(f"wrote {dest}", file=sys.stderr)
    return 0


def cmd_validate_published(args: argparse.Namespace) -> int:
    from lpusim import calibrate as cal
    if args.hypotheses:
        emit_rows(cal.hypotheses_table(cal.calibrate()), args.format)
        return 0
    emit_rows(cal.validate_published(), args.format)
    return 0


@_all_or_none
@_with_progress
def cmd_sensitivity(args: argparse.Namespace) -> int:
    from lpusim import calibrate as cal
    if not 0 < args.delta < 1:
        raise ConfigError(Issue("command line", None, None, "--delta", "must be in (0, 1)"))
    rows = cal.sensitivity(_given("--scenario", args.scenario) or cal.ANCHOR_SCENARIO,
                           args.delta)
    if args.output:
        from lpusim.report.plots import tornado
        tornado(rows, Path(args.output))
    emit_rows(rows, args.format)
    return 0


@_all_or_none
def cmd_trace(args: argparse.Namespace) -> int:
    from lpusim.atomic import write_atomic
    from lpusim.compiler import compile_program
    from lpusim.report.trace import trace_json
    from lpusim.sim import simulate
    from lpusim.step import decode_graph
    chips = _range("--chip-range", args.chip_range)
    blocks = _range("--block-range", args.block_range)
    layers = _range("--layer-range", args.layer_range)
    if layers is not None and blocks is not None:
        raise ConfigError(Issue("command line", None, None, "--layer-range",
                                "give --layer-range or --block-range, not both"))
    from lpusim.config.specs import GpuSystemSpec, SystemSpec
    from lpusim.deploy import resolve
    sc = _scenario(args)
    if isinstance(sc.system, GpuSystemSpec):
        raise ConfigError(Issue("command line", None, None, "--system",
                                f"{sc.system.name} is a GPU system: traces are of LPU programs"))
    sc, _dep = resolve(sc)
    assert isinstance(sc.system, SystemSpec)
    g = decode_graph(sc.model, sc.system, batch=sc.batch, context=sc.context,
                     precision=sc.precision, context_window=sc.context_window,
                     expert_parallel=bool(sc.expert_parallel))
    if layers is not None:     # a layer's blocks: its attention, FFN (and down projection)
        idx = [i for i, b in enumerate(g.blocks) if b.startswith("layer")
               and int(b.split(".")[0][5:]) in layers]
        blocks = range(idx[0], idx[-1] + 1) if idx else range(0)
    prog = compile_program(g, sc.system, chips=sc.chips_used, tp=sc.tp, name=sc.name)
    res = simulate(prog)
    write_atomic(args.output, trace_json(res, chips=chips, blocks=blocks))
    print(f"wrote {args.output}: {len(prog.instructions)} instructions, "
          f"{len(prog.transfers)} transfers, step {res.latency_cycles} cycles")
    return 0


@_all_or_none
def cmd_serve(args: argparse.Namespace) -> int:
    from lpusim import api
    from lpusim.serve import strategy_names
    for flag in ("page_tokens", "prompt_tokens", "max_batch", "chips", "context_window",
                 "heads"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise ConfigError(Issue("command line", None, None, f"--{flag.replace('_', '-')}",
                                    f"must be at least 1, got {v}"))
    if args.max_batch is not None and args.max_batch > 65_536:     # as scenarios' batch
        raise ConfigError(Issue("command line", None, None, "--max-batch",
                                f"must be at most 65536, got {args.max_batch}"))
    strategies: list[str] = []
    known = strategy_names()
    if args.strategies is not None:
        for s in (x.strip() for x in args.strategies.split(",")):
            if s not in known:
                raise ConfigError(Issue("command line", None, None, "--strategies",
                                        f"unknown strategy {s!r} (one of "
                                        f"{', '.join(known)})"))
            strategies.append(s)
    sc = _scenario(args)
    if args.strategies is None and sc.speculation is not None:
        strategies = [sc.speculation.strategy]
    opts: dict[str, Any] = {"contexts": _contexts_flag(args.contexts),
                            "paged": args.kv == "paged", "strategies": strategies}
    for flag in ("page_tokens", "prompt_tokens", "max_batch"):
        if getattr(args, flag) is not None:
            opts[flag] = getattr(args, flag)
    if args.prompt_tokens is not None and args.prompt_tokens >= sc.window:
        raise ConfigError(Issue("command line", None, None, "--prompt-tokens",
                                f"must be below the window of {sc.window} tokens"))
    try:
        from lpusim.serve import parse_contexts
        parse_contexts(opts["contexts"], sc.window)
    except ValueError as e:
        raise ConfigError(Issue("command line", None, None, "--contexts", str(e))) from None
    result = api.serve(sc, **opts)
    data = result.to_dict()
    if args.output:
        from lpusim.atomic import write_atomic
        out = Path(args.output)
        write_atomic(out / "serve.json", json.dumps(data, indent=2) + "\n")
        api.plot_frontier(result, out)
    _emit_serve(data, args.format)
    return 0


def _contexts_flag(text: str) -> Any:
    t = text.strip()
    return int(t) if t.isdigit() else t


SERVE_COLUMNS = ("users", "batch", "groups", "tokens_per_second_per_user",
                 "system_tokens_per_second", "tokens_per_second_per_chip", "ttft_ms",
                 "joules_per_token", "usd_per_million_output_tokens", "limit")


def _emit_serve(data: dict[str, Any], fmt: str, out: Any = None) -> None:
    """A serve result: JSON as is; CSV one row per frontier point (every strategy); a table
    per strategy with the list price beside it."""
    out = out or sys.stdout
    if fmt == "json":
        emit(data, "json", out)
        return
    price = data["list_price_usd_per_million_output_tokens"]
    lines = {"none": data["frontier"], **data["speculation"]}
    if fmt == "csv":
        rows = [{"strategy": name, **{k: v for k, v in p.items() if k != "strategy"},
                 "list_price_usd_per_million_output_tokens": price}
                for name, pts in lines.items() for p in pts]
        emit_rows(rows, "csv", out)
        return
    ctx = data["contexts"]
    out.write(f"{data['scenario']}: {data['model']} on {data['chips']} chips of "
              f"{data['system']}; contexts {ctx['label']} (mean {ctx['mean_tokens']:.0f}), "
              f"{'paged' if data['paged_kv'] else 'window-reserved'} KV "
              f"({data['kv_tokens_per_user']:.0f} tokens per user), "
              f"ttft at a {data['prompt_tokens']}-token prompt\n")
    for name, pts in lines.items():
        out.write(f"\n{'no speculation' if name == 'none' else 'speculation: ' + name}\n")
        cols = SERVE_COLUMNS + (("speedup_per_user", "gamma") if name != "none" else ())
        emit_rows([{k: ("-" if p.get(k) is None else p.get(k)) for k in cols} for p in pts],
                  "table", out)
        lim = data["limits"].get(name, {})
        if lim:
            out.write(f"pipeline-full limit {lim['pipeline_full_tokens_per_second']:,.0f} "
                      f"tokens/s (largest batch that fits: {lim['largest_batch']})\n")
    for name, err in data.get("errors", {}).items():
        out.write(f"\nspeculation: {name}: not served: {err}\n")
    out.write("\ntime to first token\n")
    emit_rows(data["ttft"], "table", out)
    out.write(f"\ncomparison (a price, not a fit): ${price:.2f} per million output tokens, "
              f"{data['list_price_source']}\n")


COMMANDS = {"validate": cmd_validate, "describe": cmd_describe, "plan": cmd_plan,
            "run": cmd_run, "trace": cmd_trace, "speculate": cmd_speculate,
            "calibrate": cmd_calibrate, "validate-published": cmd_validate_published,
            "sensitivity": cmd_sensitivity, "sweep": cmd_sweep, "compare": cmd_compare,
            "report": cmd_report, "serve": cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit codes: 0 ok, 2 bad input (one line per problem on stderr, no
    traceback), 1 an internal error (a bug: a short message; LPUSIM_DEBUG=1 shows the
    traceback), 130 interrupted."""
    import re

    from lpusim.errors import one_line
    debug = os.environ.get("LPUSIM_DEBUG", "") not in ("", "0")
    parser = build_parser()
    # argparse prints the whole usage before its error; keep one line per problem instead
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = parser.parse_args(argv)
    except SystemExit as e:
        if not e.code:
            sys.stderr.write(captured.getvalue())
            return 0
        lines = [ln for ln in captured.getvalue().splitlines() if ln.strip()]
        m = re.match(r"(?P<prog>.*?): error: (?P<msg>.*)$", lines[-1] if lines else "")
        prog, msg = (m.group("prog"), m.group("msg")) if m else ("lpusim", "bad arguments")
        arg = re.match(r"argument (?P<flag>[^:]+): (?P<msg>.*)$", msg)
        issue = (Issue("command line", None, None, arg.group("flag"), arg.group("msg"))
                 if arg else Issue("command line", None, None, "", msg))
        print(f"lpusim: error: {issue} (see '{prog} --help')", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        out = getattr(args, "output", None)
        if out:
            _check_output(args.command, out)
        with _entry_point_settings():
            return COMMANDS[args.command](args)
    except ConfigError as e:
        shown = e.issues[:MAX_ISSUES_SHOWN]
        for issue in shown:
            print(f"lpusim: error: {issue}", file=sys.stderr)
        if len(e.issues) > len(shown):
            print(f"lpusim: error: ... and {len(e.issues) - len(shown)} more problems",
                  file=sys.stderr)
        return EXIT_BAD_INPUT
    except LpusimError as e:
        if debug:
            raise
        print(f"lpusim: error: {one_line(str(e), 2000)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lpusim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    # below: exceptions no lpusim code raised on purpose. Unreadable or unwritable paths and
    # input too large or too deep to process are still bad input (2); anything else,
    # ValueError included (the library raises typed InputErrors for bad input), is a bug (1).
    except OSError as e:
        if debug:
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"lpusim: error: {one_line(where + (e.strerror or str(e)), 600)}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RecursionError, MemoryError) as e:
        if debug:
            raise
        what = {RecursionError: "input nested too deeply",
                MemoryError: "out of memory (input too large?)"}[type(e)]
        print(f"lpusim: error: {what}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:
        if debug:
            raise
        print(f"lpusim: internal error: {type(e).__name__}: {one_line(str(e), 300)} "
              f"(a bug in lpusim; LPUSIM_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _entry_point_settings() -> Iterator[None]:
    """Process-wide settings the CLI (an entry point) makes for one command, and undoes:
    the on-disk step cache from LPUSIM_CACHE_DIR (the library reads no environment variable
    for it), the processes a search may compute with from LPUSIM_JOBS (`lpusim.parallel`;
    by default the CPUs this process may run on), and the cyclic garbage collector paused (a
    compile allocates 10^5-10^6 objects that all stay alive; rescanning them costs 20-30% of
    a full-fidelity step)."""
    from lpusim import caches, collector, parallel
    from lpusim.compiler import set_pass_checks
    jobs = _jobs_from_environment()
    was_disk = caches.disk_dir()
    caches.set_disk_dir(os.environ.get("LPUSIM_CACHE_DIR") or None)
    was_jobs = parallel.set_jobs(jobs)
    # the compiler's invariant checks between passes (lpusim.compiler.checks), for debugging
    was_checks = set_pass_checks(os.environ.get("LPUSIM_CHECK_PASSES", "") not in ("", "0"))
    try:
        with collector.paused():
            yield
    finally:
        set_pass_checks(was_checks)
        parallel.set_jobs(was_jobs)
        caches.set_disk_dir(was_disk)


def _jobs_from_environment() -> int:
    """LPUSIM_JOBS, a whole number of processes of at least 1 (unset or empty: the usable
    CPUs); anything else is bad input."""
    from lpusim import parallel
    text = os.environ.get("LPUSIM_JOBS", "").strip()
    if not text:
        return parallel.usable_cpus()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ConfigError(Issue("environment", None, None, "LPUSIM_JOBS",
                                f"expected a whole number of processes of at least 1, got "
                                f"{text!r}"))
    return int(text)


MAX_ISSUES_SHOWN = 20
# commands whose -o/--output is a directory (the others write one file)
_OUTPUT_DIRS = ("run", "report", "sensitivity", "calibrate", "serve")


def _check_output(command: str, output: str) -> None:
    """Reject an output path that cannot be written before any work is done, so a bad path
    is a one-line error and not a crash after minutes of simulation with nothing saved. Only
    looks (never opens or truncates anything): a FIFO is refused without blocking, and a sweep
    refuses to append to an existing file that is not an lpusim results file."""
    from lpusim.atomic import check_output
    bad = check_output(output, directory=command in _OUTPUT_DIRS)
    if bad:
        raise ConfigError(Issue("command line", None, None, "--output", f"{output!r} {bad}"))
    if command == "sweep" and Path(output).is_file():
        from lpusim.results import read_results
        try:
            read_results(output)
        except ConfigError as e:
            raise ConfigError([Issue("command line", None, None, "--output",
                                     f"{output!r} exists and is not an lpusim results file; "
                                     f"refusing to append to it"), *e.issues]) from None


def entry() -> None:
    """The `lpusim` command (and `python -m lpusim.cli`): `main` for a process that ends with
    it. The collector is paused from the start and left so: re-enabling it at the end would
    first rescan everything the command made, and Python's shutdown then collects again
    (0.1-0.3 s a command). `main` itself leaves the collector as it found it."""
    import gc
    gc.disable()
    leave(main())


def leave(code: int) -> NoReturn:
    """End the process with exit status `code`: the exit handlers run (atexit: temporary files
    removed, a pool's workers joined), standard output and error are flushed, and the process
    stops without tearing down every module and object the command made, which only frees
    memory (20-30 ms after a 70B step). While a thread other than the main one still works
    (a non-daemon thread, say a Dask client's), Python's own shutdown waits for it instead."""
    import atexit
    import threading
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()     # CPython's own call at shutdown; it clears what it ran
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):   # the reader is gone, or the stream closed
            pass
        except OSError as e:                    # output lost (a full disk): bad, as in main
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"lpusim: error: {e.strerror or e}\n")
                sys.stderr.flush()
            code = code or EXIT_BAD_INPUT
    os._exit(code)


if __name__ == "__main__":
    entry()
