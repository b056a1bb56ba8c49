"""Physical and statistical invariants as property tests (bounded, derandomised).

- faster links (more bandwidth, less hop latency) never make a decode step slower;
- a bigger SRAM never needs more chips;
- speculation that accepts nothing is never faster than the baseline;
- tokens/s, latency, cycles and clock agree with each other;
- the Monte Carlo tokens per pass stay in [1, gamma + 1], and so do its summaries.

Small models and systems keep each example to tens of milliseconds.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lpusim import api
from lpusim.compiler import minimum_chips
from lpusim.config import load
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.runner import baseline_step
from lpusim.speculative import speedup
from lpusim.speculative.acceptance import (
    ConstantAcceptance,
    MixtureAcceptance,
    PositionalAcceptance,
    TraceAcceptance,
)
from lpusim.speculative.montecarlo import simulate_passes

PROPS = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                 suppress_health_check=[HealthCheck.too_slow])
# simulating examples: no shrinking (a failure is reproducible anyway: derandomised)
SIMS = settings(PROPS, phases=[Phase.explicit, Phase.generate])
BASE = "llama-3.1-70b-groqrack-576"
SMALL_MODELS = ["llama-3.2-1b", "llama-3.2-3b"]
# (model, chips) that fit: the 3B model needs two nodes
SMALL_PLACEMENTS = [("llama-3.2-1b", 8), ("llama-3.2-1b", 16), ("llama-3.2-1b", 32),
                    ("llama-3.2-3b", 16), ("llama-3.2-3b", 32)]

ns = st.integers(20, 3000)                      # hop latency, ns
gbs = st.floats(1.0, 200.0).map(lambda x: round(x, 2))   # link bandwidth, GB/s


def step_cycles(model: str, chips: int, local_ns: int, global_ns: int, gb_s: float,
                context: int = 1024) -> int:
    sc = api.load_scenario(BASE, {
        "model": model, "chips": chips, "context": context, "context_window": context,
        "system.links.local_hop_latency_ps": f"{local_ns}ns",
        "system.links.global_hop_latency_ps": f"{global_ns}ns",
        "system.links.bandwidth_bytes_per_s": f"{gb_s}GB/s"})
    return baseline_step(sc).latency_cycles


@settings(SIMS, max_examples=12)
@given(placement=st.sampled_from(SMALL_PLACEMENTS), local=ns, glob=ns, bw=gbs,
       d_local=st.integers(0, 500), d_glob=st.integers(0, 500), bw_factor=st.floats(1.0, 4.0))
def test_faster_links_never_slow_a_step(placement, local, glob, bw, d_local, d_glob,
                                        bw_factor):
    model, chips = placement
    base = step_cycles(model, chips, local, glob, bw)
    faster_hops = step_cycles(model, chips, max(local - d_local, 1), max(glob - d_glob, 1), bw)
    wider = step_cycles(model, chips, local, glob, round(bw * bw_factor, 2))
    assert faster_hops <= base
    assert wider <= base


@settings(PROPS, max_examples=40)
@given(model=st.sampled_from(["llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b",
                              "mixtral-8x7b", "llama-3.1-405b"]),
       tp=st.sampled_from([1, 2, 4, 8, 16]), context=st.sampled_from([512, 4096, 32768]),
       batch=st.sampled_from([1, 4, 32]), mib=st.floats(0.5, 8.0),
       more=st.floats(1.0, 4.0))
def test_bigger_sram_never_needs_more_chips(model, tp, context, batch, mib, more):
    chip = load("chip_configs/groqchip1.yaml")
    m = load(f"workloads/{model}.yaml")
    graph = build_decode_graph(m, GraphParams(context=context, batch=batch))

    def chips_with(slice_mib: float) -> float:
        mem = dataclasses.replace(chip.mem, slice_capacity_bytes=int(slice_mib * 2**20))
        n = minimum_chips(graph, dataclasses.replace(chip, mem=mem), tp)
        return math.inf if n is None else n

    assert chips_with(mib * more) <= chips_with(mib)


@settings(SIMS, max_examples=8)
@given(gamma=st.sampled_from([1, 2, 4, 8]),
       drafter=st.sampled_from([p for p in SMALL_PLACEMENTS if p[1] <= 16]))
def test_no_acceptance_is_never_faster(gamma, drafter):
    draft, drafting_chips = drafter
    sc = api.load_scenario("tests/data/small-specdec.yaml", {
        "speculation.acceptance": 0.0, "speculation.gamma": gamma,
        "speculation.max_gamma": max(gamma, 8), "speculation.draft_model": draft,
        "speculation.draft_chips": drafting_chips})
    r = api.run(sc)
    assert r.tokens_per_second <= r.baseline_tokens_per_second * (1 + 1e-12)
    assert r.speedup <= 1 + 1e-12
    assert r.speculation["expected_tokens_per_pass"] == 1.0


@settings(PROPS, max_examples=200)
@given(gamma=st.integers(1, 64), c=st.floats(0.0, 10.0))
def test_no_acceptance_never_speeds_up_in_theory(gamma, c):
    assert speedup(ConstantAcceptance(0.0), gamma, c) <= 1 + 1e-12


def consistent(r: api.RunResult, clock_hz: int) -> None:
    assert math.isclose(r.tokens_per_second * r.token_latency_us, 1e6, rel_tol=1e-9)
    assert math.isclose(r.baseline_tokens_per_second * r.step_latency_us, 1e6, rel_tol=1e-9)
    assert math.isclose(r.step_latency_us, r.step_latency_cycles / clock_hz * 1e6,
                        rel_tol=1e-9)
    assert math.isclose(r.throughput_tokens_per_second, r.tokens_per_second * r.batch,
                        rel_tol=1e-12)
    assert math.isclose(r.speedup, r.tokens_per_second / r.baseline_tokens_per_second,
                        rel_tol=1e-9)
    assert r.sram_bytes_per_chip_max <= r.sram_capacity_bytes_per_chip
    assert r.stages * r.tensor_parallel == r.chips


@settings(SIMS, max_examples=10)
@given(placement=st.sampled_from(SMALL_PLACEMENTS), batch=st.sampled_from([1, 2, 8]),
       context=st.sampled_from([256, 2048]),
       acceptance=st.sampled_from([None, 0.5, 0.9, "bursty-mix"]))
def test_rates_latencies_and_cycles_agree(placement, batch, context, acceptance):
    model, chips = placement
    ov = {"model": model, "chips": chips, "batch": batch, "context": context,
          "context_window": context}
    if acceptance is None:
        sc = api.load_scenario(BASE, ov)
    else:
        sc = api.load_scenario("tests/data/small-specdec.yaml",
                               {**ov, "speculation.acceptance": acceptance})
    consistent(api.run(sc), sc.system.chip.clock_hz)


def test_shipped_default_is_consistent():
    sc = api.load_scenario()
    consistent(api.run(sc), sc.system.chip.clock_hz)


probs = st.floats(0.0, 1.0)
acceptance_models = st.one_of(
    probs.map(ConstantAcceptance),
    st.lists(probs, min_size=1, max_size=6).map(lambda p: PositionalAcceptance(tuple(p))),
    st.lists(probs, min_size=1, max_size=3).map(
        lambda ps: MixtureAcceptance(tuple((1 / len(ps), ConstantAcceptance(a)) for a in ps))),
    st.lists(st.integers(0, 12), min_size=1, max_size=40).map(
        lambda ls: TraceAcceptance(prefix_lengths=tuple(ls), drafted=12)),
)


@settings(PROPS, max_examples=150)
@given(model=acceptance_models, gamma=st.integers(0, 12), n=st.integers(1, 3000),
       seed=st.integers(0, 2**32), draft=st.floats(0, 1e5), verify=st.floats(1, 1e6),
       overhead=st.floats(0, 1e4))
def test_monte_carlo_tokens_per_pass_in_range(model, gamma, n, seed, draft, verify, overhead):
    r = simulate_passes(model, gamma, n, seed, draft, verify, overhead, clock_hz=900e6)
    assert len(r.histogram) == gamma + 1 and sum(r.histogram) == n
    assert all(h >= 0 for h in r.histogram)
    assert n <= r.total_tokens <= n * (gamma + 1)
    assert 1 <= r.mean_tokens_per_pass <= gamma + 1
    pass_us = r.pass_cycles / 900e6 * 1e6
    assert pass_us / (gamma + 1) * (1 - 1e-12) <= r.p50_token_latency_us \
        <= r.p99_token_latency_us <= pass_us * (1 + 1e-12)
    # closed form and Monte Carlo agree on the range too
    assert 1 <= model.expected_tokens(gamma) <= gamma + 1 + 1e-12
    samples = model.sample_accepted(gamma, 100, np.random.default_rng(seed))
    assert samples.min() >= 0 and samples.max() <= gamma


@pytest.mark.parametrize("acceptance", [0.0, 0.8, 1.0, "bursty-mix"])
def test_run_histogram_in_range(acceptance):
    r = api.run(api.load_scenario("tests/data/small-specdec.yaml",
                                  {"speculation.acceptance": acceptance}))
    spec = r.speculation
    g = spec["gamma"]
    hist = spec["tokens_per_pass_histogram"]
    assert len(hist) == g + 1 and sum(hist) == spec["monte_carlo_passes"]
    assert 1 <= spec["monte_carlo_mean_tokens_per_pass"] <= g + 1
    assert 1 <= spec["expected_tokens_per_pass"] <= g + 1
    if acceptance == 0.0:
        assert hist[0] == sum(hist)
    if acceptance == 1.0:
        assert hist[-1] == sum(hist)
