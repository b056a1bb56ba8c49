"""Calibration: named mechanisms fitted jointly on the training rows, chosen by leave-one-out.

The training set is the `use: fit` rows of `lpusim/data/published.yaml` (three deployments).
A *hypothesis* is a set of mechanisms: which unpublished constants are fitted (at most three,
each within the bounds the system file's `calibration` section gives with their sources), and
structural settings it assumes (attention compiled for the whole context window; spare nodes
in each rack). Every constant a hypothesis does not fit sits at its nominal value, so a fit
never depends on what the system file held before.

A fit minimises the sum of squared errors in log tokens/s over its rows, within the bounds.
Each mechanism is a fixed latency on the step's chain, so the step time is close to affine in
the constants: the fit linearises every row's simulated step time around the current point
(one simulation per row and constant), solves the bounded least squares of that surrogate, and
re-simulates at the solution until the surrogate agrees to 0.01%. Times are rounded to whole
nanoseconds and counts to integers, so the result is the same on every run.

Each hypothesis is also fitted on every pair of rows and asked to predict the third: its
leave-one-out (LOO) error. `calibrate` chooses the hypothesis with the smallest mean LOO
error (not the smallest residual), preferring fewer constants on ties, and never a catch-all.
Every other published figure is a prediction (`validate_published`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpusim import api, parallel, progress, strategy_traits
from lpusim.atomic import write_atomic
from lpusim.config.load import resolve_ref
from lpusim.config.specs import SystemSpec
from lpusim.errors import ConfigError, Issue
from lpusim.published import PublishedRow, load_published
from lpusim.runner import dotted_get
from lpusim.speculative.theory import least_acceptance

ANCHOR_SCENARIO = "llama-3.1-70b-groqrack-576"
SPECDEC_SCENARIO = "llama-3.1-70b-specdec"
# the shipped systems of the calibrated machine: all carry the fitted constants
CALIBRATED_SYSTEMS = ("groqrack-576", "groqnode-8", "groqrack-2304", "groqrack-4608")


@dataclass(frozen=True)
class Constant:
    """A fittable constant: its short name (as in the calibration bounds) and system field."""

    name: str
    field: str          # dotted path in the system spec
    unit: str           # "ps" (a time) or "" (a count)
    what: str


CONSTANTS = {c.name: c for c in (
    Constant("collective_latency", "sync.collective_latency_ps", "ps",
             "fixed cost of every collective (all-reduce, gather, broadcast, hand-off)"),
    Constant("layer_barrier", "sync.layer_barrier_ps", "ps",
             "a barrier at the start of every transformer layer"),
    Constant("deskew", "sync.deskew_per_stage_ps", "ps",
             "realigning a stage's chips when its input arrives (counter physics)"),
    Constant("weight_load_streams", "chip.mxm.weight_load_streams", "",
             "SRAM-to-MXM weight feed (streams per plane)"),
)}


@dataclass(frozen=True)
class Hypothesis:
    name: str
    fitted: tuple[str, ...]                      # constant names
    settings: tuple[tuple[str, Any], ...] = ()   # structural system settings it assumes
    what: str = ""
    catch_all: bool = False                      # shown for comparison, never chosen
    bounds: tuple[tuple[str, int, int], ...] = ()  # (constant, low, high) replacing the file's

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fitted": list(self.fitted),
                "settings": dict(self.settings), "what": self.what,
                "catch_all": self.catch_all}


_WINDOW = ("compiler.attention_span", "window")
_CONTEXT = ("compiler.attention_span", "context")
_SPARES = ("topology.spare_nodes_per_rack", 1)
_NO_SPARES = ("topology.spare_nodes_per_rack", 0)

HYPOTHESES = (
    Hypothesis("collective+window", ("collective_latency",), (_WINDOW, _NO_SPARES),
               "a fixed cost per collective; attention compiled for the whole window"),
    Hypothesis("collective", ("collective_latency",), (_CONTEXT, _NO_SPARES),
               "a fixed cost per collective; attention over the tokens in the cache"),
    Hypothesis("collective+window+spares", ("collective_latency",), (_WINDOW, _SPARES),
               "as collective+window, with one spare node per rack (576 installed, 512 used)"),
    Hypothesis("barrier+window", ("layer_barrier",), (_WINDOW, _NO_SPARES),
               "a barrier per layer; attention compiled for the whole window"),
    Hypothesis("collective+barrier+window", ("collective_latency", "layer_barrier"),
               (_WINDOW, _NO_SPARES), "a cost per collective and a barrier per layer"),
    Hypothesis("collective+feed+window", ("collective_latency", "weight_load_streams"),
               (_WINDOW, _NO_SPARES), "a cost per collective; the weight feed rate fitted"),
    Hypothesis("collective+deskew+window", ("collective_latency", "deskew"),
               (_WINDOW, _NO_SPARES), "a cost per collective; the deskew within its physics"),
    Hypothesis("deskew-catch-all", ("deskew",), (_CONTEXT, _NO_SPARES),
               "the first model: one per-stage term up to 100 us absorbs everything",
               catch_all=True, bounds=(("deskew", 1_000, 100_000_000),)),
)


def hypothesis(name: str) -> Hypothesis:
    for h in HYPOTHESES:
        if h.name == name:
            return h
    names = ", ".join(h.name for h in HYPOTHESES)
    raise ConfigError(Issue("command line", None, None, "--hypothesis",
                            f"unknown hypothesis {name!r}; expected one of {names}"))


def training_rows() -> tuple[PublishedRow, ...]:
    return tuple(r for r in load_published() if r.use == "fit")


# ----------------------------------------------------------------------------- fitting


def _system() -> SystemSpec:
    return api.load_system(str(resolve_ref("system", CALIBRATED_SYSTEMS[0])))


def _ranges(h: Hypothesis, system: SystemSpec) -> list[tuple[int, int, int]]:
    cal = system.calibration
    if cal is None:
        raise ConfigError(Issue(system.name, None, None, "calibration",
                                "the system has no calibration bounds to fit within"))
    own = {n: (lo, hi) for n, lo, hi in h.bounds}
    out = []
    for name in h.fitted:
        lo, hi, nom = cal.bounds(name)
        lo, hi = own.get(name, (lo, hi))
        out.append((lo, hi, nom))
    return out


def base_overrides(h: Hypothesis, system: SystemSpec) -> dict[str, Any]:
    """System overrides of a hypothesis: its settings, and every fittable constant it does not
    fit at its nominal value."""
    cal = system.calibration
    assert cal is not None
    ov: dict[str, Any] = {f"system.{k}": v for k, v in h.settings}
    for name, c in CONSTANTS.items():
        if name not in h.fitted:
            ov[f"system.{c.field}"] = _value(c, cal.bounds(name)[2])
    return ov


def _value(c: Constant, x: float) -> Any:
    return f"{int(x)}ps" if c.unit == "ps" else int(x)


def _round(c: Constant, x: float) -> int:
    return int(round(x / 1000) * 1000) if c.unit == "ps" else int(round(x))


def row_tokens_per_second(row: PublishedRow, ov: dict[str, Any]) -> float:
    """Simulated tokens/s of a published row's deployment with these overrides."""
    sc = api.load_scenario(row.scenario, {**row.overrides(), **ov})
    return api.run(sc).tokens_per_second


def _latency(row: PublishedRow, h: Hypothesis, base: dict[str, Any], x: tuple[int, ...]
             ) -> float:
    ov = dict(base)
    for name, v in zip(h.fitted, x, strict=True):
        c = CONSTANTS[name]
        ov[f"system.{c.field}"] = _value(c, v)
    return 1e6 / row_tokens_per_second(row, ov)


def _solve(a0: np.ndarray, g: np.ndarray, x0: np.ndarray, target: np.ndarray,
           lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Bounded least squares of log(1e6 / L) - log(target) for the affine surrogate
    L(x) = a0 + g (x - x0), by projected Gauss-Newton with step halving."""
    def res(x: np.ndarray) -> np.ndarray:
        lat = np.maximum(a0 + g @ (x - x0), 1e-9)
        return np.log(1e6 / lat) - np.log(target)

    x = x0.copy()
    for _ in range(100):
        lat = np.maximum(a0 + g @ (x - x0), 1e-9)
        jac = -g / lat[:, None]
        r = res(x)
        step = np.linalg.lstsq(jac, -r, rcond=None)[0]
        f0 = float(r @ r)
        t = 1.0
        while t > 1e-6:
            cand = np.clip(x + t * step, lo, hi)
            rc = res(cand)
            if float(rc @ rc) < f0 - 1e-15:
                break
            t /= 2
        else:
            break
        if np.allclose(cand, x, rtol=0, atol=1e-3):
            x = cand
            break
        x = cand
    return x


@dataclass(frozen=True)
class Fit:
    hypothesis: str
    rows: tuple[str, ...]                 # ids of the rows fitted on
    values: dict[str, int]                # constant name -> fitted value (ps, or a count)
    on_bound: dict[str, str]              # constant name -> "low"/"high" when it sits there
    predicted: dict[str, float]           # row id -> tokens/s
    residual_percent: dict[str, float]    # row id -> error of the fit on its own rows


def fit(h: Hypothesis, rows: tuple[PublishedRow, ...]) -> Fit:
    """Fit hypothesis `h` on `rows` (see the module docstring)."""
    system = _system()
    base = base_overrides(h, system)
    rng = _ranges(h, system)
    lo = np.array([r[0] for r in rng], dtype=float)
    hi = np.array([r[1] for r in rng], dtype=float)
    consts = [CONSTANTS[n] for n in h.fitted]
    target = np.array([r.value for r in rows], dtype=float)
    x = lo.copy()
    for _ in range(6):
        xi = tuple(int(v) for v in x)
        a0 = np.array([_latency(r, h, base, xi) for r in rows])
        g = np.zeros((len(rows), len(consts)))
        for j, c in enumerate(consts):
            span = hi[j] - lo[j]
            d = max(span / 8, 1000.0 if c.unit == "ps" else 1.0)
            up = x[j] + d <= hi[j]
            xj = list(xi)
            xj[j] = int(x[j] + d if up else x[j] - d)
            aj = np.array([_latency(r, h, base, tuple(xj)) for r in rows])
            g[:, j] = (aj - a0) / (xj[j] - xi[j])
        new = _solve(a0, g, x, target, lo, hi)
        new = np.array([_round(c, v) for c, v in zip(consts, new, strict=True)], dtype=float)
        new = np.clip(new, lo, hi)
        if np.array_equal(new, x):
            break
        x = new
    x = _best_neighbour(h, rows, base, consts, x, lo, hi, target)
    values = {c.name: int(v) for c, v in zip(consts, x, strict=True)}
    pred = {r.id: 1e6 / _latency(r, h, base, tuple(int(v) for v in x)) for r in rows}
    return Fit(h.name, tuple(r.id for r in rows), values,
               {c.name: ("low" if v <= lo[j] else "high")
                for j, (c, v) in enumerate(zip(consts, x, strict=True))
                if v <= lo[j] or v >= hi[j]},
               pred, {r.id: 100 * (pred[r.id] - r.value) / r.value for r in rows})


def _best_neighbour(h: Hypothesis, rows: tuple[PublishedRow, ...], base: dict[str, Any],
                    consts: list[Constant], x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    target: np.ndarray) -> np.ndarray:
    """The rounded point or one resolution step either side per constant with the lowest
    error: the surrogate's optimum rounded may not be the simulated one's."""
    def sse(p: np.ndarray) -> float:
        lat = np.array([_latency(r, h, base, tuple(int(v) for v in p)) for r in rows])
        e = np.log(1e6 / lat) - np.log(target)
        return float(e @ e)

    best, best_f = x, sse(x)
    for j, c in enumerate(consts):
        q = 1000.0 if c.unit == "ps" else 1.0
        for d in (-q, q):
            p = x.copy()
            p[j] = min(max(p[j] + d, lo[j]), hi[j])
            if np.array_equal(p, x):
                continue
            f = sse(p)
            if f < best_f - 1e-15:
                best, best_f = p, f
    return best


@dataclass(frozen=True)
class HypothesisReport:
    hypothesis: Hypothesis
    fit: Fit
    loo_error_percent: dict[str, float]   # row id -> error predicting it from the others

    @property
    def mean_abs_loo_percent(self) -> float:
        v = list(self.loo_error_percent.values())
        return sum(abs(e) for e in v) / len(v) if v else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"hypothesis": self.hypothesis.to_dict(), "fit": asdict(self.fit),
                "loo_error_percent": self.loo_error_percent,
                "mean_abs_loo_percent": self.mean_abs_loo_percent}


def evaluate_hypothesis(h: Hypothesis, rows: tuple[PublishedRow, ...] | None = None
                        ) -> HypothesisReport:
    """Fit `h` on all training rows, and on each pair to predict the row left out."""
    rows = rows or training_rows()
    full = fit(h, rows)
    loo: dict[str, float] = {}
    if len(rows) > len(h.fitted):
        system = _system()
        base = base_overrides(h, system)
        for r in rows:
            rest = tuple(o for o in rows if o.id != r.id)
            sub = fit(h, rest)
            x = tuple(sub.values[n] for n in h.fitted)
            pred = 1e6 / _latency(r, h, base, x)
            loo[r.id] = 100 * (pred - r.value) / r.value
    return HypothesisReport(h, full, loo)


@dataclass(frozen=True)
class Calibration:
    chosen: str
    reports: tuple[HypothesisReport, ...]
    rows: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def report(self, name: str) -> HypothesisReport:
        return next(r for r in self.reports if r.hypothesis.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "rows": list(self.rows),
                "hypotheses": [r.to_dict() for r in self.reports], "notes": list(self.notes)}


def calibrate(only: str | None = None) -> Calibration:
    """Evaluate every hypothesis (or only `only`) and choose by mean leave-one-out error."""
    rows = training_rows()
    hs = [hypothesis(only)] if only else list(HYPOTHESES)
    # the hypotheses are independent: the next ones are evaluated in forked children meanwhile
    # (lpusim.parallel; the CLI's processes), each as it would be here
    def evaluated(i: int) -> HypothesisReport:
        return evaluate_hypothesis(hs[i], rows)

    with parallel.Ahead(evaluated) as ahead:
        reports = tuple(progress.iterate(ahead.each(range(len(hs))), "calibrate",
                                         "hypothesis", total=len(hs)))
    pool = [r for r in reports if not r.hypothesis.catch_all and r.loo_error_percent] \
        or list(reports)
    chosen = min(pool, key=lambda r: (round(r.mean_abs_loo_percent, 6),
                                      len(r.hypothesis.fitted), r.hypothesis.name))
    notes = []
    for name, side in chosen.fit.on_bound.items():
        notes.append(f"{name} sits on its {side} bound")
    return Calibration(chosen.hypothesis.name, reports, tuple(r.id for r in rows),
                       tuple(notes))


def summary_rows(cal: Calibration) -> list[dict[str, Any]]:
    """One row per hypothesis: constants, residuals, leave-one-out errors, chosen."""
    out = []
    for rep in cal.reports:
        h, f = rep.hypothesis, rep.fit
        row: dict[str, Any] = {"hypothesis": h.name, "chosen": h.name == cal.chosen,
                               "catch_all": h.catch_all}
        for n, v in f.values.items():
            c = CONSTANTS[n]
            key = f"{n}_us" if c.unit == "ps" else n
            row[key] = v / 1e6 if c.unit == "ps" else v
        row["on_bound"] = ", ".join(f"{n} {s}" for n, s in f.on_bound.items()) or "-"
        for rid, e in f.residual_percent.items():
            row[f"residual_percent.{rid}"] = e
        for rid, e in rep.loo_error_percent.items():
            row[f"loo_percent.{rid}"] = e
        row["mean_abs_loo_percent"] = rep.mean_abs_loo_percent
        out.append(row)
    return out


# ----------------------------------------------------------------------------- writing


def _fmt(c: Constant, v: int) -> str:
    if c.unit != "ps":
        return str(v)
    if v == 0:
        return "0ns"
    if v % 1_000_000 == 0:
        return f"{v // 1_000_000}us"
    if v % 1000 == 0:
        return f"{v // 1000}ns"
    return f"{v}ps"


def _set_line(text: str, section: str, key: str, value: str, note: str, where: str) -> str:
    """Replace `key: value` inside top-level `section:` of a YAML text, comment replaced."""
    block = re.search(rf"^{re.escape(section)}:.*\n((?:[ #].*\n|\n)*)", text, re.M)
    if block is None:
        raise ConfigError(Issue(where, None, None, f"{section}.{key}",
                                "section not found in the file; cannot write the fit"))
    body = block.group(1)
    pat = re.compile(rf"^(\s+{re.escape(key)}:\s*)(\S+)(\s*#.*)?$", re.M)
    m = pat.search(body)
    if m is None:
        raise ConfigError(Issue(where, None, None, f"{section}.{key}",
                                "field not found in the file; cannot write the fit"))
    width = max(len(m.group(2)) + len(m.group(3) or "") - len((m.group(3) or "").lstrip()),
                len(value) + 1)
    line = f"{m.group(1)}{value:<{width}}# {note}"
    new_body = body[:m.start()] + line + body[m.end():]
    return text[:block.start(1)] + new_body + text[block.end(1):]


def written_files(cal: Calibration) -> dict[str, str]:
    """The calibrated system files' new texts (path -> text) for the chosen hypothesis."""
    rep = cal.report(cal.chosen)
    h, f = rep.hypothesis, rep.fit
    rows = ", ".join(cal.rows)
    out: dict[str, str] = {}
    for name in CALIBRATED_SYSTEMS:
        path = resolve_ref("system", name)
        text = path.read_text(encoding="utf-8")
        for n, v in f.values.items():
            c = CONSTANTS[n]
            section, key = c.field.split(".", 1)
            if section == "chip":
                raise ConfigError(Issue(str(path), None, None, c.field,
                                        "a chip constant cannot be written into a system "
                                        "file; set it in the chip file"))
            bound = f" ({f.on_bound[n]} bound)" if n in f.on_bound else ""
            text = _set_line(text, section, key, _fmt(c, v),
                             f"fitted by `lpusim calibrate` ({h.name}) on {rows}{bound}",
                             str(path))
        cal_spec = api.load_system(str(path)).calibration
        assert cal_spec is not None
        for n in CONSTANTS:
            c = CONSTANTS[n]
            if n in f.values or c.field.startswith("chip."):
                continue
            section, key = c.field.split(".", 1)
            text = _set_line(text, section, key, _fmt(c, cal_spec.bounds(n)[2]),
                             f"nominal: calibration.{n}_nominal{'_ps' if c.unit == 'ps' else ''} "
                             f"(not fitted in {h.name})", str(path))
        for dotted, v in h.settings:
            section, key = dotted.split(".", 1)
            if section == "topology" and name == "groqnode-8":
                continue
            text = _set_line(text, section, key, str(v),
                             f"hypothesis {h.name}, chosen by `lpusim calibrate` on "
                             "leave-one-out error", str(path))
        fitted = ",".join(CONSTANTS[n].field for n in h.fitted)
        text = _set_line(text, "calibration", "fitted", fitted, "written by `lpusim calibrate`",
                         str(path))
        text = _set_line(text, "calibration", "hypothesis", h.name,
                         "written by `lpusim calibrate`", str(path))
        out[str(path)] = text
    return out


def write_calibrated(cal: Calibration, out_dir: str | None = None) -> list[Path]:
    """Write the chosen fit into the calibrated system files (in place, or into `out_dir`),
    after checking every destination; all files or none."""
    texts = written_files(cal)
    dests = [(Path(out_dir) / Path(p).name if out_dir else Path(p), t) for p, t in texts.items()]
    for d, _t in dests:
        if d.exists() and not d.is_file():
            raise ConfigError(Issue(str(d), None, None, "-o", "exists and is not a file"))
    for d, t in dests:
        write_atomic(d, t)
    return [d for d, _t in dests]


# ----------------------------------------------------------------------------- validation


def _row(what: str, predicted: float | None, published: float | None, source: str, kind: str,
         **extra: Any) -> dict[str, Any]:
    err = None if predicted is None or not published else \
        100 * (predicted - published) / published
    return {"figure": what, "predicted": predicted, "published": published,
            "error_percent": err, "source": source, "use": kind, **extra}


# speculation strategies compared on the speculative endpoint, each with an acceptance preset
# from published measurements (lpusim/speculative/acceptance.py gives each preset's source)
SPEC_STRATEGIES = (
    ("draft", "draft then verify, Llama 3.2 1B drafter at its chat acceptance (drafter-1b-chat)",
     {"speculation.strategy": "draft", "speculation.acceptance": "drafter-1b-chat"}),
    ("async", "asynchronous speculation, same drafter and acceptance",
     {"speculation.strategy": "async", "speculation.acceptance": "drafter-1b-chat"}),
    ("heads-eagle2", "4 heads on the target, EAGLE-2's measured tree on LLaMA3-70B "
                     "(eagle2-llama3-70b-mtbench)",
     {"speculation.strategy": "heads", "speculation.heads": 4,
      "speculation.acceptance": "eagle2-llama3-70b-mtbench"}),
    ("heads-eagle3", "4 heads on the target, EAGLE-3's measured tree on Llama 3.3 70B "
                     "(eagle3-llama3.3-70b-mtbench)",
     {"speculation.strategy": "heads", "speculation.heads": 4,
      "speculation.acceptance": "eagle3-llama3.3-70b-mtbench"}),
)


def implied_strategies() -> list[tuple[str, str]]:
    """(name, label) of the strategies for which the implied constant acceptance is shown:
    those with a drafter (a drafter's acceptance is plausibly one constant; heads are compared
    on measured trees above)."""
    return [(t.name, t.label) for t in strategy_traits.TRAITS.values() if t.needs_drafter]


def validate_published(h: Hypothesis | None = None) -> list[dict[str, Any]]:
    """Predicted vs published figures: every row of the published file (fit rows are the fit's
    residuals), the speculative endpoint under each strategy, the GPU backend's rows
    (`lpusim/data/published_gpu.yaml`, fitted and predicted by `lpusim.gpu`), and
    system-level checks. The last two depend on nothing before them: with a CPU free, a
    forked child makes them meanwhile (`lpusim.parallel`; if it fails they are made here)."""
    ov = base_overrides(h, _system()) | _fitted_overrides(h) if h else {}
    checks = parallel.fork(_check_rows)
    try:
        out = _published_rows(ov)
        got = checks.result() if checks is not None else None
    finally:
        if checks is not None:
            checks.cancel()             # not needed after an error (a no-op once collected)
    return out + (got[0] if got is not None else _check_rows())


def _published_rows(ov: dict[str, Any]) -> list[dict[str, Any]]:
    """`validate_published`'s rows of the published file, under overrides `ov`."""
    out: list[dict[str, Any]] = []
    for row in load_published():
        sc = api.load_scenario(row.scenario, {**row.overrides(), **ov})
        if sc.speculation is None:
            r = api.run(sc)
            out.append(_row(row.figure, r.tokens_per_second, row.value, row.source, row.use,
                            id=row.id, chips=r.chips, context_window=row.context_window))
            continue
        for strategy, how, sov in SPEC_STRATEGIES:
            if row.acceptance is not None:       # the row fixes the acceptance itself
                sov = {k: v for k, v in sov.items() if k != "speculation.acceptance"}
                # (a drafter's): it says nothing about heads
                if not strategy_traits.needs_drafter(str(sov["speculation.strategy"])):
                    continue
            r = api.run(api.load_scenario(row.scenario, {**row.overrides(), **ov, **sov}))
            s = r.speculation or {}
            out.append(_row(f"{row.figure}: {how}, gamma {s.get('gamma')}, verify width "
                            f"{s.get('verify_width')}", r.tokens_per_second, row.value,
                            row.source, row.use, id=f"{row.id}:{strategy}", chips=r.chips,
                            context_window=row.context_window,
                            expected_tokens_per_pass=s.get("expected_tokens_per_pass")))
        if row.acceptance is None:
            for strategy, how in implied_strategies():
                a = implied_acceptance(row.value, strategy, row.scenario,
                                       {**row.overrides(), **ov})
                out.append(_row(f"constant acceptance at which {how} reaches "
                                f"{row.value:,.0f} tokens/s", a, None,
                                "inferred from the model", "inference",
                                id=f"{row.id}:implied-{strategy}",
                                reachable=a is not None))
    return out


def _check_rows() -> list[dict[str, Any]]:
    """The GPU backend's rows (its own fit and prediction) and the system-level checks."""
    from lpusim.gpu.validate import gpu_rows
    return [*({**r, "backend": "gpu"} for r in gpu_rows()), _dragonfly_row(), _allreduce_row()]


def _fitted_overrides(h: Hypothesis) -> dict[str, Any]:
    f = fit(h, training_rows())
    return {f"system.{CONSTANTS[n].field}": _value(CONSTANTS[n], v)
            for n, v in f.values.items()}


def hypotheses_table(cal: Calibration) -> list[dict[str, Any]]:
    """Every hypothesis's predictions of every published row, side by side."""
    out = []
    for rep in cal.reports:
        h = rep.hypothesis
        ov = base_overrides(h, _system()) | {
            f"system.{CONSTANTS[n].field}": _value(CONSTANTS[n], v)
            for n, v in rep.fit.values.items()}
        row: dict[str, Any] = {"hypothesis": h.name, "chosen": h.name == cal.chosen,
                               "mean_abs_loo_percent": rep.mean_abs_loo_percent}
        for pub in load_published():
            sc = api.load_scenario(pub.scenario, {**pub.overrides(), **ov})
            row[pub.id] = api.run(sc).tokens_per_second
        out.append(row)
    return out


def implied_acceptance(tokens_per_second: float, strategy: str = "draft",
                       scenario: str = SPECDEC_SCENARIO,
                       overrides: dict[str, Any] | None = None) -> float | None:
    """The constant acceptance at which `scenario` with `strategy` reaches
    `tokens_per_second` (bisection to 1e-4), or None when no acceptance up to 1 reaches it."""
    def tps(a: float) -> float:
        return api.run(api.load_scenario(scenario, {
            **(overrides or {}), "speculation.acceptance": a,
            "speculation.strategy": strategy,
            "speculation.monte_carlo_passes": 100})).tokens_per_second

    found = least_acceptance(lambda a: tps(a) >= tokens_per_second, tol=1e-4)
    return None if found is None else round(found, 4)


def _dragonfly_row() -> dict[str, Any]:
    """Worst-case one-vector latency between two chips of a 10,440-chip Dragonfly."""
    import dataclasses

    from lpusim.compiler.lower import serialisation_cycles
    from lpusim.compiler.topology import build_link_graph
    from lpusim.config.load import load
    base = load(resolve_ref("system", "groqrack-576"))
    topo = dataclasses.replace(base.topology, racks=145, links_per_node_pair=1,
                               links_per_rack_pair=1, spare_nodes_per_rack=0)
    big = dataclasses.replace(base, topology=topo, name="10,440-chip Dragonfly")
    g = build_link_graph(big)
    cpn, npr = topo.chips_per_node, topo.nodes_per_rack
    worst = 0
    for rack in (1, 72, 144):       # all racks are alike: a sample of far ends
        target = ((rack * npr) + npr - 1) * cpn + cpn - 1
        _a, _b, path = g.route([0], [target])
        cyc = sum(g.latency[lid] for lid in path) + serialisation_cycles(
            big.chip.vector_bytes, big.link_bandwidth_bytes_per_s, big.chip.clock_hz)
        worst = max(worst, cyc)
    us = worst * 1e6 / big.chip.clock_hz
    # not an independent check: the global hop's bounds were derived from this same figure
    return _row("end-to-end latency of one 320 B vector across a 10,440-chip Dragonfly "
                "(us, worst of sampled pairs)", us, 3.0, "ISCA 2022: < 3 us",
                "consistency (the global hop's bounds come from this figure): < 3 us "
                + ("holds" if us < 3.0 else "fails"))


def _allreduce_row() -> dict[str, Any]:
    """A compiled and simulated 8-chip all-reduce of one 320 B vector: the share of its time
    that is hop latency (ISCA 2022: small all-reduces are latency-bound)."""
    import dataclasses

    from lpusim.compiler.schedule import allreduce_program
    from lpusim.sim import metrics_full
    s = api.load_system(str(resolve_ref("system", "groqnode-8")))
    bare = dataclasses.replace(s, sync=dataclasses.replace(s.sync, collective_latency_ps=0))
    m = metrics_full(allreduce_program(bare, tuple(range(8)), 320))
    share = 100 * m.breakdown_cycles["link_latency"] / max(1, m.latency_cycles)
    row = _row("8-chip all-reduce of a 320 B vector, compiled and simulated: hop latency "
               "share of its time (%)", share, 50.0,
               "ISCA 2022: small all-reduces are latency-bound",
               "check: > 50% " + ("holds" if share > 50 else "fails"),
               latency_us=m.latency_us)
    return {**row, "error_percent": None}     # a threshold, not a measurement


# ----------------------------------------------------------------------------- sensitivity

SENSITIVITY = (
    ("SRAM-to-MXM weight feed (streams)", "system.chip.mxm.weight_load_streams", "int"),
    ("per-hop latency (local and global)", ("system.links.local_hop_latency_ps",
                                            "system.links.global_hop_latency_ps"), "time"),
    ("link bandwidth", "system.chip.c2c.lane_rate_bytes_per_s", "bandwidth"),
    ("collective latency (fitted)", "system.sync.collective_latency_ps", "time"),
    ("deskew per stage", "system.sync.deskew_per_stage_ps", "time"),
    ("clock", "system.chip.clock_hz", "frequency"),
)


def sensitivity(scenario: str = ANCHOR_SCENARIO, delta: float = 0.5) -> list[dict[str, Any]]:
    """Tokens/s of `scenario` with each uncertain parameter at (1 - delta) and (1 + delta)."""
    sc = api.load_scenario(scenario)
    if not isinstance(sc.system, SystemSpec):
        raise ConfigError(Issue(sc.file or scenario, None, None, "system",
                                f"{sc.system.name} is a GPU system: sensitivity covers the LPU "
                                "constants (the GPU backend's fit: docs/gpu.md)"))
    base = api.run(sc).tokens_per_second
    out: list[dict[str, Any]] = []
    for label, fields, kind in progress.iterate(SENSITIVITY, "sensitivity", "parameter"):
        names = fields if isinstance(fields, tuple) else (fields,)
        low, high = (api.run_many(
            [api.load_scenario(scenario, {name: _scaled(dotted_get(sc, name), f, kind)
                                          for name in names})
             for f in (1 - delta, 1 + delta)]))
        res = {"low": low.tokens_per_second, "high": high.tokens_per_second}
        out.append({"parameter": label, "scale_low": 1 - delta, "scale_high": 1 + delta,
                    "tokens_per_second_low": res["low"], "tokens_per_second_high": res["high"],
                    "baseline_tokens_per_second": base,
                    "swing_percent": 100 * abs(res["high"] - res["low"]) / base})
    out.sort(key=lambda r: (-r["swing_percent"], r["parameter"]))
    return out



def _scaled(v: int, f: float, kind: str) -> Any:
    if kind == "int":
        return max(1, round(v * f))
    if kind == "time" and v == 0:
        return "0ns"
    unit = {"time": "ps", "bandwidth": "B/s", "frequency": "Hz"}[kind]
    return f"{max(1, round(v * f))}{unit}"
