"""The gamma search: branch and bound gives the exhaustive answer with fewer evaluations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpusim.speculative.search import best_candidate


def _problem(steps: list[int], draft: int, a: float):
    """tokens/s of gamma g: E(g) / (g * draft + V(g)), E the geometric expectation."""
    def e(g: int) -> float:
        return (1 - a ** (g + 1)) / (1 - a)

    calls: list[int] = []

    def evaluate(g: int) -> int:
        calls.append(g)
        return steps[g - 1]

    def value(g: int, v: int) -> float:
        return e(g) / (g * draft + v)

    def bound(g: int, below: int | None) -> float:
        return e(g) / max(1, g * draft + (below if below is not None else 0))

    return evaluate, value, bound, calls


def test_hand_computed_flat_steps_stop_early():
    # equal steps of 100 and draft 10, a = 0.5: E(g)/(10 g + 100) peaks at g = 2
    # (1.5/110 = .01364, 1.75/120 = .01458, 1.875/130 = .01442)
    evaluate, value, bound, calls = _problem([100] * 8, 10, 0.5)
    r = best_candidate(range(1, 9), evaluate, value, bound)
    assert r.best == 2
    assert r.value == pytest.approx(1.75 / 120)
    # g = 1 first (bound 1.5/10, steps unknown), then the best bound over V >= 100 is g = 2;
    # once 2 is known, g = 3's bound 1.875/130 is below 1.75/120 and so are all wider ones
    assert calls == [1, 2]
    assert list(r.evaluated) == [1, 2]


def test_ties_go_to_the_smaller_candidate():
    evaluate, _v, _b, _calls = _problem([1] * 4, 1, 0.5)
    r = best_candidate([1, 2, 3, 4], evaluate, lambda g, v: 1.0, lambda g, v: 1.0)
    assert r.best == 1


def test_no_candidates():
    with pytest.raises(RuntimeError):
        best_candidate([], lambda g: g, lambda g, r: 0.0, lambda g, r: 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=24),
       st.integers(0, 40), st.floats(0.05, 0.98), st.integers(50, 500))
def test_equals_exhaustive_search(increments, draft, a, base):
    steps = []
    v = base
    for inc in increments:          # non-decreasing with width, as the machine's are
        v += inc
        steps.append(v)
    evaluate, value, bound, calls = _problem(steps, draft, a)
    n = len(steps)
    r = best_candidate(range(1, n + 1), evaluate, value, bound)
    exhaustive = None
    for g in range(1, n + 1):       # the ascending search the strategies used to run
        t = value(g, steps[g - 1])
        if exhaustive is None or t > exhaustive[0] * (1 + 1e-12):
            exhaustive = (t, g)
    assert (r.value, r.best) == exhaustive
    assert len(set(calls)) == len(calls) <= n
