"""The HTML report tells the truth (issue 19): every override value in the results table
(dotted keys are stored flat), figures that say what they show and how they were obtained, a
heatmap that does not silently take the best over other swept axes, and the assumptions of
every point when the sweep varied them."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from lpusim.report.html import build_report
from lpusim.sweep import load_sweep, read_results, run_sweep

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    sw = d / "s.yaml"
    sw.write_text("kind: sweep\nversion: 1\nname: s\n"
                  f"base: {ROOT}/tests/data/small-specdec.yaml\ngrid:\n"
                  "  speculation.strategy: [draft, async]\n"
                  "  speculation.acceptance: [0.6, 0.8, 0.9]\n"
                  "  system.links.local_hop_latency_ps: [100ns, 240ns]\n")
    rows = run_sweep(load_sweep(sw), d / "r.jsonl", workers=1)
    page = build_report(read_results(d / "r.jsonl"), d / "out", str(d / "r.jsonl"))
    return rows, page.read_text(), json.loads((d / "out" / "series.json").read_text())


def _results_table(page: str) -> tuple[list[str], list[list[str]]]:
    section = page.split("<h2>Results</h2>", 1)[1].split("</table>", 1)[0]
    heads = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", section)]
    rows = [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>", 1)[1])]
    return heads, rows


def test_results_table_shows_every_override(report):
    rows, page, _ = report
    heads, cells = _results_table(page)
    axes = sorted(["speculation.strategy", "speculation.acceptance",
                   "system.links.local_hop_latency_ps"])
    assert heads[1:4] == axes
    assert len(cells) == len(rows) == 12
    empty = [(i, j) for i, r in enumerate(cells) for j, c in enumerate(r[:4])
             if c in ("", "None", "-")]
    assert empty == [], "empty override cells"
    for r, c in zip(rows, cells, strict=True):
        assert c[1:4] == [str(r["overrides"][a]) for a in axes]
    assert len({tuple(c[1:4]) for c in cells}) == 12      # rows can be told apart


def test_figures_say_how_they_were_obtained(report):
    _, page, series = report
    assert "Every number is simulated" not in page
    figures = page.count("<img ")
    assert figures >= 3 and page.count("How obtained:") == figures
    assert "Monte Carlo" in page and "closed form" in page
    # the breakdown is the step without speculation, and marks the speculative token time
    assert "without speculation" in page
    assert "per_token_with_speculation_us" in series["latency_breakdown"]


def test_heatmap_does_not_hide_other_axes(report):
    _, page, series = report
    hm = series["heatmap"]
    assert hm["x"] == ["0.6", "0.8", "0.9"]             # the axis with the most values
    assert hm["reduced_over"] == []
    fixed = [p["fixed"] for p in hm["panels"]]
    assert len(fixed) == 2 and {f["system.links.local_hop_latency_ps"] for f in fixed} == \
        {"100ns", "240ns"}
    assert "one panel per system.links.local_hop_latency_ps" in page


def test_assumptions_per_point_when_swept(report):
    rows, page, _ = report
    part = page.split("<h2>Scenario and assumptions</h2>", 1)[1]
    assert "The sweep varied these" in part
    varied = part.split("The sweep varied these", 1)[1]
    values = {r["assumptions"]["local_hop_latency_ns"] for r in rows}
    assert len(values) == 2
    for v in values:
        assert f"<td>{v:,.4g}</td>" in varied or f"<td>{v}</td>" in varied


def test_heatmap_beyond_six_panels_says_it_takes_the_best(tmp_path):
    from lpusim.report.plots import MAX_FACETS, heatmap
    rows = [{"overrides": {"a": a, "b": b, "c": c}, "tokens_per_second": float(a + b + c)}
            for a in (1, 2) for b in (1, 2) for c in range(MAX_FACETS + 1)]
    out = heatmap(rows, "a", "b", tmp_path)
    assert out["series"]["reduced_over"] == ["c"]
    assert out["reduction"] == f"each cell the best over c ({MAX_FACETS + 1} combinations)"
    assert out["series"]["z"] == [[2.0 + MAX_FACETS, 3.0 + MAX_FACETS],
                                  [3.0 + MAX_FACETS, 4.0 + MAX_FACETS]]
