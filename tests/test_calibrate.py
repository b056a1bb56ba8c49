"""Calibration: a joint, bounded fit on the training rows, chosen by leave-one-out error;
validation and sensitivity come from the model."""

import dataclasses
import json
import subprocess
import sys

import pytest

from lpusim import api
from lpusim import calibrate as cal
from lpusim.errors import ConfigError
from lpusim.published import load_published
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def shipped():
    """The hypothesis the shipped system files say was chosen, evaluated afresh."""
    name = api.load_system("groqrack-576").calibration.hypothesis
    return cal.evaluate_hypothesis(cal.hypothesis(name))


def test_training_rows_are_the_three_fit_rows():
    rows = cal.training_rows()
    assert [r.id for r in rows] == ["llama-3.1-70b-576-128k", "llama-3-8b-8k",
                                    "llama-3.2-1b-8k"]
    assert [r.value for r in rows] == [250, 1250, 3100]
    assert all(r.use == "prediction" for r in load_published() if r not in rows)


def test_default_scenario_within_5_percent_of_250():
    r = api.run(api.load_scenario())
    assert abs(r.tokens_per_second - 250) / 250 < 0.05
    assert r.context_window == 131072 and r.context == 1500


def test_refit_gives_the_shipped_constants(shipped):
    sysspec = api.load_system("groqrack-576")
    assert sysspec.fitted == tuple(cal.CONSTANTS[n].field for n in shipped.fit.values)
    for name, v in shipped.fit.values.items():
        section, key = cal.CONSTANTS[name].field.split(".")
        assert getattr(getattr(sysspec, section), key) == v
    for dotted, v in shipped.hypothesis.settings:
        section, key = dotted.split(".")
        assert getattr(getattr(sysspec, section), key) == v


def test_at_most_three_constants_no_catch_all_and_residuals_within_6_percent(shipped):
    assert 1 <= len(shipped.hypothesis.fitted) <= 3 and not shipped.hypothesis.catch_all
    assert all(abs(e) < 6 for e in shipped.fit.residual_percent.values())
    # one constant, three rows: every row also has a leave-one-out prediction
    assert set(shipped.loo_error_percent) == set(shipped.fit.residual_percent)


def test_fit_respects_bounds_and_says_so(shipped):
    system = api.load_system("groqrack-576")
    for name, v in shipped.fit.values.items():
        lo, hi, _nom = system.calibration.bounds(name)
        assert lo <= v <= hi
        assert (name in shipped.fit.on_bound) == (v in (lo, hi))


def test_constants_not_fitted_sit_at_their_nominal_values():
    system = api.load_system("groqrack-576")
    h = cal.hypothesis("collective+window")
    ov = cal.base_overrides(h, system)
    assert ov["system.sync.deskew_per_stage_ps"] == f"{system.calibration.deskew_nominal_ps}ps"
    assert ov["system.sync.layer_barrier_ps"] == "0ps"
    assert ov["system.chip.mxm.weight_load_streams"] == 8
    assert ov["system.compiler.attention_span"] == "window"
    assert "system.sync.collective_latency_ps" not in ov


def test_the_catch_all_does_not_carry_over(shipped):
    # the first sprint's model: one per-stage term fitted on the three rows
    old = cal.evaluate_hypothesis(cal.hypothesis("deskew-catch-all"))
    assert old.mean_abs_loo_percent > 4 * shipped.mean_abs_loo_percent


def test_choice_is_by_leave_one_out_not_residual():
    a = cal.HypothesisReport(cal.hypothesis("collective"), _fake_fit("collective", 0.1),
                             {"x": 20.0})
    b = cal.HypothesisReport(cal.hypothesis("collective+window"),
                             _fake_fit("collective+window", 3.0), {"x": 4.0})
    c = cal.HypothesisReport(cal.hypothesis("deskew-catch-all"),
                             _fake_fit("deskew-catch-all", 0.0), {"x": 0.5})
    pool = [r for r in (a, b, c) if not r.hypothesis.catch_all]
    assert min(pool, key=lambda r: r.mean_abs_loo_percent) is b


def _fake_fit(name, residual):
    return cal.Fit(name, ("x",), {}, {}, {"x": 1.0}, {"x": residual})


def test_write_calibrated_keeps_comments_and_round_trips(tmp_path, shipped):
    fit = cal.Calibration(shipped.hypothesis.name, (shipped,),
                          tuple(r.id for r in cal.training_rows()))
    dests = cal.write_calibrated(fit, str(tmp_path))
    assert sorted(d.name for d in dests) == sorted(f"{n}.yaml" for n in cal.CALIBRATED_SYSTEMS)
    text = (tmp_path / "groqrack-576.yaml").read_text()
    assert "# ISCA 2022: GroqNode, 8 chips fully connected" in text
    assert "fitted by `lpusim calibrate`" in text
    # the copy loads and carries the fit (its chip reference resolves to the shipped chip)
    (tmp_path / "groqchip1.yaml").write_text((ROOT / "chip_configs/groqchip1.yaml").read_text())
    copy = api.load_system(str(tmp_path / "groqrack-576.yaml"))
    assert copy.sync == api.load_system("groqrack-576").sync


def test_validate_published_json_lists_every_row():
    p = subprocess.run([sys.executable, "-m", "lpusim.cli", "validate-published", "--format",
                        "json"], cwd=ROOT, capture_output=True, text=True, check=True)
    rows = json.loads(p.stdout)
    for r in rows:
        assert {"figure", "predicted", "published", "error_percent", "source", "use"} <= set(r)
    fit = [r for r in rows if r["use"] == "fit" and r.get("backend") != "gpu"]
    assert len(fit) == 3 and all(abs(r["error_percent"]) < 6 for r in fit)
    gpu = [r for r in rows if r.get("backend") == "gpu"]
    assert [r["use"] for r in gpu] == ["fit", "prediction"]
    assert abs(gpu[0]["error_percent"]) < 5
    spec = [r for r in rows if r.get("id", "").startswith("llama-3.1-70b-specdec-8k:")]
    assert {r["id"].split(":")[1] for r in spec} >= {"draft", "async", "heads-eagle3",
                                                     "implied-draft", "implied-async"}
    implied = [r for r in spec if r["use"] == "inference"]
    # an acceptance that cannot reach the target is reported as unreachable, never as 1.0
    assert all((r["predicted"] is None) == (not r["reachable"]) for r in implied)
    assert all(r["predicted"] is None or 0 < r["predicted"] < 1 for r in implied)
    dragonfly = next(r for r in rows if "Dragonfly" in r["figure"])
    assert dragonfly["use"].endswith("holds")
    allreduce = next(r for r in rows if "all-reduce" in r["figure"])
    assert allreduce["use"].endswith("holds") and allreduce["latency_us"] > 0


def test_sensitivity_directions():
    rows = {r["parameter"]: r for r in cal.sensitivity()}
    assert len(rows) == len(cal.SENSITIVITY)
    clock = rows["clock"]
    assert clock["tokens_per_second_low"] < clock["baseline_tokens_per_second"] \
        < clock["tokens_per_second_high"]
    coll = rows["collective latency (fitted)"]
    assert coll["tokens_per_second_low"] > coll["tokens_per_second_high"]


def test_calibration_needs_bounds_in_the_system_file():
    s = api.load_system("groqrack-576")
    bare = dataclasses.replace(s, calibration=None)
    with pytest.raises(ConfigError, match="no calibration bounds"):
        cal._ranges(cal.hypothesis("collective+window"), bare)


def test_unknown_hypothesis_is_a_one_line_error():
    p = subprocess.run([sys.executable, "-m", "lpusim.cli", "calibrate", "--hypothesis",
                        "nope", "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2
    assert "--hypothesis: unknown hypothesis 'nope'" in p.stderr
    assert "Traceback" not in p.stderr


def test_shipped_systems_carry_the_same_calibration():
    ref = api.load_system("groqrack-576")
    for name in cal.CALIBRATED_SYSTEMS[1:]:
        other = api.load_system(name)
        assert other.sync == ref.sync and other.compiler == ref.compiler
        assert other.links == ref.links
        assert other.calibration == ref.calibration


def test_sensitivity_of_a_gpu_scenario_is_an_input_error():
    p = subprocess.run([sys.executable, "-m", "lpusim.cli", "sensitivity", "--scenario",
                        "llama-3.1-70b-h100x8"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "is a GPU system" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.skipif(not __import__("lpusim.parallel", fromlist=["x"]).can_fork(),
                    reason="children are forked on Linux only")
def test_hypotheses_are_evaluated_ahead_in_children_in_their_order(monkeypatch):
    """With two processes the next hypotheses are evaluated in a forked child meanwhile: the
    reports come back in the hypotheses' order, as one process gives them (here a cheap
    stand-in for the fits, which says which process ran it)."""
    import os
    import time

    from lpusim import parallel

    def stand_in(h, rows=None):
        time.sleep(2 * parallel.WORTH_A_CHILD_S)
        fit = cal.Fit(h.name, (), {}, {}, {"pid": float(os.getpid())}, {})
        return cal.HypothesisReport(h, fit, {"rank": float(len(h.fitted))})
    monkeypatch.setattr(cal, "evaluate_hypothesis", stand_in)
    was = parallel.set_jobs(2)
    try:
        two = cal.calibrate()
    finally:
        parallel.set_jobs(was)
    one = cal.calibrate()
    names = [h.name for h in cal.HYPOTHESES]
    assert [r.hypothesis.name for r in two.reports] == names
    assert [r.hypothesis.name for r in one.reports] == names
    assert two.chosen == one.chosen
    pids = {r.fit.predicted["pid"] for r in two.reports}
    assert float(os.getpid()) in pids and len(pids) > 1     # some came from children


def test_the_check_rows_are_made_in_a_child_meanwhile(monkeypatch):
    """validate_published's GPU rows and system checks depend on nothing before them: with
    two processes a child makes them while this process runs the published rows, in the
    same place of the result; with one, or when the child fails, they are made here; an
    error in the published rows stops the child (here with cheap stand-ins)."""
    import os

    from lpusim import parallel
    monkeypatch.setattr(cal, "_published_rows", lambda ov: [{"row": "published"}])
    monkeypatch.setattr(cal, "_check_rows", lambda: [{"row": "check", "pid": os.getpid()}])
    was = parallel.set_jobs(2)
    try:
        two = cal.validate_published()
        assert [r["row"] for r in two] == ["published", "check"]
        assert two[1]["pid"] != os.getpid() or not parallel.can_fork()

        me = os.getpid()

        def fails_in_a_child():
            if os.getpid() != me:
                raise RuntimeError("in the child")
            return [{"row": "check", "pid": me}]
        monkeypatch.setattr(cal, "_check_rows", fails_in_a_child)
        assert cal.validate_published()[1]["pid"] == me            # made here instead

        def failing(ov):
            raise ConfigError(cal.Issue("published", None, None, "x", "bad row"))
        monkeypatch.setattr(cal, "_published_rows", failing)
        with pytest.raises(ConfigError):
            cal.validate_published()
        assert parallel.busy_children() == 0 and not parallel._LIVE     # stopped and reaped
    finally:
        parallel.set_jobs(was)
    monkeypatch.setattr(cal, "_published_rows", lambda ov: [{"row": "published"}])
    monkeypatch.setattr(cal, "_check_rows", lambda: [{"row": "check", "pid": os.getpid()}])
    assert cal.validate_published()[1]["pid"] == os.getpid()        # one process
