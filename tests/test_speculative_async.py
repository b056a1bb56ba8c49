"""Continuous asynchronous speculation: hand-computed renewal cases, both evaluators, the
initiation interval, and the strategy on the simulated machine."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpusim import api
from lpusim.program import Instr, Link, Program, Transfer
from lpusim.sim.metrics import initiation_interval
from lpusim.speculative import ConstantAcceptance, MixtureAcceptance, PositionalAcceptance
from lpusim.speculative.asynchronous import (
    break_even_async,
    evaluate_async,
    launch_cycles,
    simulate_async,
)


def test_launch_cycles_hand_computed():
    # window 2, draft 10, overhead 3, interval 0: run w waits for draft 2w+1 (run 0 for d_1)
    assert launch_cycles(2, 3, 10, 3, 0).tolist() == [13, 33, 53]
    # window 1: run 0 is the correction itself at 0, then drafts 1, 2, ... at 3 + 10 n
    assert launch_cycles(1, 3, 10, 3, 0).tolist() == [0, 13, 23]
    # an interval of 15 spaces them out: 0, 15, 30
    assert launch_cycles(1, 3, 10, 3, 15).tolist() == [0, 15, 30]


@pytest.mark.parametrize("a", [0.0, 0.3, 0.9])
def test_window_one_closed_form_hand_derived(a):
    # N ~ geometric(1 - a); cycle = T_v + [N > 1] (o + (N - 1) T_d), so
    # E[N] = 1 / (1 - a) and E[C] = T_v + a o + a T_d / (1 - a)
    tv, td, o = 4000.0, 100.0, 2.0
    r = evaluate_async(ConstantAcceptance(a), 1, td, tv, o, 50, clock_hz=1.0)
    expect = (1 / (1 - a)) / (tv + a * o + a * td / (1 - a))
    assert r.tokens_per_second == pytest.approx(expect, rel=1e-9)
    assert r.tokens_per_run == pytest.approx(1.0)


def test_zero_acceptance_is_plain_decoding():
    r = evaluate_async(ConstantAcceptance(0.0), 1, 100, 4000, 2, 50, clock_hz=1.0)
    assert r.tokens_per_second == pytest.approx(1 / 4000)
    assert break_even_async(1, 100, 4000, 2, 50, 4000) == 0.0
    # a wider window makes the first run wait for drafts: it loses at low acceptance
    be = break_even_async(4, 100, 4100, 2, 50, 4000)
    assert 0 < be < 1
    at = evaluate_async(ConstantAcceptance(be), 4, 100, 4100, 2, 50, clock_hz=1.0)
    assert at.tokens_per_second == pytest.approx(1 / 4000, rel=1e-6)


def test_interval_throttles_a_fast_drafter():
    # every draft accepted: window-1 runs launch every max(T_d, interval) cycles
    r = evaluate_async(ConstantAcceptance(1.0), 1, 10, 4000, 0, 50, clock_hz=1.0)
    h = r.horizon
    assert r.tokens_per_second == pytest.approx(h / ((h - 1) * 50 + 4000))


@pytest.mark.parametrize("model", [
    ConstantAcceptance(0.9),
    PositionalAcceptance((0.95, 0.9, 0.85, 0.8)),
    MixtureAcceptance(((0.5, ConstantAcceptance(0.95)), (0.5, ConstantAcceptance(0.55)))),
])
@pytest.mark.parametrize("window", [1, 3])
def test_monte_carlo_agrees_with_closed_form(model, window):
    args = (100.0, 4000.0, 2.0, 50.0)
    r = evaluate_async(model, window, *args, clock_hz=1e9)
    m = simulate_async(model, window, 100_000, 7, *args, clock_hz=1e9)
    assert m.tokens_per_second == pytest.approx(r.tokens_per_second, rel=0.01)
    assert m.mean_tokens_per_run == pytest.approx(r.tokens_per_run, rel=0.01)
    assert len(m.histogram) == window
    again = simulate_async(model, window, 100_000, 7, *args, clock_hz=1e9)
    assert again == m


def test_latency_percentiles_hand_computed():
    # a = 0: every token is a correction after one full target step
    m = simulate_async(ConstantAcceptance(0.0), 1, 1000, 0, 100, 4000, 0, 50, clock_hz=1e6)
    assert m.p50_token_latency_us == m.p99_token_latency_us == 4000
    # a = 1: after the first, tokens arrive one draft step apart
    m = simulate_async(ConstantAcceptance(1.0), 1, 10, 0, 100, 4000, 0, 50, clock_hz=1e6)
    assert m.p50_token_latency_us == m.p99_token_latency_us == 100


@settings(max_examples=60, deadline=None)
@given(a=st.floats(0, 0.999), td=st.integers(1, 500), interval=st.integers(1, 500),
       o=st.integers(0, 50))
def test_window_one_bounds(a, td, interval, o):
    # never slower than plain decoding, never faster than one token per draft step/interval
    tv = 4000
    r = evaluate_async(ConstantAcceptance(a), 1, td, tv, o, interval, clock_hz=1.0)
    assert 1 / tv * (1 - 1e-9) <= r.tokens_per_second <= 1 / max(td, interval) * (1 + 1e-9)
    hi = evaluate_async(ConstantAcceptance(min(1.0, a + 0.05)), 1, td, tv, o, interval,
                        clock_hz=1.0)
    assert hi.tokens_per_second >= r.tokens_per_second * (1 - 1e-12)


def test_initiation_interval_hand_computed():
    # chip 0's MXM busy 0..10 and 30..40, chip 1's VXM 5..8; link 0 busy 12..32: span 40
    prog = Program(
        name="ii", clock_hz=1, chips=(0, 1),
        instructions=(Instr(0, 0, "mxm", "a", 0, 0, 10, 0, 0, "compute_mxm", ()),
                      Instr(1, 0, "mxm", "b", 0, 30, 10, 0, 0, "compute_mxm", ()),
                      Instr(2, 1, "vxm", "c", 0, 5, 3, 0, 0, "compute_vxm", ())),
        transfers=(Transfer(3, 0, 1, (0,), (2,), 64, "t", 0, 12, 20, ()),),
        links=(Link(0, 0, 1, "local"),), sram_capacity_bytes=0)
    assert initiation_interval(prog) == 40


@pytest.fixture(scope="module")
def async_run():
    return api.run(api.load_scenario("llama-3.1-70b-specdec",
                                     {"speculation.strategy": "async",
                                      "speculation.max_gamma": 3,
                                      "speculation.monte_carlo_passes": 20000}))


def test_async_strategy_on_the_machine(async_run):
    s = async_run.speculation
    assert s["strategy"] == "async" and s["pipelined"]
    assert s["verify_width"] == s["gamma"] and 1 <= s["gamma"] <= 3
    a = s["async"]
    # many runs in flight: the pipeline is far deeper than the drafter's step
    assert 0 < a["initiation_interval_us"] < s["draft_step_us"] < s["verify_step_us"]
    assert a["runs_in_flight"] > 5
    assert s["monte_carlo_tokens_per_second"] == pytest.approx(s["tokens_per_second"],
                                                               rel=0.01)
    # window 1 reproduces the hand-derived renewal formula with the machine's own costs
    if s["gamma"] == 1:
        acc = s["acceptance"]["a"]
        tv, td, o = s["verify_step_us"], s["draft_step_us"], s["overhead_us"]
        expect = 1e6 / (1 - acc) / (tv + acc * o + acc * td / (1 - acc))
        assert s["tokens_per_second"] == pytest.approx(expect, rel=1e-6)
        assert s["verify_step_us"] == pytest.approx(s["baseline_step_us"])
    assert async_run.speedup > 1 and s["break_even_acceptance"] == 0.0


def test_async_needs_a_draft_model():
    from lpusim.errors import ConfigError
    with pytest.raises(ConfigError, match="strategy 'async' needs a draft_model"):
        api.load_scenario("llama-3.1-70b-groqrack-576", {"speculation.strategy": "async"})


def test_async_histogram_counts_runs():
    m = simulate_async(ConstantAcceptance(0.5), 2, 10_000, 3, 100, 4000, 0, 50, clock_hz=1e9)
    # a run that commits 1 token ends a cycle (or its window was cut); totals are consistent
    assert sum(m.histogram) >= 10_000
    tokens = np.dot(m.histogram, [1, 2])
    assert m.mean_tokens_per_run == pytest.approx(tokens / sum(m.histogram))


def test_cli_speculate_async_textbook():
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "lpusim.cli", "speculate", "--acceptance", "0.9",
                          "--cost-ratio", "0.03", "--pipeline-stages", "72", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    # window 1, drafter slower than a stage: 1 / ((1 - a) + a c) target steps per token
    assert d["async_speedup"] == pytest.approx(1 / (0.1 + 0.9 * 0.03), rel=1e-9)
    assert d["gamma"] == 16 and d["async_speedup"] > d["speedup"]
    # a drafter faster than a stage is throttled by the pipeline: at a = 1, one token a stage
    out = subprocess.run([sys.executable, "-m", "lpusim.cli", "speculate", "--acceptance", "1",
                          "--cost-ratio", "0", "--pipeline-stages", "10", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["async_speedup"] == pytest.approx(10, rel=0.01)
