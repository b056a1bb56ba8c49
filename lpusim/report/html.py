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

from lpusim.atomic import write_atomic
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
        for r in ok:
            hw.setdefault(r["program_hash"], r)
        bars = list(hw.values())[:MAX_BARS]
        labels = [_label(r) for r in bars]
        made.append(plots.breakdown_bars(bars, labels, outdir))
        axes = _axes(ok)
        if len(axes) >= 2:
            made.append(plots.heatmap(ok, axes[0], axes[1], outdir))
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


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v: Any = r
            for part in c.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            if isinstance(v, float):
                v = f"{v:,.4g}"
            cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(ok: list[dict[str, Any]], failed: list[dict[str, Any]], made: list[dict[str, Any]],
          outdir: Path, source: str) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>lpusim report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>",
             "<h1>lpusim report</h1>",
             f"<p>{len(ok)} points from <code>{html.escape(source)}</code>"
             f"{f', {len(failed)} infeasible' if failed else ''}. Every number is simulated "
             "by lpusim (compiled static schedule, discrete-event simulation); see the "
             "assumptions below.</p>"]
    for p in made:
        png = next(f for f in p["files"] if f.endswith(".png"))
        data = base64.b64encode((outdir / png).read_bytes()).decode()
        parts.append(f"<h2>{html.escape(p['name'].replace('_', ' '))}</h2>"
                     f"<img alt='{html.escape(p['name'])}' src='data:image/png;base64,{data}'>")
    axes = _axes(ok)
    cols = ["point", *[f"overrides.{a}" for a in axes], "tokens_per_second",
            "baseline_tokens_per_second", "speedup", "speculation.gamma",
            "speculation.expected_tokens_per_pass", "step_latency_us", "chips"]
    if ok:
        parts.append("<h2>Results</h2>" + _table(ok, cols))
        first = ok[0]
        parts.append("<h2>Scenario and assumptions</h2>" + _table(
            [{"scenario": first["scenario"], "model": first["model"], "chip": first["chip"],
              "system": first["system"], "context": first["context"], "batch": first["batch"],
              "fidelity": first["fidelity"], **first.get("assumptions", {})}],
            ["scenario", "model", "chip", "system", "context", "batch", "fidelity",
             *first.get("assumptions", {}).keys()]))
    if failed:
        parts.append("<h2>Infeasible points</h2>" + _table(failed, ["point", "error"]))
    parts.append("</body></html>\n")
    return "\n".join(parts)
