"""Exact search for the best draft length (gamma) or window with few verification compiles.

Every candidate gamma needs its own verification step, compiled and simulated at that width,
and that step is what a speculative prediction spends its time on. The search evaluates
candidates best-bound first and stops once no unevaluated candidate can win. It rests on one
property of the machine, checked by a test on the shipped scenarios: a verification step
never gets shorter as it gets wider (more positions only add work to the same ops in the same
order). So the step of an unevaluated gamma is at least that of the widest evaluated gamma
below it, and each strategy turns such a lower bound on the step into an upper bound on its
tokens/s (`bound`). The answer is the one an exhaustive search gives: the highest tokens/s,
the smallest gamma among candidates within a relative 1e-12 of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# a candidate whose bound is below best * (1 - PRUNE) cannot win (rounding margin)
PRUNE = 1e-9
TIE = 1e-12


@dataclass(frozen=True)
class SearchResult(Generic[T]):
    best: int                        # the winning candidate
    value: float                     # its tokens/s
    evaluated: dict[int, T]          # candidate -> what `evaluate` returned, ascending
    values: dict[int, float]         # candidate -> its tokens/s


def best_candidate(candidates: Sequence[int], evaluate: Callable[[int], T],
                   value: Callable[[int, T], float],
                   bound: Callable[[int, T | None], float],
                   ahead: Callable[[list[int]], None] | None = None) -> SearchResult[T]:
    """Branch and bound over ascending `candidates`.

    `evaluate(g)` does the expensive work (compiles the verification step of g); `value(g, r)`
    is g's tokens/s from that result; `bound(g, r_below)` caps g's tokens/s given the result of
    the widest evaluated candidate below g (None when there is none yet). The bound must hold
    for every step at least as long as the one in `r_below`. The candidate with the highest
    bound is evaluated next (the smallest on ties); the search ends when every unevaluated
    bound is below the best value found, less a rounding margin. Before each evaluation,
    `ahead` (if given) is told the candidates that may still be evaluated, in the order of
    their bounds, the one evaluated now first: a caller may compute the next ones meanwhile
    (`lpusim.parallel.Ahead`); the search and its answer are the same either way.
    """
    cands = sorted(set(candidates))
    if not cands:
        raise RuntimeError("no candidates to search")  # a caller bug, not bad input
    done: dict[int, T] = {}
    vals: dict[int, float] = {}
    bounds: dict[tuple[int, int | None], float] = {}    # (g, the evaluated one below) -> bound
    best = float("-inf")
    while len(done) < len(cands):
        below: T | None = None
        below_g: int | None = None
        open_: list[tuple[float, int]] = []             # (-bound, g): best bound first
        for g in cands:
            if g in done:
                below, below_g = done[g], g
                continue
            b = bounds.get((g, below_g))
            if b is None:
                b = bounds[(g, below_g)] = bound(g, below)
            open_.append((-b, g))
        open_.sort()
        top, top_g = -open_[0][0], open_[0][1]
        if vals and top < best * (1 - PRUNE):
            break
        if ahead is not None:
            ahead([g for b, g in open_ if not vals or -b >= best * (1 - PRUNE)])
        r = evaluate(top_g)
        done[top_g] = r
        vals[top_g] = value(top_g, r)
        best = max(best, vals[top_g])
    win, win_v = None, float("-inf")
    for g in sorted(vals):          # as an ascending exhaustive search breaks ties
        if win is None or vals[g] > win_v * (1 + TIE):
            win, win_v = g, vals[g]
    assert win is not None
    return SearchResult(win, win_v, {g: done[g] for g in sorted(done)},
                        {g: vals[g] for g in sorted(vals)})
