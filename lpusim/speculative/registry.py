"""The speculation strategies: one protocol, a typed result, and the registry by name.

A strategy (`Strategy`) is one way to turn a target decode step and an acceptance model into
tokens/s: its facts (`lpusim.strategy_traits.StrategyTraits`: name, one-line description,
whether it needs a drafter, whether that drafter needs chips of its own, whether the target
verifies with heads) and `evaluate(scenario, baseline) -> SpeculationResult`, which compiles
and simulates the steps it needs (`verify_target` names the verifying model). Nothing here
models a schedule: the built-in strategies live in `strategies.py` and register there.

`STRATEGIES` maps each name to its strategy, in the order of `strategy_traits.TRAITS`, which
holds the names for the layers below (the scenario schema, deployment, report); `register`
keeps the two in step, and `strategies.py` checks at import that every row has a strategy.

`SpeculationResult` is what every strategy returns; `to_dict()` is the serialised contract
(`RunResult.speculation`, the JSON, CSV and tables): the same keys in the same order for
every strategy, with `async` appended only by a strategy that fills `async_`.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any

from lpusim.config.specs import ModelSpec, ScenarioSpec
from lpusim.errors import InputError
from lpusim.sim import StepMetrics
from lpusim.strategy_traits import SHIPPED, TRAITS, StrategyTraits


@dataclass(frozen=True)
class GammaPoint:
    """One evaluated draft length (async: window) of a gamma search."""

    gamma: int
    tokens_per_second: float
    expected_tokens_per_pass: float
    verify_width: int
    verify_step_cycles: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class AsyncPart:
    """What only continuous asynchronous speculation has: its launch pattern."""

    initiation_interval_us: float
    runs_in_flight: float             # one step's latency over the mean spacing of launches
    tokens_per_cycle: float
    cycle_us: float
    runs_launched_per_token: float
    horizon: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, kw_only=True)
class SpeculationResult:
    """A strategy's tokens/s and its parts. Field order is the order of `to_dict()`'s keys
    (the result JSON): do not reorder. Times are microseconds; a 'pass' is one verification
    (async: one run that commits)."""

    strategy: str
    gamma: int                        # draft length (async: window) chosen
    gamma_search: str                 # 'auto' or 'fixed'
    expected_tokens_per_pass: float
    tokens_per_second: float          # closed form
    monte_carlo_tokens_per_second: float
    monte_carlo_mean_tokens_per_pass: float
    tokens_per_pass_histogram: tuple[int, ...]
    p50_token_latency_us: float
    p99_token_latency_us: float
    draft_model: str | None
    draft_chips: int                  # the drafter's own chips (0: none, or shared GPUs)
    pipelined: bool
    head_start_us: float
    head_start_probability: float
    total_chips: int
    heads: int | None                 # heads: the most tokens a pass may draft
    draft_step_us: float
    verify_width: int
    tree_width: int | None
    verify_step_us: float
    baseline_step_us: float
    overhead_us: float
    cost_ratio: float                 # draft step / baseline step
    verify_cost_ratio: float          # verify step / baseline step
    break_even_acceptance: float | None
    acceptance: dict[str, Any]        # the acceptance model's description
    monte_carlo_passes: int
    seed: int
    gamma_curve: tuple[GammaPoint, ...]
    async_: AsyncPart | None = None   # serialised as "async", only when present

    def to_dict(self) -> dict[str, Any]:
        """The serialised form: every field in order, lists for sequences, `async_` as
        'async' and left out when None."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "async_":
                if v is not None:
                    out["async"] = v.to_dict()
            elif f.name == "gamma_curve":
                out[f.name] = [p.to_dict() for p in v]
            elif f.name == "tokens_per_pass_histogram":
                out[f.name] = list(v)
            else:
                out[f.name] = v
        return out


class Strategy(abc.ABC):
    """A speculation strategy: its facts (`traits`, shared with the layers below) and how it
    is evaluated on a scenario's machine."""

    traits: StrategyTraits

    @property
    def name(self) -> str:
        return self.traits.name

    @property
    def description(self) -> str:
        return self.traits.description

    @property
    def needs_drafter(self) -> bool:
        return self.traits.needs_drafter

    @property
    def drafter_own_chips(self) -> bool:
        return self.traits.drafter_own_chips

    def verify_target(self, sc: ScenarioSpec) -> tuple[ModelSpec, bool]:
        """The model whose step verifies a pass, and whether its heads are compiled in (with
        `needs_drafter`, the steps a strategy needs: the drafter's, and this one at each
        verification width)."""
        return sc.model, self.traits.target_heads

    @abc.abstractmethod
    def evaluate(self, sc: ScenarioSpec, baseline: StepMetrics) -> SpeculationResult:
        """Tokens/s and its parts for the scenario's speculation settings, given the
        target's one-token step (`baseline`)."""


# a table filled at import by strategies.py (and by `register` at run time), not a cache
STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add a strategy under its name (and its traits to `strategy_traits.TRAITS` when it has
    no row there, so the schema, CLI, serving and report know it); a name is registered
    once."""
    name = strategy.name
    if name in STRATEGIES:
        raise InputError(f"strategy {name!r} is already registered")
    if name not in TRAITS:
        TRAITS[name] = strategy.traits
    elif TRAITS[name] != strategy.traits:
        raise InputError(f"strategy {name!r} does not match its row in "
                         f"lpusim.strategy_traits")
    STRATEGIES[name] = strategy
    return strategy


def unregister(name: str) -> None:
    """Remove a strategy registered at run time, and the traits `register` added for it."""
    if name in SHIPPED or name not in STRATEGIES:
        raise InputError(f"strategy {name!r} was not registered at run time")
    del STRATEGIES[name]
    del TRAITS[name]
