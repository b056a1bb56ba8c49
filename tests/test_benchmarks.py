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
