"""Continuous asynchronous speculation: a drafter that never waits for a verdict, and a target
pipeline that checks its guesses as they are drafted.

At batch 1 a target split into P pipeline stages keeps each stage busy for about 1/P of a step,
so a deep static pipeline can carry many runs at once. Continuous asynchronous speculation
(PipeInfer, Butler et al., SC'24, arXiv 2407.11798; PipeSpec, McDanel et al., 2025) uses that:
the drafter drafts without stopping, and every `window` drafted tokens enter the target as one
run of width `window`, launched before the earlier runs have returned. A run checks its tokens
against the target's own predictions; the first wrong draft cancels every later run in flight
and restarts the drafter from the target's correction.

The process, in cycles, from the moment a correction is known (a "cycle" of the renewal process):
- draft token n >= 1 exists on the target's entry chip at `overhead + n * draft` (the overhead
  carries the correction to the drafter and the drafts back: two global hops); d_0 is the
  correction itself, already at the target's entry at time 0;
- run w >= 0 takes d_(w*k) .. d_(w*k+k-1) and checks d_(w*k+1) .. d_(w*k+k); it launches when its
  last input exists and at least `interval` cycles after the previous run (the target's
  initiation interval: no unit queue or link is shared by two runs), and returns `verify`
  cycles later;
- the first rejected draft, number N, is in run (N-1) // k; when that run returns the cycle
  ends having committed N tokens (N - 1 accepted drafts and the correction);
- acceptance follows the model from the restart (position i = i-th draft since the last
  correction; a mixture draws its component per cycle). A run of `horizon` accepted drafts
  (the longest the model can answer) ends the cycle with `horizon` tokens at the return of
  its run: a slight underestimate as acceptance approaches 1.

Tokens/s = E[tokens per cycle] / E[cycle time] (renewal-reward), in closed form from the
survival function, and by a seeded Monte Carlo over cycles that also gives the tokens committed
per run and p50/p99 per-token latency (each commit event's gap since the previous one, shared by
the tokens it commits). Window 1 makes the target a plain pipelined decoder fed by the drafter's
guesses: at acceptance 0 it decodes exactly as fast as without speculation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpusim.errors import AcceptanceError, InputError
from lpusim.speculative.acceptance import MAX_GAMMA, AcceptanceModel, _check_count, check_number
from lpusim.speculative.montecarlo import _weighted_percentile
from lpusim.speculative.theory import least_acceptance

__all__ = ["AsyncMonteCarlo", "AsyncResult", "break_even_async", "evaluate_async", "horizon_of",
           "launch_cycles", "simulate_async"]


def horizon_of(model: AcceptanceModel) -> int:
    """Longest run of accepted drafts the model can answer (a trace: its draft length)."""
    cap = model.max_gamma()
    return MAX_GAMMA if cap is None else min(cap, MAX_GAMMA)


def launch_cycles(window: int, runs: int, draft: float, overhead: float,
                  interval: float) -> np.ndarray:
    """Launch cycle of runs 0..runs-1 after a restart at cycle 0."""
    w = np.arange(runs, dtype=float)
    last_input = w * window + window - 1
    ready = np.where(last_input > 0, overhead + last_input * draft, 0.0)
    # L_w = max(ready_w, L_(w-1) + interval) = w * interval + max_(j<=w) (ready_j - j * interval)
    return w * interval + np.maximum.accumulate(ready - w * interval)


@dataclass(frozen=True)
class AsyncResult:
    """Closed-form outcome of continuous asynchronous speculation (means per cycle)."""

    window: int
    tokens_per_second: float
    tokens_per_cycle: float          # committed between two corrections
    cycle_cycles: float              # mean cycles between two corrections
    runs_per_cycle: float            # runs that commit something
    launched_per_cycle: float        # runs started, cancelled ones included
    tokens_per_run: float            # per run that commits (the "pass" of this strategy)
    horizon: int


def _costs(draft: float, verify: float, overhead: float, interval: float,
           clock: float) -> tuple[float, float, float, float, float]:
    vals = tuple(check_number(v, n) for v, n in ((draft, "draft_step_cycles"),
                                                 (verify, "verify_step_cycles"),
                                                 (overhead, "overhead_cycles"),
                                                 (interval, "interval_cycles"),
                                                 (clock, "clock_hz")))
    if vals[4] <= 0:
        raise InputError(f"clock_hz must be > 0, got {clock!r}")
    return vals  # type: ignore[return-value]


def _tables(window: int, horizon: int, draft: float, verify: float, overhead: float,
            interval: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per N = 1..horizon: the run holding draft N, the cycle's end, runs launched by then."""
    runs = (horizon - 1) // window + 1
    launch = launch_cycles(window, runs, draft, overhead, interval)
    n = np.arange(1, horizon + 1)
    run_of = (n - 1) // window
    end = launch[run_of] + verify
    launched = np.searchsorted(launch, end, side="left")   # launched strictly before the end
    return run_of, end, launched


def evaluate_async(model: AcceptanceModel, window: int, draft_step_cycles: float,
                   verify_step_cycles: float, overhead_cycles: float, interval_cycles: float,
                   *, clock_hz: float) -> AsyncResult:
    """Expected tokens/s of continuous asynchronous speculation (closed form)."""
    window = _check_count(window, "window", minimum=1)
    d, v, o, i, clock = _costs(draft_step_cycles, verify_step_cycles, overhead_cycles,
                               interval_cycles, clock_hz)
    h = max(horizon_of(model), window)
    surv = np.concatenate(([1.0], model.survival(h)))          # P(first n drafts accepted)
    pmf = np.clip(surv[:-1] - surv[1:], 0.0, None)               # P(N = n), n = 1..h
    tail = float(surv[-1])                                       # no rejection within h
    run_of, end, launched = _tables(window, h, d, v, o, i)
    n = np.arange(1, h + 1, dtype=float)
    tokens = float(np.dot(pmf, n)) + tail * h
    time = float(np.dot(pmf, end)) + tail * float(end[-1])
    runs = float(np.dot(pmf, run_of + 1)) + tail * float(run_of[-1] + 1)
    started = float(np.dot(pmf, launched)) + tail * float(launched[-1])
    return AsyncResult(window=window, tokens_per_second=tokens * clock / time,
                       tokens_per_cycle=tokens, cycle_cycles=time, runs_per_cycle=runs,
                       launched_per_cycle=started, tokens_per_run=tokens / runs, horizon=h)


@dataclass(frozen=True)
class AsyncMonteCarlo:
    """Sampled cycles: tokens/s, tokens committed per run (histogram over 1..window) and
    token-weighted p50/p99 latency between commits."""

    n_cycles: int
    seed: int
    tokens_per_second: float
    mean_tokens_per_run: float
    histogram: tuple[int, ...]
    p50_token_latency_us: float
    p99_token_latency_us: float


def simulate_async(model: AcceptanceModel, window: int, n_cycles: int, seed: int,
                   draft_step_cycles: float, verify_step_cycles: float, overhead_cycles: float,
                   interval_cycles: float, *, clock_hz: float) -> AsyncMonteCarlo:
    """Monte Carlo of ``n_cycles`` cycles with ``numpy.random.default_rng(seed)``."""
    window = _check_count(window, "window", minimum=1)
    n_cycles = _check_count(n_cycles, "n_cycles", minimum=1)
    seed = _check_count(seed, "seed")
    d, v, o, i, clock = _costs(draft_step_cycles, verify_step_cycles, overhead_cycles,
                               interval_cycles, clock_hz)
    h = max(horizon_of(model), window)
    rng = np.random.default_rng(seed)
    accepted = np.asarray(model.sample_accepted(h, n_cycles, rng), dtype=np.int64)
    if accepted.shape != (n_cycles,) or accepted.min() < 0 or accepted.max() > h:
        raise AcceptanceError(f"acceptance model returned prefix lengths outside [0, {h}]")
    tokens = np.minimum(accepted + 1, h)                  # N, or h without a rejection
    run_of, end, _ = _tables(window, h, d, v, o, i)
    last = run_of[tokens - 1]                              # the run that ends the cycle
    total_tokens = int(tokens.sum())
    total_cycles = float(end[tokens - 1].sum())
    in_last = tokens - last * window                       # 1..window
    full_runs = int(last.sum())
    hist = np.bincount(in_last, minlength=window + 1)[1:].astype(np.int64)
    hist[window - 1] += full_runs
    # commit events: run w commits at launch_w + verify; its gap to the previous commit
    runs = int(run_of[-1]) + 1
    ret = launch_cycles(window, runs, d, o, i) + v
    gaps = np.diff(np.concatenate(([0.0], ret)))
    # full runs w < last: (gap_w / window, weight window x cycles with last > w)
    cycles_past = np.cumsum(np.bincount(last, minlength=runs)[::-1])[::-1]   # last >= w
    n_full = np.concatenate((cycles_past[1:], [0]))                          # last > w
    us = 1e6 / clock
    # the cycle-ending runs, weighed once per (run, tokens) pair rather than once per cycle
    pair = np.bincount(last * (window + 1) + in_last, weights=in_last,
                       minlength=runs * (window + 1)).astype(np.int64)
    idx = np.flatnonzero(pair)
    end_run, end_tokens = idx // (window + 1), idx % (window + 1)
    values = np.concatenate((gaps / window * us, gaps[end_run] / end_tokens * us))
    weights = np.concatenate((n_full * window, pair[idx])).astype(np.int64)
    keep = weights > 0
    return AsyncMonteCarlo(
        n_cycles=n_cycles, seed=seed,
        tokens_per_second=total_tokens * clock / total_cycles,
        mean_tokens_per_run=total_tokens / (full_runs + n_cycles),
        histogram=tuple(int(x) for x in hist),
        p50_token_latency_us=_weighted_percentile(values[keep], weights[keep], 50),
        p99_token_latency_us=_weighted_percentile(values[keep], weights[keep], 99))


def break_even_async(window: int, draft_step_cycles: float, verify_step_cycles: float,
                     overhead_cycles: float, interval_cycles: float,
                     baseline_step_cycles: float) -> float:
    """Smallest constant acceptance at which asynchronous speculation matches plain decoding
    (0 when it never loses), by bisection: tokens/s rises with the acceptance."""
    from lpusim.speculative.acceptance import ConstantAcceptance

    def rate(a: float) -> float:
        return evaluate_async(ConstantAcceptance(a), window, draft_step_cycles,
                              verify_step_cycles, overhead_cycles, interval_cycles,
                              clock_hz=1.0).tokens_per_second

    target = 1.0 / check_number(baseline_step_cycles, "baseline_step_cycles")
    found = least_acceptance(lambda a: rate(a) >= target * (1 - 1e-12), tol=1e-12)
    return 1.0 if found is None else found
