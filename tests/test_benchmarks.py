"""The benchmark runner's bookkeeping (no case is run: `run_case` is replaced)."""

import json

import pytest

from benchmarks import runner
from benchmarks.cases import ROOT


def test_against_runs_each_case_in_both_checkouts_in_turn_and_reports_its_medians(
        tmp_path, monkeypatch, capsys):
    other = tmp_path / "base"
    (other / "benchmarks").mkdir(parents=True)
    (other / "benchmarks" / "cases.py").write_text("")
    calls = []

    def fake(case, idle_wait=60, root=ROOT):
        calls.append((case.name, root))
        wall = (0.020 if root == ROOT else 0.030) + 0.001 * len(calls)
        return {"name": case.name, "title": case.title, "target_s": case.target_s,
                "target_mb": case.target_mb, "wall_s": wall, "peak_rss_bytes": 10**7,
                "busy_before": 0.0, "result": "-"}

    monkeypatch.setattr(runner, "run_case", fake)
    out = tmp_path / "r.json"
    assert runner.main(["--case", "fast_cached", "--repeat", "3", "--against", str(other),
                        "--json", str(out)]) == 0
    # round 1 here first, round 2 there first, round 3 here first
    assert [r == ROOT for _n, r in calls] == [True, False, False, True, True, False]
    data = json.loads(out.read_text())
    assert data["cases"][0]["walls_s"] == pytest.approx([0.021, 0.024, 0.025])
    assert data["previous"]["same_rounds"] is True
    assert data["previous"]["commit"] == "base"          # not a git checkout: its name
    assert data["previous"]["wall_s"]["fast_cached"] == pytest.approx(0.033)  # of 32, 33, 36
    assert "before (base)" in capsys.readouterr().out


def test_against_refuses_a_directory_that_is_no_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        runner.main(["--case", "fast_cached", "--against", str(tmp_path)])
    assert e.value.code == 2
    assert "is not a checkout of lpusim" in capsys.readouterr().err


def test_pass_timer_counts_each_pass_once_per_fresh_template_and_restores_the_passes():
    """With nothing cached, every template is scheduled, verified and simulated once: the
    scheduled tasks are the verified and simulated items, and those are the items of the
    step's distinct templates; closing the timer puts the passes back."""
    import lpusim.compiler as comp
    import lpusim.sim.metrics as met
    from benchmarks.cases import _PassTimer
    from lpusim import caches
    from lpusim.api import load_scenario
    from lpusim.compiler import compile_pipeline
    from lpusim.graph import GraphParams, build_decode_graph

    sc = load_scenario("llama-3.1-70b-groqrack-576", {"model": "llama-3.2-1b", "chips": 8})
    graph = build_decode_graph(sc.model, GraphParams(batch=1, context=1024))
    before = (comp._run_pass, comp.group_signature, met.simulate)
    caches.clear()
    timer = _PassTimer()
    try:
        pp = compile_pipeline(graph, sc.system, chips=8, tp=8)
        met.metrics_pipeline(pp)
    finally:
        timer.close()
    assert (comp._run_pass, comp.group_signature, met.simulate) == before
    items = sum(len(p.instructions) + len(p.transfers) for p in pp.templates.values())
    assert timer.items["lower"] >= timer.items["schedule"] == timer.items["verify"] > 0
    assert timer.items["simulate"] == items
    assert timer.items["signatures"] == timer.items["routes"] == 0     # counted in time only
    assert all(s > 0 for s in timer.seconds.values())


def test_the_performance_page_shows_where_the_time_goes():
    from benchmarks.doc import passes_table
    w = {"passes": {"schedule": {"s": 0.0035, "items": 2624, "us_per_item": 1.33},
                    "routes": {"s": 0.00003, "items": 0, "us_per_item": None},
                    "signatures": {"s": 0.253, "items": 0, "us_per_item": None}},
         "wall_s": 0.0231, "rest_s": 0.0124}
    row = passes_table({"step_405b_first": w}).splitlines()[2]
    assert row == ("| first 405B step | 23.1 ms | - | 3.5 ms (2,624 items, 1.33 us) | - | - "
                   "| - | 253.0 ms | 12.4 ms |")
