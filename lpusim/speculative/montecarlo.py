"""Monte Carlo simulation of speculative-decoding passes.

Models a stream of independent passes, each ``gamma`` draft steps, one verify step and a fixed
overhead, so every pass takes the same ``gamma * draft + verify + overhead`` cycles (a
deterministic machine); only the number of committed tokens (accepted prefix + 1 bonus) is
random, drawn from an acceptance model. Results are reproducible from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lpusim.errors import AcceptanceError, InputError
from lpusim.speculative.acceptance import AcceptanceModel, TraceAcceptance, _check_count
from lpusim.speculative.theory import _cost, _pass_cycles

__all__ = ["MonteCarloResult", "simulate_passes"]


@dataclass(frozen=True)
class MonteCarloResult:
    """Outcome of :func:`simulate_passes`.

    ``histogram[k - 1]`` counts passes that committed ``k`` tokens, ``k = 1..gamma+1``.
    Per-token latency: every token committed in a pass is charged the pass time divided by the
    number of tokens that pass committed; percentiles are over tokens (weighted by tokens).
    """

    gamma: int
    n_passes: int
    seed: int
    pass_cycles: float
    clock_hz: float
    histogram: tuple[int, ...]
    total_tokens: int
    mean_tokens_per_pass: float
    tokens_per_second: float
    p50_token_latency_us: float
    p99_token_latency_us: float

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            "gamma": self.gamma,
            "n_passes": self.n_passes,
            "seed": self.seed,
            "pass_cycles": self.pass_cycles,
            "clock_hz": self.clock_hz,
            "histogram": list(self.histogram),
            "total_tokens": self.total_tokens,
            "mean_tokens_per_pass": self.mean_tokens_per_pass,
            "tokens_per_second": self.tokens_per_second,
            "p50_token_latency_us": self.p50_token_latency_us,
            "p99_token_latency_us": self.p99_token_latency_us,
        }


def _weighted_percentile(values: np.ndarray, weights: np.ndarray, pct: int) -> float:
    """Smallest value whose cumulative weight reaches ``pct`` percent (inverted CDF).

    Weights are integers and ``pct`` an integer, so the comparison is exact.
    """
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    i = int(np.searchsorted(cum * 100, pct * int(cum[-1]), side="left"))
    return float(values[order][min(i, len(values) - 1)])


def simulate_passes(
    model: AcceptanceModel,
    gamma: int,
    n_passes: int,
    seed: int,
    draft_step_cycles: float,
    verify_step_cycles: float,
    overhead_cycles: float = 0,
    *,
    clock_hz: float,
    head_start_cycles: float = 0,
    head_start_prob: float = 0,
) -> MonteCarloResult:
    """Simulate ``n_passes`` speculative passes of draft length ``gamma``.

    Each pass commits ``L + 1`` tokens, ``L`` drawn from ``model`` (the passes' counts per
    ``L`` as one multinomial draw, ``numpy.random.default_rng(seed)``), and takes
    ``gamma * draft_step_cycles + verify_step_cycles + overhead_cycles`` cycles.
    Per-token latency is defined as pass time / tokens committed in that pass, given to each of
    those tokens; p50 and p99 are token-weighted percentiles (inverted CDF, deterministic).

    A pipelined drafter (``head_start_cycles`` > 0) drafts the next window while the target
    verifies, betting that the whole window is accepted and that its own next token matches
    the target's bonus token: a pass is ``head_start_cycles`` shorter when the previous pass
    accepted all ``gamma`` drafts and the bet held (probability ``head_start_prob``, drawn
    after the prefix lengths so that the other results do not change). A recorded trace is
    replayed in order from a seeded offset instead of drawn.
    """
    gamma = _check_count(gamma, "gamma")
    n_passes = _check_count(n_passes, "n_passes", minimum=1)
    seed = _check_count(seed, "seed")
    clock = _cost(clock_hz, "clock_hz")
    if clock <= 0:
        raise InputError(f"clock_hz must be > 0, got {clock_hz!r}")
    cycles = _pass_cycles(
        gamma,
        _cost(draft_step_cycles, "draft_step_cycles"),
        _cost(verify_step_cycles, "verify_step_cycles"),
        _cost(overhead_cycles, "overhead_cycles"),
    )
    rng = np.random.default_rng(seed)
    head = _cost(head_start_cycles, "head_start_cycles")
    saved = min(head, cycles)
    bet = head > 0 and _cost(head_start_prob, "head_start_prob") > 0
    if isinstance(model, TraceAcceptance):
        hist, short = _replayed(model, gamma, n_passes, rng, head_start_prob if bet else 0.0)
    else:
        hist, short = _drawn(model, gamma, n_passes, rng, head_start_prob if bet else 0.0)
    tokens = np.arange(1, gamma + 2)
    total_tokens = int(np.dot(hist, tokens))
    total_cycles = n_passes * cycles - int(short.sum()) * saved
    # per-token latency: every token of a pass gets the pass time / the tokens it committed
    pairs = np.stack([(hist - short) * tokens, short * tokens])
    is_short, k_idx = np.nonzero(pairs)
    weight = pairs[is_short, k_idx]
    latency_us = (cycles - is_short * saved) / clock * 1e6 / tokens[k_idx]
    return MonteCarloResult(
        gamma=gamma,
        n_passes=n_passes,
        seed=seed,
        pass_cycles=cycles,
        clock_hz=clock,
        histogram=tuple(int(h) for h in hist),
        total_tokens=total_tokens,
        mean_tokens_per_pass=total_tokens / n_passes,
        tokens_per_second=total_tokens * clock / total_cycles,
        p50_token_latency_us=_weighted_percentile(latency_us, weight, 50),
        p99_token_latency_us=_weighted_percentile(latency_us, weight, 99),
    )


def _drawn(model: AcceptanceModel, gamma: int, n_passes: int, rng: np.random.Generator,
           bet_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Passes per accepted-prefix length L = 0..gamma, and how many of them a head start
    shortened, drawn as counts: the passes are independent and alike, so one multinomial over
    the prefix-length law gives the histogram in O(gamma) whatever the number of passes."""
    pmf = np.clip(np.asarray(model.prefix_length_pmf(gamma), dtype=float), 0.0, None)
    if pmf.shape != (gamma + 1,) or not pmf.sum() > 0:
        raise AcceptanceError(f"acceptance model gave no prefix-length law over [0, {gamma}]")
    hist = rng.multinomial(n_passes, pmf / pmf.sum()).astype(np.int64)
    short = np.zeros(gamma + 1, dtype=np.int64)
    if bet_prob > 0:
        # a pass is short when the one before it accepted all gamma drafts (the last pass's
        # own outcome has no successor) and the bet on the bonus token held; which passes
        # those are does not depend on their own outcome
        last_full = rng.random() < hist[gamma] / n_passes
        after_full = int(hist[gamma]) - int(last_full)
        n_short = int(rng.binomial(after_full, bet_prob)) if after_full else 0
        if n_short:
            short = rng.multivariate_hypergeometric(hist, n_short).astype(np.int64)
    return hist, short


def _replayed(model: TraceAcceptance, gamma: int, n_passes: int, rng: np.random.Generator,
              bet_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """The same counts for a recorded trace, replayed in order from a seeded offset."""
    accepted = np.asarray(model.sample_accepted(gamma, n_passes, rng), dtype=np.int64)
    if accepted.shape != (n_passes,) or accepted.min() < 0 or accepted.max() > gamma:
        raise AcceptanceError(f"acceptance model returned prefix lengths outside [0, {gamma}]")
    hist = np.bincount(accepted, minlength=gamma + 1)[:gamma + 1].astype(np.int64)
    ahead = np.zeros(n_passes, dtype=bool)
    if bet_prob > 0:
        u = rng.random(n_passes)
        ahead[1:] = (accepted[:-1] == gamma) & (u[1:] < bet_prob)
    short = np.bincount(accepted[ahead], minlength=gamma + 1)[:gamma + 1].astype(np.int64)
    return hist, short
