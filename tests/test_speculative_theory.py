"""Closed-form speculative-decoding theory and its Monte Carlo cross-check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpusim.speculative import (
    PRESETS,
    ConstantAcceptance,
    MixtureAcceptance,
    PositionalAcceptance,
    TraceAcceptance,
    break_even_acceptance,
    expected_tokens_iid,
    extra_arithmetic,
    optimal_gamma,
    simulate_passes,
    speedup,
    speedup_with_costs,
)


@pytest.mark.parametrize(
    ("a", "gamma_star", "s_star"), [(0.8, 11, 3.8), (0.9, 19, 6.4)]
)
def test_leviathan_worked_optimum(a: float, gamma_star: int, s_star: float) -> None:
    g, s = optimal_gamma(a, 0.02)
    assert g == gamma_star
    assert round(s, 1) == s_star


@pytest.mark.parametrize(
    ("a", "gamma", "expected"), [(0.6, 2, 1.96), (0.7, 3, 2.53), (0.8, 5, 3.69), (0.9, 10, 6.86)]
)
def test_leviathan_table1_zero_cost(a: float, gamma: int, expected: float) -> None:
    assert round(speedup(ConstantAcceptance(a), gamma, 0.0), 2) == expected


def test_bonus_token_counts() -> None:
    assert expected_tokens_iid(0.9, 4) == pytest.approx(4.0951, abs=1e-12)
    assert expected_tokens_iid(0.0, 4) == 1.0
    assert expected_tokens_iid(1.0, 4) == 5.0
    assert expected_tokens_iid(0.5, 0) == 1.0


@given(st.floats(0.0, 0.999), st.integers(0, 40))
def test_iid_sum_matches_closed_form(a: float, gamma: int) -> None:
    closed = (1 - a ** (gamma + 1)) / (1 - a)
    assert expected_tokens_iid(a, gamma) == pytest.approx(closed, rel=1e-9)


def test_mixture_vs_flat_reference_values() -> None:
    mix = MixtureAcceptance(((0.5, ConstantAcceptance(0.95)), (0.5, ConstantAcceptance(0.55))))
    assert round(mix.expected_tokens(7), 2) == 4.47
    assert round(ConstantAcceptance(0.75).expected_tokens(7), 2) == 3.60
    assert PRESETS["bursty-mix"].expected_tokens(7) == pytest.approx(mix.expected_tokens(7))


def test_optimal_gamma_ties_go_to_smaller() -> None:
    # a = 1, c = 1: E/(g c + 1) = (g + 1)/(g + 1) = 1 for every gamma.
    assert optimal_gamma(1.0, 1.0, max_gamma=10) == (1, 1.0)


def test_optimal_gamma_capped_by_trace_length() -> None:
    trace = TraceAcceptance((3, 3, 3), drafted=3)
    assert optimal_gamma(trace, 0.0) == (3, 4.0)


def test_speedup_with_costs_general_form() -> None:
    model = ConstantAcceptance(0.8)
    e = model.expected_tokens(4)
    assert speedup_with_costs(model, 4, 10, 120, 100, 30) == pytest.approx(e * 100 / 190)
    # reduces to the normalised form when verify costs one baseline step
    assert speedup_with_costs(model, 4, 2, 100, 100) == pytest.approx(speedup(model, 4, 0.02))


def test_speedup_rejects_bad_costs() -> None:
    with pytest.raises(ValueError, match="cost_ratio must be finite and >= 0, got -1"):
        speedup(0.8, 4, -1)
    with pytest.raises(ValueError, match="positive number of cycles"):
        speedup_with_costs(0.8, 0, 1, 0, 1)


def test_break_even_acceptance() -> None:
    a = break_even_acceptance(4, 10, 120, 100, 5)
    assert a is not None and 0 < a < 1
    assert speedup_with_costs(a, 4, 10, 120, 100, 5) >= 1.0
    assert speedup_with_costs(a, 4, 10, 120, 100, 5) == pytest.approx(1.0, abs=1e-7)
    # even a = 0 wins: the pass costs no more than one plain step
    assert break_even_acceptance(4, 0, 90, 100) == 0.0
    # even a = 1 loses: 5 tokens for the cost of 6 steps
    assert break_even_acceptance(4, 100, 200, 100) is None
    # exactly even at a = 1
    assert break_even_acceptance(4, 100, 100, 100) == pytest.approx(1.0, abs=1e-9)


def test_extra_arithmetic() -> None:
    a, g, c = 0.8, 5, 0.05
    leviathan = (1 - a) * (g * c + g + 1) / (1 - a ** (g + 1))
    assert extra_arithmetic(a, g, c) == pytest.approx(leviathan)
    assert extra_arithmetic(1.0, g, 0.0) == pytest.approx(1.0)


def test_montecarlo_agrees_with_closed_form() -> None:
    for a, gamma in [(0.8, 5), (0.9, 10), (0.6, 3)]:
        r = simulate_passes(ConstantAcceptance(a), gamma, 100_000, seed=7,
                            draft_step_cycles=10, verify_step_cycles=100, clock_hz=1e9)
        closed = expected_tokens_iid(a, gamma)
        assert math.isclose(r.mean_tokens_per_pass, closed, rel_tol=0.01)
        assert r.tokens_per_second == pytest.approx(
            r.mean_tokens_per_pass * 1e9 / (gamma * 10 + 100))


def test_montecarlo_mixture_and_positional_agree() -> None:
    for model in (PRESETS["bursty-mix"], PRESETS["eagle1-llama2-70b-mtbench"]):
        r = simulate_passes(model, 7, 100_000, seed=3, draft_step_cycles=5,
                            verify_step_cycles=50, clock_hz=1e9)
        assert math.isclose(r.mean_tokens_per_pass, model.expected_tokens(7), rel_tol=0.01)


def test_montecarlo_is_deterministic_and_latency_defined_per_token() -> None:
    kw = {"draft_step_cycles": 100, "verify_step_cycles": 600, "overhead_cycles": 300,
          "clock_hz": 1e9}
    r1 = simulate_passes(ConstantAcceptance(0.7), 4, 10_000, seed=11, **kw)
    r2 = simulate_passes(ConstantAcceptance(0.7), 4, 10_000, seed=11, **kw)
    assert r1 == r2
    assert r1.pass_cycles == 1300
    pass_us = 1.3
    allowed = {pass_us / k for k in range(1, 6)}
    assert any(r1.p50_token_latency_us == pytest.approx(v) for v in allowed)
    assert any(r1.p99_token_latency_us == pytest.approx(v) for v in allowed)
    assert r1.p50_token_latency_us <= r1.p99_token_latency_us


def test_montecarlo_token_weighted_percentiles() -> None:
    # every pass accepts everything: all tokens share the same latency
    r = simulate_passes(ConstantAcceptance(1.0), 3, 100, seed=0, draft_step_cycles=1,
                        verify_step_cycles=1, clock_hz=1e6)
    assert r.histogram == (0, 0, 0, 100)
    assert r.p50_token_latency_us == pytest.approx(1.0)
    assert r.p99_token_latency_us == pytest.approx(1.0)
    # half the passes commit 1 token (latency T), half commit 4 (T/4): 4/5 of tokens are fast
    trace = TraceAcceptance((0, 3), drafted=3)
    r = simulate_passes(trace, 3, 1000, seed=0, draft_step_cycles=0, verify_step_cycles=1000,
                        clock_hz=1e9)
    assert r.histogram == (500, 0, 0, 500)
    assert r.p50_token_latency_us == pytest.approx(0.25)
    assert r.p99_token_latency_us == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.integers(0, 12),
    st.integers(1, 300),
    st.integers(0, 2**32 - 1),
)
def test_montecarlo_histogram_support(p: float, q: float, gamma: int, n: int, seed: int) -> None:
    model = MixtureAcceptance(((0.5, ConstantAcceptance(p)), (0.5, PositionalAcceptance((q, p)))))
    r = simulate_passes(model, gamma, n, seed, draft_step_cycles=1, verify_step_cycles=3,
                        clock_hz=1e9)
    assert len(r.histogram) == gamma + 1
    assert sum(r.histogram) == n
    assert all(h >= 0 for h in r.histogram)
    assert r.total_tokens == sum(k * h for k, h in enumerate(r.histogram, start=1))
    assert 1 <= r.mean_tokens_per_pass <= gamma + 1


def test_simulate_rejects_bad_arguments() -> None:
    m = ConstantAcceptance(0.5)
    with pytest.raises(ValueError, match="n_passes must be >= 1, got 0"):
        simulate_passes(m, 4, 0, 1, 1, 1, clock_hz=1e9)
    with pytest.raises(ValueError, match="clock_hz must be > 0"):
        simulate_passes(m, 4, 10, 1, 1, 1, clock_hz=0)
    with pytest.raises(ValueError, match="exceeds the draft length 3"):
        simulate_passes(TraceAcceptance((1, 2), 3), 4, 10, 1, 1, 1, clock_hz=1e9)


def test_sampling_is_fast() -> None:
    rng = np.random.default_rng(0)
    out = PRESETS["bursty-mix"].sample_accepted(16, 1_000_000, rng)
    assert out.shape == (1_000_000,) and out.min() >= 0 and out.max() <= 16
