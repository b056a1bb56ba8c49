"""The speculation strategy registry: one list of names (lpusim.strategy_traits) that the
schema, CLI, serving, deployment and report read, one protocol (registry.Strategy), and a
typed result whose `to_dict()` is the result JSON's contract."""

import dataclasses
from pathlib import Path

import pytest

from lpusim import api, cli, serve, strategy_traits
from lpusim.errors import ConfigError
from lpusim.report.tables import run_table
from lpusim.speculative import registry
from lpusim.speculative.strategies import STRATEGIES, evaluate
from lpusim.strategy_traits import TRAITS, StrategyTraits

SMALL = str(Path(__file__).parent / "data" / "small-specdec.yaml")

# the result JSON's keys, in order, as every strategy returned them before the registry
KEYS = ["strategy", "gamma", "gamma_search", "expected_tokens_per_pass", "tokens_per_second",
        "monte_carlo_tokens_per_second", "monte_carlo_mean_tokens_per_pass",
        "tokens_per_pass_histogram", "p50_token_latency_us", "p99_token_latency_us",
        "draft_model", "draft_chips", "pipelined", "head_start_us", "head_start_probability",
        "total_chips", "heads", "draft_step_us", "verify_width", "tree_width",
        "verify_step_us", "baseline_step_us", "overhead_us", "cost_ratio",
        "verify_cost_ratio", "break_even_acceptance", "acceptance", "monte_carlo_passes",
        "seed", "gamma_curve"]
ASYNC_KEYS = ["initiation_interval_us", "runs_in_flight", "tokens_per_cycle", "cycle_us",
              "runs_launched_per_token", "horizon"]
CURVE_KEYS = ["gamma", "tokens_per_second", "expected_tokens_per_pass", "verify_width",
              "verify_step_cycles"]
OVERRIDES = {"draft": {}, "async": {"speculation.strategy": "async"},
             "heads": {"speculation.strategy": "heads", "speculation.heads": 4}}


def test_every_shipped_name_has_its_strategy_in_order():
    assert list(STRATEGIES) == list(TRAITS) == ["draft", "async", "heads"]
    for name, s in STRATEGIES.items():
        assert s.name == name and s.traits is TRAITS[name]
        assert isinstance(s, registry.Strategy)
    assert [n for n, t in TRAITS.items() if t.needs_drafter] == ["draft", "async"]
    assert [n for n, t in TRAITS.items() if t.drafter_own_chips] == ["async"]


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_to_dict_keys_are_the_recorded_ones(name):
    r = api.run(api.load_scenario(SMALL, OVERRIDES[name]))
    d = r.speculation
    assert list(d) == KEYS + (["async"] if name == "async" else [])
    assert d["strategy"] == name
    assert all(list(p) == CURVE_KEYS for p in d["gamma_curve"])
    assert isinstance(d["gamma_curve"], list) and isinstance(d["tokens_per_pass_histogram"],
                                                             list)
    if name == "async":
        assert list(d["async"]) == ASYNC_KEYS


def test_typed_result_is_frozen_and_agrees_with_its_dict():
    sc = api.load_scenario(SMALL, OVERRIDES["async"])
    from lpusim.deploy import resolve
    from lpusim.runner import baseline_step
    sc, _ = resolve(sc)
    res = evaluate(sc, baseline_step(sc))
    assert isinstance(res, registry.SpeculationResult) and res.async_ is not None
    d = res.to_dict()
    assert d["tokens_per_second"] == res.tokens_per_second
    assert d["async"]["horizon"] == res.async_.horizon
    assert [p["gamma"] for p in d["gamma_curve"]] == [p.gamma for p in res.gamma_curve]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.gamma = 3  # type: ignore[misc]


def test_async_is_refused_on_gpus_with_its_message():
    sc = api.load_scenario("llama-3.1-70b-h100x8", {"speculation.strategy": "async",
                                                     "speculation.draft_model": "llama-3.2-1b",
                                                     "speculation.acceptance": 0.8})
    with pytest.raises(ConfigError, match="'async' needs a drafter on chips of its own; on "
                                          "GPUs it shares the target's"):
        api.run(sc)


class _Toy(registry.Strategy):
    """No drafting at all: every pass is the target's own one-token step."""

    traits = StrategyTraits(name="toy", description="one token per pass, the baseline step",
                            label="toy", needs_drafter=False)

    def evaluate(self, sc, baseline):
        us = baseline.latency_us
        spec = sc.speculation
        return registry.SpeculationResult(
            strategy=self.name, gamma=1, gamma_search="fixed", expected_tokens_per_pass=1.0,
            tokens_per_second=1e6 / us, monte_carlo_tokens_per_second=1e6 / us,
            monte_carlo_mean_tokens_per_pass=1.0,
            tokens_per_pass_histogram=(spec.monte_carlo_passes,),
            p50_token_latency_us=us, p99_token_latency_us=us, draft_model=None, draft_chips=0,
            pipelined=False, head_start_us=0.0, head_start_probability=0.0,
            total_chips=sc.chips_used, heads=None, draft_step_us=0.0, verify_width=1,
            tree_width=None, verify_step_us=us, baseline_step_us=us, overhead_us=0.0,
            cost_ratio=0.0, verify_cost_ratio=1.0, break_even_acceptance=None,
            acceptance={"kind": "none"}, monte_carlo_passes=spec.monte_carlo_passes,
            seed=sc.seed, gamma_curve=(registry.GammaPoint(1, 1e6 / us, 1.0, 1,
                                                           baseline.latency_cycles),))


@pytest.fixture
def toy():
    s = registry.register(_Toy())
    try:
        yield s
    finally:
        registry.unregister("toy")


def _run_choices() -> tuple[str, ...]:
    sub = cli.build_parser()._subparsers._group_actions[0].choices["run"]
    return next(a for a in sub._actions if a.dest == "strategy").choices


def test_a_registered_strategy_reaches_every_layer(toy, capsys):
    assert "toy" in _run_choices()
    assert "toy: one token per pass" in strategy_traits.described()
    assert serve.strategy_names()[-1] == "toy"
    # the schema takes it, the runner dispatches to it, the report heads its section with it
    code = cli.main(["run", SMALL, "--strategy", "toy"])
    out = capsys.readouterr().out
    assert code == 0 and "Speculation (toy)" in out
    r = api.run(api.load_scenario(SMALL, {"speculation.strategy": "toy"}))
    assert r.speculation["strategy"] == "toy" and r.speedup == pytest.approx(1.0)
    assert "Speculation (toy)" in run_table(r.to_dict())


def test_a_removed_strategy_is_gone_everywhere(toy):
    registry.unregister("toy")
    try:
        assert "toy" not in _run_choices() and "toy" not in serve.strategy_names()
        with pytest.raises(ConfigError, match="'toy' is not one of draft, async, heads"):
            api.load_scenario(SMALL, {"speculation.strategy": "toy"})
    finally:
        registry.register(toy)       # the fixture removes it again


def test_register_refuses_a_second_strategy_of_a_name_or_other_facts():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(STRATEGIES["draft"])
    # a row of facts (as if shipped in lpusim.strategy_traits) and a strategy that disagrees
    TRAITS["toy"] = dataclasses.replace(_Toy.traits, needs_drafter=True)
    try:
        with pytest.raises(ValueError, match="does not match its row"):
            registry.register(_Toy())
    finally:
        del TRAITS["toy"]
    assert "toy" not in STRATEGIES
    with pytest.raises(ValueError, match="not registered at run time"):
        registry.unregister("draft")


def test_heads_report_line_is_worded_by_the_strategy():
    d = {"scenario": "x", "speculation": {"strategy": "heads", "heads": 4}}
    assert "4 Medusa-style heads on the target" in run_table(d)
    d["speculation"]["strategy"] = "from-a-later-version"
    assert "4 heads on the target" in run_table(d)
