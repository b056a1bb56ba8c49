"""A self-contained HTML report of a sweep: plots embedded, tables, scenario, assumptions.

`build_report` picks the plots the results support (speedup vs acceptance when acceptance and a
fixed gamma were swept, tokens/s vs gamma from any speculative point, tokens/s vs chips when
the chip count was swept, the latency breakdown of every distinct hardware point, and a heatmap
of tokens/s over the first two swept axes), writes them as PNG and SVG, writes `series.json`
(the data of every plot) and `report.html` with the PNGs embedded as data URIs.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from lpusim.atomic import read_output, write_atomic
from lpusim.report import plots

MAX_BARS = 24


def _axes(rows: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        for k in r.get("overrides", {}):
            if k not in keys:
                keys.append(k)
    return [k for k in keys
            if len({json.dumps(r["overrides"].get(k), sort_keys=True) for r in rows}) > 1]


# how each figure was obtained (stated on the page under the figure)
SIMULATED_STEP = ("the compiled static schedule of one decode step, run by the discrete-event "
                  "simulator")
METHOD = {
    "speedup_vs_acceptance": "Speedup = speculative tokens/s / tokens/s without speculation. "
                             "The denominator is simulated (" + SIMULATED_STEP + "); the "
                             "numerator combines simulated draft and verify steps in the "
                             "closed form for the expected tokens per pass.",
    "tokens_vs_gamma": "Closed form: expected tokens per pass at each gamma, over the "
                       "simulated draft and verify step latencies at that width (the best "
                       "speculative point of the sweep; the optimum is marked).",
    "tokens_vs_chips": "Without speculation: 1 / the simulated step latency. With "
                       "speculation: the closed form over simulated steps (best point per "
                       "chip count).",
    "latency_breakdown": "Simulated: the critical path of " + SIMULATED_STEP + ", of the "
                         "target model without speculation, one bar per distinct hardware "
                         "point. The black marks show the time per token with speculation "
                         "(closed form), where a pass commits several tokens.",
    "heatmap": "Tokens/s per user of each point: 1 / the simulated step without "
               "speculation, the closed form over simulated steps with it.",
}


def _heat_axes(rows: list[dict[str, Any]], axes: list[str]) -> tuple[str, str]:
    """The two swept axes with the most values (ties: file order); the rest are panels."""
    n = {a: len({json.dumps(r["overrides"].get(a), sort_keys=True) for r in rows})
         for a in axes}
    x, y = sorted(axes, key=lambda a: (-n[a], axes.index(a)))[:2]
    return x, y


def build_report(rows: list[dict[str, Any]], outdir: Path, source: str = "") -> Path:
    """Write the plots, series.json and report.html for `rows`; returns the HTML path."""
    outdir.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if "error" not in r]
    failed = [r for r in rows if "error" in r]
    made: list[dict[str, Any]] = []
    if ok:
        p = plots.speedup_vs_acceptance(ok, outdir)
        if p:
            made.append(p)
        spec = [r for r in ok if r.get("speculation")]
        if spec:
            best = max(spec, key=lambda r: r["tokens_per_second"])
            made.append(plots.gamma_curve(best, outdir))
        p = plots.tokens_vs_chips(ok, outdir)
        if p:
            made.append(p)
        hw: dict[str, dict[str, Any]] = {}
        fastest: dict[str, float] = {}
        for r in ok:
            hw.setdefault(r["program_hash"], r)
            if r.get("speculation"):
                t = 1e6 / r["tokens_per_second"] if r["tokens_per_second"] > 0 else None
                if t is not None:
                    fastest[r["program_hash"]] = min(t, fastest.get(r["program_hash"], t))
        bars = list(hw.values())[:MAX_BARS]
        labels = [_label(r) for r in bars]
        made.append(plots.breakdown_bars(
            bars, labels, outdir,
            per_token_us=[fastest.get(r["program_hash"]) for r in bars] if fastest else None))
        axes = _axes(ok)
        if len(axes) >= 2:
            x, y = _heat_axes(ok, axes)
            made.append(plots.heatmap(ok, x, y, outdir))
    write_atomic(outdir / "series.json",
                 json.dumps({p["name"]: p["series"] for p in made}, indent=1, sort_keys=True,
                            default=str) + "\n")
    page = _html(ok, failed, made, outdir, source)
    dest = outdir / "report.html"
    write_atomic(dest, page)
    return dest


def _label(r: dict[str, Any]) -> str:
    ov = {k: v for k, v in r.get("overrides", {}).items() if not k.startswith("speculation.")}
    if not ov:
        return r["scenario"]
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in ov.items())


def _lookup(r: Any, col: str) -> Any:
    """A column of a row: dotted keys (overrides such as 'speculation.gamma' are stored flat)
    are tried whole before being taken as a path into nested records."""
    if not isinstance(r, dict):
        return None
    if col in r:
        return r[col]
    parts = col.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in r:
            found = _lookup(r[head], ".".join(parts[i:]))
            if found is not None:
                return found
    return None


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _table(rows: list[dict[str, Any]], cols: list[str],
           headers: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (headers or cols))
    body = []
    for r in rows:
        cells = [f"<td>{html.escape(_cell(_lookup(r, c)))}</td>" for c in cols]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _varying(rows: list[dict[str, Any]], keys: list[str]) -> list[str]:
    return [k for k in keys
            if len({json.dumps(_lookup(r, k), sort_keys=True, default=str) for r in rows}) > 1]


def _html(ok: list[dict[str, Any]], failed: list[dict[str, Any]], made: list[dict[str, Any]],
          outdir: Path, source: str) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>lpusim report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}img{max-width:100%}"
             ".how{color:#555;font-size:13px}</style></head><body>",
             "<h1>lpusim report</h1>",
             f"<p>{len(ok)} points from <code>{html.escape(source)}</code>"
             f"{f', {len(failed)} infeasible' if failed else ''}. Decode-step latencies are "
             "simulated by lpusim (compiled static schedule, discrete-event simulation). "
             "Speculative figures combine simulated draft and verify steps in a closed form "
             "(expected tokens per pass); Monte Carlo columns and p50/p99 token latencies "
             "come from a seeded Monte Carlo over the same steps. Each figure says how it "
             "was obtained; the assumptions are listed below.</p>"]
    for p in made:
        png = next(f for f in p["files"] if f.endswith(".png"))
        data = base64.b64encode(read_output(outdir / png)).decode()
        how = METHOD.get(p["name"], "")
        if p.get("reduction"):
            how += f" Other swept axes: {p['reduction']}."
        parts.append(f"<h2>{html.escape(p['name'].replace('_', ' '))}</h2>"
                     f"<img alt='{html.escape(p['name'])}' src='data:image/png;base64,{data}'>"
                     + (f"<p class='how'>How obtained: {html.escape(how)}</p>" if how else ""))
    axes = _axes(ok)
    cols = ["point", *[f"overrides.{a}" for a in axes], "tokens_per_second",
            "baseline_tokens_per_second", "speedup", "speculation.strategy",
            "speculation.gamma", "speculation.expected_tokens_per_pass",
            "speculation.monte_carlo_tokens_per_second", "step_latency_us", "chips"]
    headers = ["point", *axes, "tokens/s per user (closed form)",
               "tokens/s without speculation (simulated)", "speedup", "strategy", "gamma",
               "E[tokens/pass]", "tokens/s (Monte Carlo)", "step latency us (simulated)",
               "chips"]
    if ok:
        parts.append("<h2>Results</h2>" + _table(ok, cols, headers))
        first = ok[0]
        fixed = ["scenario", "model", "chip", "system", "context", "batch", "fidelity"]
        assumed = [f"assumptions.{k}" for k in dict.fromkeys(
            k for r in ok for k in (r.get("assumptions") or {}))]
        vary = _varying(ok, fixed + assumed)
        same = [c for c in fixed + assumed if c not in vary]
        parts.append("<h2>Scenario and assumptions</h2>" + _table(
            [first], same, [c.removeprefix("assumptions.") for c in same]))
        if vary:
            parts.append("<p>The sweep varied these; their value at every point:</p>"
                         + _table(ok, ["point", *vary],
                                  ["point", *(c.removeprefix("assumptions.") for c in vary)]))
    if failed:
        parts.append("<h2>Infeasible points</h2>" + _table(
            failed, ["point", *[f"overrides.{a}" for a in _axes(failed)], "error"],
            ["point", *_axes(failed), "error"]))
    parts.append("</body></html>\n")
    return "\n".join(parts)
