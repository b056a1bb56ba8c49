"""Calibration is reproducible and bounded; validation and sensitivity come from the model."""

import pytest

from lpusim import api
from lpusim import calibrate as cal


@pytest.fixture(scope="module")
def fit():
    return cal.calibrate()


def test_default_scenario_within_5_percent_of_250():
    r = api.run(api.load_scenario())
    assert abs(r.tokens_per_second - 250) / 250 < 0.05


def test_refit_gives_the_shipped_constants(fit):
    sysspec = api.load_scenario().system
    for row in fit.rows:
        section, key = row.field.split(".")
        assert getattr(getattr(sysspec, section), key) == row.fitted_ps
    assert abs(fit.error_percent) < 0.1


def test_fit_respects_bounds_and_says_so(fit):
    for row in fit.rows:
        assert row.low_ps <= row.fitted_ps <= row.high_ps
        assert row.hit_bound == (row.fitted_ps in (row.low_ps, row.high_ps))
    hop = fit.rows[0]
    assert hop.field == "links.global_hop_latency_ps" and hop.fitted_ps <= 600_000


def test_write_calibrated_keeps_comments(tmp_path, fit):
    out = tmp_path / "sys.yaml"
    cal.write_calibrated("groqrack-576", fit, str(out))
    text = out.read_text()
    assert "# ISCA 2022: GroqNode, 8 chips fully connected" in text
    assert "calibrated: fitted by `lpusim calibrate`" in text
    assert api.load_system(str(out)).sync.deskew_per_stage_ps == fit.rows[1].fitted_ps


def test_validation_table_rows():
    rows = cal.validate_published()
    assert rows[0]["use"] == "fit" and abs(rows[0]["error_percent"]) < 5
    assert all(r["use"] != "fit" for r in rows[1:])
    implied = {r["figure"]: r["predicted"] for r in rows if r["use"] == "inference"}
    assert len(implied) == 2 and all(0 < a < 1 for a in implied.values())
    # overlapping drafting with verification needs a lower acceptance for the same speed
    seq, asy = (implied[k] for k in sorted(implied, key=lambda k: "async" in k))
    assert asy < seq
    pred = [r for r in rows if r["use"] == "prediction" and r["published"] == 1660.0]
    assert len(pred) == 2
    # the implied acceptance brackets the scenario's: one strategy under, one over
    assert min(r["error_percent"] for r in pred) < 0 < max(r["error_percent"] for r in pred)
    dragonfly = next(r for r in rows if "Dragonfly" in r["figure"])
    assert dragonfly["use"].endswith("holds")


def test_sensitivity_directions():
    rows = {r["parameter"]: r for r in cal.sensitivity()}
    assert len(rows) == 5
    clock = rows["clock"]
    assert clock["tokens_per_second_low"] < clock["baseline_tokens_per_second"] \
        < clock["tokens_per_second_high"]
    sync = rows["synchronisation (deskew per stage)"]
    assert sync["tokens_per_second_low"] > sync["tokens_per_second_high"]


def test_calibration_needs_bounds_in_the_system_file():
    from lpusim.errors import ConfigError
    sc = api.load_scenario("llama-3.1-70b-groqrack-576", {"system": "groqnode-8", "chips": 8,
                                                          "model": "llama-3.2-1b"})
    with pytest.raises(ConfigError, match="calibration: the system has no calibration bounds"):
        cal.parameters(sc.system)
    bounds = cal.parameters(api.load_scenario().system)
    assert [(p.low_ps, p.high_ps) for p in bounds] == [(240_000, 600_000), (1000, 100_000_000)]


def test_systems_that_follow_the_calibration_carry_its_values():
    # groqrack-2304 says its hop latencies and deskew are those calibrated on groqrack-576
    ref, big = api.load_system("groqrack-576"), api.load_system("groqrack-2304")
    assert big.links == ref.links and big.sync == ref.sync
