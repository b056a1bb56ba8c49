"""Speculative decoding on the simulated machine: the built-in strategies (drafter or heads),
with real step costs. Each is a `registry.Strategy` registered under its name (`STRATEGIES`);
`evaluate` runs the scenario's.

Step latencies are not assumed: each comes from compiling and simulating a real decode graph.
- `draft`: a separate draft model on its own chips (placed and compiled like any model; its chip
  count is the scenario's `draft_chips` or the fewest whole tensor-parallel groups that hold
  it). On a GPU system the drafter instead shares the target's GPUs (its own step on them, its
  weights and KV cache in HBM beside the target's), with no hand-off and no pipelining.
  A pass is gamma sequential draft steps, then the target verifies gamma+1 positions in
  one step. The drafted tokens travel to the target and the verdict back: two global-hop
  transfers per pass (`overhead`). With `pipelined`, the drafter drafts the next window while
  the target verifies, betting that the whole window is accepted and that its own next token
  equals the target's bonus token (probability a_(gamma+1)); when the bet holds the next
  pass is shorter by min(gamma draft steps, the verification and overhead). Expected pass
  time: gamma*T_draft + T_verify + overhead - S_gamma * a_(gamma+1) * head start.
- `async`: the same drafter, never waiting for a verdict: every `gamma` drafted tokens enter
  the target as one run of width gamma while earlier runs are still in its pipeline, spaced by
  the target step's initiation interval; a rejection cancels the runs behind it
  (`asynchronous.py`, PipeInfer-style continuous asynchronous speculation).
- `heads`: Medusa-style heads on the target. Each pass is one target step that verifies the
  previous proposals and computes the next ones; no drafter, no overhead beyond the step.
  Chain verification checks gamma <= K tokens (width gamma+1). Tree verification (`tree_width`
  s) checks the top-s candidates of each head as a tree: width 1 + s + s^2 + ... + s^gamma, and
  a level is accepted if any of its s candidates is right, taken as 1 - (1 - a_i)^s
  (candidates assumed independent: an optimistic approximation of top-s accuracy).
Expected tokens per pass come from the acceptance model (bonus token counted); tokens/s is the
closed form E / pass time; a seeded Monte Carlo over `monte_carlo_passes` passes gives the
distribution of tokens per pass and p50/p99 per-token latency. With gamma `auto`, the best
gamma up to `max_gamma` (or K) is found exactly by branch and bound (`search.py`): each
candidate evaluated compiles its own verification step, the candidate with the best bound goes
first, and the search stops once no other can win, so `gamma_curve` lists the gammas actually
evaluated, in ascending order (`speculation.curve: every` evaluates them all).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lpusim import progress
from lpusim.config.specs import (
    GpuSystemSpec,
    HeadsSpec,
    ModelSpec,
    ScenarioSpec,
    SpeculationSpec,
    SystemSpec,
)
from lpusim.deploy import draft_chips
from lpusim.errors import ConfigError, InputError, Issue
from lpusim.gpu import check_shared_memory
from lpusim.parallel import Ahead
from lpusim.sim import StepMetrics
from lpusim.speculative.acceptance import (
    AcceptanceModel,
    MeasuredTreeAcceptance,
    MixtureAcceptance,
    parse_acceptance,
)
from lpusim.speculative.asynchronous import (
    AsyncResult,
    break_even_async,
    evaluate_async,
    simulate_async,
)
from lpusim.speculative.montecarlo import simulate_passes
from lpusim.speculative.registry import (
    STRATEGIES,
    AsyncPart,
    GammaPoint,
    SpeculationResult,
    Strategy,
    register,
)
from lpusim.speculative.search import best_candidate
from lpusim.speculative.theory import break_even_acceptance
from lpusim.step import step_metrics, steps_ahead
from lpusim.strategy_traits import TRAITS
from lpusim.units import ps_to_cycles

__all__ = ["STRATEGIES", "AsyncSpeculation", "DraftThenVerify", "MedusaHeads",
           "SpeculationResult", "Strategy", "TreeAcceptance", "acceptance_of", "evaluate",
           "strategy", "tree_nodes"]


@dataclasses.dataclass(frozen=True)
class TreeAcceptance(AcceptanceModel):
    """Acceptance of a tree of top-s candidates per position, from a chain model."""

    base: AcceptanceModel
    width: int

    def _level(self, model: AcceptanceModel, gamma: int) -> np.ndarray:
        return np.cumprod(1.0 - (1.0 - model.position_probs(gamma)) ** self.width)

    def survival(self, gamma: int) -> np.ndarray:
        if isinstance(self.base, MixtureAcceptance):   # the component holds for a whole pass
            return np.asarray(sum(w * self._level(m, gamma) for w, m in self.base.components))
        return self._level(self.base, gamma)

    def max_gamma(self) -> int | None:
        return self.base.max_gamma()

    def describe(self) -> dict[str, Any]:
        return {"kind": "tree", "width": self.width, "base": self.base.describe()}


def tree_nodes(width: int, depth: int) -> int:
    """Candidate tokens in a full tree of `depth` levels with `width` children per node."""
    return sum(width ** d for d in range(1, depth + 1))


def acceptance_of(sc: ScenarioSpec) -> AcceptanceModel:
    spec = sc.speculation
    assert spec is not None
    base = Path(sc.file).parent if sc.file else None
    try:
        return parse_acceptance(spec.acceptance, base_dir=base)
    except ValueError as e:
        raise ConfigError(Issue(sc.file or "scenario", None, None, "speculation.acceptance",
                                str(e))) from None


def _bet(acc: AcceptanceModel, gamma: int) -> float:
    """P(the drafter's guess of the bonus token is right): a_(gamma+1), or a_gamma when the
    model cannot say (a trace recorded at length gamma)."""
    try:
        return float(acc.position_probs(gamma + 1)[gamma])
    except ValueError:
        return float(acc.position_probs(gamma)[gamma - 1])


def _head_start(acc: AcceptanceModel, gamma: int, draft_cycles: int, verify_cycles: int,
                pipelined: bool) -> tuple[int, float]:
    """(cycles saved when the bet holds, probability a pass gets them)."""
    if not pipelined or draft_cycles == 0:
        return 0, 0.0
    head = min(gamma * draft_cycles, verify_cycles)
    return head, float(acc.survival(gamma)[gamma - 1]) * _bet(acc, gamma)


class Stepper:
    """The scenario's step at (model, chips, tp, width, with heads), compiled and simulated;
    `widths`, a search's steps computed ahead."""

    def __init__(self, sc: ScenarioSpec):
        self.sc = sc

    def _inputs(self, model: ModelSpec, chips: int, tp: int, width: int,
                heads: bool) -> dict[str, Any]:
        sc = self.sc
        # a drafter with a shorter maximum context keeps (and attends over) at most that
        window = min(sc.window, model.max_context)
        return dict(model=model, system=sc.system, chips=chips, tp=tp, positions=width,
                    batch=sc.batch, context=min(sc.context, window), precision=sc.precision,
                    with_heads=heads, fidelity=sc.fidelity,
                    context_window=sc.context_window if window == sc.window else window,
                    expert_parallel=bool(sc.expert_parallel) and model.name == sc.model.name)

    def __call__(self, model: ModelSpec, chips: int, tp: int, width: int,
                 heads: bool) -> StepMetrics:
        return step_metrics(**self._inputs(model, chips, tp, width, heads))

    def widths(self, model: ModelSpec, chips: int, tp: int, heads: bool,
               width_of: Callable[[int], int]) -> Ahead[int, StepMetrics]:
        """The steps of a search's candidates k, each at `width_of(k)`, those it will likely
        ask for next computed ahead in other processes (`lpusim.step.steps_ahead`), which
        this process then keeps as its own (a later search, at another acceptance say,
        reuses them)."""
        return steps_ahead(lambda k: self._inputs(model, chips, tp, width_of(k), heads))


def _drafter(strategy: Strategy, sc: ScenarioSpec, baseline: StepMetrics, step: Stepper
             ) -> tuple[StepMetrics, int, int]:
    """The drafter's step, its own chips and the hand-off cycles per pass. On GPUs the
    drafter shares the target's GPUs (no chips of its own, no hand-off), which a strategy
    whose drafter never waits cannot do."""
    spec = sc.speculation
    assert spec is not None and spec.draft_model is not None
    if isinstance(sc.system, GpuSystemSpec):
        if strategy.drafter_own_chips:
            raise ConfigError(Issue(sc.file or "scenario", None, None, "speculation.strategy",
                                    f"'{strategy.name}' needs a drafter on chips of its own; "
                                    f"on GPUs it shares the target's"))
        draft = step(spec.draft_model, sc.chips_used, sc.tp, 1, False)
        check_shared_memory(sc.system, baseline, draft, spec.draft_model.name)
        return draft, 0, 0
    d_chips, d_tp = draft_chips(sc)      # lpusim.deploy decides
    draft = step(spec.draft_model, d_chips, d_tp, 1, False)
    assert isinstance(sc.system, SystemSpec)
    overhead = 2 * ps_to_cycles(sc.system.links.global_hop_latency_ps, sc.system.chip.clock_hz)
    return draft, d_chips, overhead


def _gammas(sc: ScenarioSpec, acc: AcceptanceModel, limit: int) -> tuple[range, int]:
    """The draft lengths (async: windows) to evaluate, and the strategy's `limit` after the
    acceptance model's own."""
    spec = sc.speculation
    assert spec is not None
    measured = isinstance(acc, MeasuredTreeAcceptance)
    if measured:
        # a published tree has its own shape: its depth is the draft length, and the heads
        # (or the drafter) propose its nodes
        limit = acc.depth  # type: ignore[attr-defined]
    cap = acc.max_gamma() if hasattr(acc, "max_gamma") else None
    if cap is not None:
        limit = min(limit, cap)
    if measured and spec.gamma == "auto":
        return range(limit, limit + 1), limit
    if spec.gamma == "auto":
        return range(1, limit + 1), limit
    g = int(spec.gamma)
    if g > limit:
        raise ConfigError(Issue(sc.file or "scenario", None, None, "speculation.gamma",
                                f"gamma {g} exceeds what this strategy allows ({limit})"))
    return range(g, g + 1), limit


def _verify_floor(sc: ScenarioSpec, baseline: StepMetrics, target: ModelSpec,
                  with_heads: bool) -> int:
    """Cycles no verification step can be shorter than: the baseline, which is the same step
    at width 1 when the target verifies without heads (the same model on the same chips)."""
    return 0 if with_heads or target != sc.model else baseline.latency_cycles


def _chain(name: str, sc: ScenarioSpec, baseline: StepMetrics, step: Stepper,
           acc: AcceptanceModel, gammas: range, *, target: ModelSpec, with_heads: bool,
           draft_cycles: int, overhead: int, d_chips: int, pipelined: bool,
           heads: int | None, tree_width: int | None) -> SpeculationResult:
    """A pass of gamma drafted tokens (from a drafter, or from the previous pass's heads) and
    one verification step: the best gamma of `gammas`, its Monte Carlo and its parts."""
    spec = sc.speculation
    assert spec is not None
    clock = sc.system.chip.clock_hz
    measured = isinstance(acc, MeasuredTreeAcceptance)
    base_cycles = baseline.latency_cycles
    tree = tree_width or 1

    def width_of(g: int) -> int:
        return acc.nodes + 1 if measured else 1 + tree_nodes(tree, g)  # type: ignore[attr-defined]

    expected: dict[int, float] = {}
    bet_on: dict[int, float] = {}           # P(a pass gets the head start), per gamma

    def tokens_per_second(g: int, verify: int) -> float:
        # the acceptance terms depend on g alone: computed once per g (the search asks often)
        if g not in expected:
            expected[g] = acc.expected_tokens(g)
            bet_on[g] = _head_start(acc, g, draft_cycles, 0, pipelined)[1]
        head = min(g * draft_cycles, verify + overhead)     # what a head start saves
        pass_cycles = g * draft_cycles + verify + overhead - bet_on[g] * head
        return expected[g] * clock / max(1e-9, pass_cycles)

    # the pass time grows with the verification step (a head start saves at most what the
    # step adds), so a step no shorter than the one below bounds a candidate's tokens/s
    with (progress.bar(len(gammas), f"{name}: verify widths", "gamma") as bar,
          step.widths(target, sc.chips_used, sc.tp, with_heads, width_of) as steps):
        def verify_of(g: int) -> int:
            bar.update()
            return steps.get(g).latency_cycles

        floor = _verify_floor(sc, baseline, target, with_heads)
        found = best_candidate(gammas, verify_of, tokens_per_second,
                               lambda g, below: (math.inf if spec.curve == "every"
                                                 else tokens_per_second(g, below or floor)),
                               steps.ahead)
    curve = [GammaPoint(gamma=g, tokens_per_second=found.values[g],
                        expected_tokens_per_pass=acc.expected_tokens(g), verify_width=width_of(g),
                        verify_step_cycles=v) for g, v in found.evaluated.items()]
    tps, gamma, verify = found.value, found.best, found.evaluated[found.best]
    head, p_head = _head_start(acc, gamma, draft_cycles, verify + overhead, pipelined)
    mc = simulate_passes(acc, gamma, spec.monte_carlo_passes, sc.seed, draft_cycles, verify,
                         overhead, clock_hz=clock, head_start_cycles=head,
                         head_start_prob=_bet(acc, gamma) if head else 0.0)
    us = 1e6 / clock
    return SpeculationResult(
        strategy=name,
        gamma=gamma,
        gamma_search="auto" if spec.gamma == "auto" else "fixed",
        expected_tokens_per_pass=acc.expected_tokens(gamma),
        tokens_per_second=tps,
        monte_carlo_tokens_per_second=mc.tokens_per_second,
        monte_carlo_mean_tokens_per_pass=mc.mean_tokens_per_pass,
        tokens_per_pass_histogram=tuple(int(x) for x in mc.histogram),
        p50_token_latency_us=mc.p50_token_latency_us,
        p99_token_latency_us=mc.p99_token_latency_us,
        draft_model=spec.draft_model.name if spec.draft_model else None,
        draft_chips=d_chips,
        pipelined=bool(pipelined),
        head_start_us=head * us,
        head_start_probability=p_head,
        total_chips=sc.chips_used + d_chips,
        heads=heads,
        draft_step_us=draft_cycles * us,
        verify_width=width_of(gamma),
        tree_width=tree_width,
        verify_step_us=verify * us,
        baseline_step_us=base_cycles * us,
        overhead_us=overhead * us,
        cost_ratio=draft_cycles / base_cycles,
        verify_cost_ratio=verify / base_cycles,
        break_even_acceptance=break_even_acceptance(gamma, draft_cycles, verify, base_cycles,
                                                    overhead),
        acceptance=acc.describe(),
        monte_carlo_passes=spec.monte_carlo_passes,
        seed=sc.seed,
        gamma_curve=tuple(curve),
    )


@dataclasses.dataclass(frozen=True)
class _Drafted:
    """What the strategies with a drafter start from: the acceptance, the step function, the
    drafter's step, chips and hand-off cycles, the gammas (windows) to search and the model
    that verifies."""

    spec: SpeculationSpec
    acc: AcceptanceModel
    step: Stepper
    draft: StepMetrics
    chips: int
    overhead: int
    gammas: range
    target: ModelSpec
    with_heads: bool

    @staticmethod
    def of(strategy: Strategy, sc: ScenarioSpec, baseline: StepMetrics) -> _Drafted:
        spec = sc.speculation
        assert spec is not None
        acc = acceptance_of(sc)
        step = Stepper(sc)
        draft, chips, overhead = _drafter(strategy, sc, baseline, step)
        gammas, _ = _gammas(sc, acc, spec.max_gamma)
        target, with_heads = strategy.verify_target(sc)
        return _Drafted(spec, acc, step, draft, chips, overhead, gammas, target, with_heads)


class DraftThenVerify(Strategy):
    """`draft`: gamma sequential draft steps, then one verification of gamma+1 positions
    (optionally pipelined on LPUs: the next window is drafted during verification)."""

    traits = TRAITS["draft"]

    def evaluate(self, sc: ScenarioSpec, baseline: StepMetrics) -> SpeculationResult:
        d = _Drafted.of(self, sc, baseline)
        # pipelining needs the drafter's own chips: on GPUs it takes turns with the target
        pipelined = d.spec.pipelined and not isinstance(sc.system, GpuSystemSpec)
        return _chain(self.name, sc, baseline, d.step, d.acc, d.gammas, target=d.target,
                      with_heads=d.with_heads, draft_cycles=d.draft.latency_cycles,
                      overhead=d.overhead, d_chips=d.chips, pipelined=pipelined, heads=None,
                      tree_width=None)


class AsyncSpeculation(Strategy):
    """`async`: the drafter never waits; windows of gamma drafted tokens are verified as
    they arrive (`asynchronous.py`)."""

    traits = TRAITS["async"]

    def evaluate(self, sc: ScenarioSpec, baseline: StepMetrics) -> SpeculationResult:
        d = _Drafted.of(self, sc, baseline)
        return _evaluate_async(self.name, sc, d.acc, d.gammas, d.draft, d.chips, d.overhead,
                               baseline, d.step, d.target)


class MedusaHeads(Strategy):
    """`heads`: K speculative heads on the target propose the next pass's tokens; each pass
    is one verification step (chain, or a tree of top-s candidates per head)."""

    traits = TRAITS["heads"]

    def verify_target(self, sc: ScenarioSpec) -> tuple[ModelSpec, bool]:
        """The target with the scenario's K heads (`speculation.heads`, else the model's)."""
        spec = sc.speculation
        assert spec is not None
        k = spec.heads or (sc.model.speculative_heads.count if sc.model.speculative_heads
                           else None)
        if k is None:
            raise ConfigError(Issue(sc.file or "scenario", None, None, "speculation.heads",
                                    "strategy 'heads' needs heads (or a model with "
                                    "speculative_heads)"))
        target = sc.model
        if target.speculative_heads is None or target.speculative_heads.count != k:
            old = target.speculative_heads
            target = dataclasses.replace(target, speculative_heads=HeadsSpec(
                count=k, layers_per_head=old.layers_per_head if old else 1,
                shared_lm_head=old.shared_lm_head if old else True))
        return target, True

    def evaluate(self, sc: ScenarioSpec, baseline: StepMetrics) -> SpeculationResult:
        spec = sc.speculation
        assert spec is not None
        acc = acceptance_of(sc)
        step = Stepper(sc)
        target, with_heads = self.verify_target(sc)
        assert target.speculative_heads is not None
        if spec.tree_width and spec.tree_width > 1:
            acc = TreeAcceptance(acc, spec.tree_width)
        gammas, limit = _gammas(sc, acc, min(target.speculative_heads.count, spec.max_gamma))
        return _chain(self.name, sc, baseline, step, acc, gammas, target=target,
                      with_heads=with_heads, draft_cycles=0, overhead=0, d_chips=0,
                      pipelined=False, heads=limit, tree_width=spec.tree_width or 1)


def _evaluate_async(name: str, sc: ScenarioSpec, acc: AcceptanceModel, windows: range,
                    draft: StepMetrics, d_chips: int, overhead: int, baseline: StepMetrics,
                    step: Stepper, target: ModelSpec) -> SpeculationResult:
    """Continuous asynchronous speculation (`asynchronous.py`): `gamma` is the window, the
    number of drafted tokens each target run checks (its width)."""
    spec = sc.speculation
    assert spec is not None and spec.draft_model is not None
    clock = sc.system.chip.clock_hz
    d = draft.latency_cycles

    def rate(k: int, v: StepMetrics) -> AsyncResult:
        return evaluate_async(acc, k, d, v.latency_cycles, overhead,
                              v.initiation_interval_cycles, clock_hz=clock)

    floor = _verify_floor(sc, baseline, target, False)

    def bound(k: int, below: StepMetrics | None) -> float:
        # a wider window still waits for its drafts and pays at least the verification below
        # it (at least the baseline, the same model at width 1): window 1 without any spacing
        # between runs is the most favourable case
        if spec.curve == "every":
            return math.inf
        v = below.latency_cycles if below is not None else floor
        return evaluate_async(acc, 1, d, v, overhead, 0, clock_hz=clock).tokens_per_second

    with (progress.bar(len(windows), f"{name}: windows", "window") as bar,
          step.widths(target, sc.chips_used, sc.tp, False, lambda k: k) as steps):
        def verify_of(k: int) -> StepMetrics:
            bar.update()
            return steps.get(k)

        found = best_candidate(windows, verify_of, lambda k, v: rate(k, v).tokens_per_second,
                               bound, steps.ahead)
    curve = [GammaPoint(gamma=k, tokens_per_second=found.values[k],
                        expected_tokens_per_pass=rate(k, v).tokens_per_run, verify_width=k,
                        verify_step_cycles=v.latency_cycles) for k, v in found.evaluated.items()]
    k = found.best
    v = found.evaluated[k]
    r = rate(k, v)
    tps = r.tokens_per_second
    mc = simulate_async(acc, k, spec.monte_carlo_passes, sc.seed, d, v.latency_cycles,
                        overhead, v.initiation_interval_cycles, clock_hz=clock)
    us = 1e6 / clock
    base = baseline.latency_cycles
    return SpeculationResult(
        strategy=name,
        gamma=k,
        gamma_search="auto" if spec.gamma == "auto" else "fixed",
        expected_tokens_per_pass=r.tokens_per_run,
        tokens_per_second=tps,
        monte_carlo_tokens_per_second=mc.tokens_per_second,
        monte_carlo_mean_tokens_per_pass=mc.mean_tokens_per_run,
        tokens_per_pass_histogram=tuple(mc.histogram),
        p50_token_latency_us=mc.p50_token_latency_us,
        p99_token_latency_us=mc.p99_token_latency_us,
        draft_model=spec.draft_model.name,
        draft_chips=d_chips,
        pipelined=True,
        head_start_us=0.0,
        head_start_probability=0.0,
        total_chips=sc.chips_used + d_chips,
        heads=None,
        draft_step_us=d * us,
        verify_width=k,
        tree_width=None,
        verify_step_us=v.latency_cycles * us,
        baseline_step_us=base * us,
        overhead_us=overhead * us,
        cost_ratio=d / base,
        verify_cost_ratio=v.latency_cycles / base,
        break_even_acceptance=break_even_async(k, d, v.latency_cycles, overhead,
                                               v.initiation_interval_cycles, base),
        acceptance=acc.describe(),
        monte_carlo_passes=spec.monte_carlo_passes,
        seed=sc.seed,
        gamma_curve=tuple(curve),
        async_=AsyncPart(
            initiation_interval_us=v.initiation_interval_cycles * us,
            # one step's latency over the mean spacing of launches
            runs_in_flight=v.latency_cycles * r.launched_per_cycle / r.cycle_cycles,
            tokens_per_cycle=r.tokens_per_cycle,
            cycle_us=r.cycle_cycles * us,
            runs_launched_per_token=r.launched_per_cycle / r.tokens_per_cycle,
            horizon=r.horizon,
        ),
    )


for _s in (DraftThenVerify(), AsyncSpeculation(), MedusaHeads()):
    register(_s)
# every name the layers below know (lpusim.strategy_traits) has its strategy, in order
if set(STRATEGIES) != set(TRAITS):
    raise RuntimeError(f"lpusim.strategy_traits lists {list(TRAITS)} but the strategies "
                       f"registered are {list(STRATEGIES)}")


def strategy(name: str) -> Strategy:
    """The registered strategy called `name` (an InputError names the known ones)."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise InputError(f"unknown speculation strategy {name!r} (one of "
                         f"{', '.join(STRATEGIES)})") from None


def evaluate(sc: ScenarioSpec, baseline: StepMetrics) -> SpeculationResult:
    """Speculative tokens/s and its parts for the scenario's speculation settings, by its
    strategy's own evaluator."""
    spec = sc.speculation
    assert spec is not None
    return strategy(spec.strategy).evaluate(sc, baseline)
