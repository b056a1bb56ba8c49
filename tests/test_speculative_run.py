"""Speculation on the simulated machine: real step costs, both evaluators, CLI contract."""

import json
import subprocess
import sys

import pytest

from lpusim import api


@pytest.fixture(scope="module")
def specdec():
    return api.run(api.load_scenario("llama-3.1-70b-specdec",
                                     {"speculation.max_gamma": 8,
                                      "speculation.monte_carlo_passes": 100000}))


def test_drafter_step_much_shorter_than_target(specdec):
    s = specdec.speculation
    assert s["draft_chips"] == 8                      # Llama 3.2 1B fits one node
    # one stage against the target's dozens, but it pays the fixed cost of its own 35
    # collectives: about a tenth of the target's step
    assert s["draft_step_us"] < 0.15 * s["baseline_step_us"]


def test_verification_costs_more_than_one_token_but_less_than_gamma_steps(specdec):
    s = specdec.speculation
    assert s["baseline_step_us"] < s["verify_step_us"] < s["gamma"] * s["baseline_step_us"]


def test_closed_form_and_monte_carlo_agree(specdec):
    s = specdec.speculation
    assert s["monte_carlo_tokens_per_second"] == pytest.approx(s["tokens_per_second"], rel=0.01)
    hist = s["tokens_per_pass_histogram"]
    assert len(hist) == s["gamma"] + 1 and sum(hist) == s["monte_carlo_passes"]


def test_speedup_and_contract(specdec):
    assert specdec.speedup == pytest.approx(specdec.tokens_per_second
                                            / specdec.baseline_tokens_per_second)
    assert specdec.speedup > 1
    assert specdec.speculation["gamma"] == max(
        specdec.speculation["gamma_curve"], key=lambda r: r["tokens_per_second"])["gamma"]


def test_zero_acceptance_never_beats_baseline():
    r = api.run(api.load_scenario("llama-3.1-70b-specdec",
                                  {"speculation.acceptance": 0.0, "speculation.max_gamma": 3,
                                   "speculation.monte_carlo_passes": 1000}))
    assert r.tokens_per_second < r.baseline_tokens_per_second


def test_cli_speculate_reproduces_leviathan():
    out = subprocess.run([sys.executable, "-m", "lpusim.cli", "speculate", "--acceptance",
                          "0.9", "--cost-ratio", "0.02", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    assert d["gamma"] == 19 and round(d["speedup"], 1) == 6.4
    out = subprocess.run([sys.executable, "-m", "lpusim.cli", "speculate", "--acceptance",
                          "0.9", "--cost-ratio", "0", "--gamma", "4", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["expected_tokens_per_pass"] == pytest.approx(4.0951)


def test_cli_run_speculation_json_keys():
    out = subprocess.run([sys.executable, "-m", "lpusim.cli", "run", "--draft", "llama-3.2-1b",
                          "--acceptance", "0.8", "--gamma", "4", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    for k in ("baseline_tokens_per_second", "speedup", "speculation"):
        assert k in d
    for k in ("strategy", "gamma", "expected_tokens_per_pass", "draft_chips", "draft_step_us",
              "verify_step_us", "p50_token_latency_us", "p99_token_latency_us"):
        assert k in d["speculation"]
    assert d["speculation"]["gamma"] == 4


def test_tree_verification_width_and_acceptance():
    from lpusim.speculative.acceptance import ConstantAcceptance
    from lpusim.speculative.strategies import TreeAcceptance, tree_nodes
    assert tree_nodes(2, 3) == 2 + 4 + 8
    t = TreeAcceptance(ConstantAcceptance(0.6), 2)
    # a level is accepted if either of 2 candidates is: 1 - 0.4^2 = 0.84
    assert t.expected_tokens(2) == pytest.approx(1 + 0.84 + 0.84**2)
    r = api.run(api.load_scenario("llama-3.1-70b-groqrack-576", {
        "speculation.strategy": "heads", "speculation.heads": 3, "speculation.tree_width": 2,
        "speculation.gamma": 2, "speculation.acceptance": 0.6,
        "speculation.monte_carlo_passes": 1000}))
    s = r.speculation
    assert s["verify_width"] == 1 + 2 + 4
    assert s["expected_tokens_per_pass"] == pytest.approx(1 + 0.84 + 0.84**2)
    assert s["verify_step_us"] > r.step_latency_us


def test_pipelined_drafter_closed_form_and_monte_carlo():
    base = {"speculation.max_gamma": 8, "speculation.monte_carlo_passes": 100000}
    seq = api.run(api.load_scenario("llama-3.1-70b-specdec", base))
    pip = api.run(api.load_scenario("llama-3.1-70b-specdec",
                                    {**base, "speculation.pipelined": True}))
    s = pip.speculation
    assert s["pipelined"] and 0 < s["head_start_probability"] < 1
    # the head start is the drafting, at most the verification it overlaps
    assert s["head_start_us"] == pytest.approx(min(s["gamma"] * s["draft_step_us"],
                                                   s["verify_step_us"] + s["overhead_us"]))
    assert pip.tokens_per_second > seq.tokens_per_second
    assert s["monte_carlo_tokens_per_second"] == pytest.approx(s["tokens_per_second"], rel=0.01)
    # closed form: E / (gamma T_d + T_v + overhead - P(head start) x head start)
    pass_us = (s["gamma"] * s["draft_step_us"] + s["verify_step_us"] + s["overhead_us"]
               - s["head_start_probability"] * s["head_start_us"])
    assert s["tokens_per_second"] == pytest.approx(s["expected_tokens_per_pass"] * 1e6 / pass_us)


def test_verifying_17_positions_costs_little_more_than_one_token():
    # the weights are read once whatever the width: 17 positions cost ~1.2x one token on the
    # calibrated default system, and the extra is attention/softmax and link traffic
    from lpusim.deploy import resolve
    from lpusim.runner import baseline_step, load_scenario
    sc, _ = resolve(load_scenario("llama-3.1-70b-specdec"))
    one, wide = baseline_step(sc, 1), baseline_step(sc, 17)
    assert 1.0 < wide.latency_cycles / one.latency_cycles < 1.25
    grew = {k: wide.breakdown_cycles[k] - one.breakdown_cycles[k] for k in one.breakdown_cycles}
    assert grew["synchronisation"] == 0
    assert grew["compute_mxm"] < 0.15 * one.breakdown_cycles["compute_mxm"]
    assert max(grew, key=grew.get) in ("link_serialisation", "compute_vxm")


@pytest.mark.parametrize("strategy", ["draft", "async"])
def test_pruned_gamma_search_finds_the_exhaustive_optimum(strategy):
    # the search stops early on a bound; evaluating every gamma one by one agrees
    base = {"speculation.strategy": strategy, "speculation.max_gamma": 20,
            "speculation.monte_carlo_passes": 100}
    for a in (0.6, 0.9):
        auto = api.run(api.load_scenario("llama-3.1-70b-specdec",
                                         {**base, "speculation.acceptance": a}))
        each = [api.run(api.load_scenario("llama-3.1-70b-specdec", {
            **base, "speculation.acceptance": a, "speculation.gamma": g})).tokens_per_second
            for g in range(1, 21)]
        assert auto.speculation["gamma"] == 1 + each.index(max(each))
        assert auto.tokens_per_second == max(each)


def test_verification_never_gets_cheaper_with_width():
    # what the early stop of the gamma search rests on
    from lpusim.deploy import resolve
    from lpusim.runner import baseline_step, load_scenario
    for name, ov in (("llama-3.1-70b-specdec", {}),
                     ("llama-3.1-70b-groqrack-576", {"model": "llama-3.2-1b", "chips": 8,
                                                     "context_window": 8192})):
        sc, _ = resolve(load_scenario(name, ov))
        lat = [baseline_step(sc, w).latency_cycles for w in range(1, 22)]
        assert all(a <= b for a, b in zip(lat, lat[1:], strict=False)), lat


def test_a_drafter_with_a_shorter_context_keeps_its_own_window():
    # Llama 2 7B (4k) drafting in an 8k window: sized and simulated for its own 4k, it fits
    # the 5 nodes the policy gives it (before the fix it was simulated at 8k and overflowed)
    r = api.run(api.load_scenario("llama-3.1-70b-specdec", {
        "speculation.draft_model": "llama-2-7b", "speculation.gamma": 2,
        "speculation.monte_carlo_passes": 100}))
    assert r.speculation["draft_chips"] == 40 and r.speedup > 1


@pytest.mark.parametrize("strategy", ["draft", "async"])
def test_every_gamma_curve_has_the_searched_optimum(strategy):
    base = {"speculation.strategy": strategy, "speculation.max_gamma": 12,
            "speculation.monte_carlo_passes": 100}
    searched = api.run(api.load_scenario("llama-3.1-70b-specdec", base)).speculation
    every = api.run(api.load_scenario("llama-3.1-70b-specdec",
                                      {**base, "speculation.curve": "every"})).speculation
    assert [c["gamma"] for c in every["gamma_curve"]] == list(range(1, 13))
    assert {c["gamma"] for c in searched["gamma_curve"]} <= set(range(1, 13))
    assert (searched["gamma"], searched["tokens_per_second"]) == (every["gamma"],
                                                                  every["tokens_per_second"])
    # the searched points are exactly the curve's points at those gammas
    at = {c["gamma"]: c for c in every["gamma_curve"]}
    assert all(c == at[c["gamma"]] for c in searched["gamma_curve"])


def test_a_bad_curve_value_is_one_line_naming_the_field(capsys):
    from lpusim import cli
    rc = cli.main(["run", "llama-3.1-70b-specdec", "--set", "speculation.curve=all"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "speculation.curve: 'all' is not one of searched, every" in err[0]
