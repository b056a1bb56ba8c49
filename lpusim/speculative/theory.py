"""Closed-form speculative-decoding formulas (Leviathan, Kalman, Matias, ICML 2023).

Models one speculative pass as ``gamma`` sequential draft steps followed by one target pass
that verifies ``gamma + 1`` positions and commits ``E`` tokens on average (bonus included).
Assumes passes are independent and costs are deterministic: every draft step costs the same,
and in the normalised form verifying ``gamma + 1`` positions costs one plain target step
(``cost_ratio`` = draft step / target step). ``speedup_with_costs`` drops that assumption and
takes cycle counts instead. Wherever a model is expected, a bare float means a constant
(i.i.d.) acceptance probability.
"""

from __future__ import annotations

from collections.abc import Callable

from lpusim.errors import InputError
from lpusim.speculative.acceptance import (
    AcceptanceModel,
    ConstantAcceptance,
    _check_count,
    chain_expected_tokens,
    check_number,
)

__all__ = [
    "expected_tokens_iid",
    "speedup",
    "optimal_gamma",
    "speedup_with_costs",
    "break_even_acceptance",
    "least_acceptance",
    "extra_arithmetic",
]


def _model(acceptance: AcceptanceModel | float) -> AcceptanceModel:
    if isinstance(acceptance, AcceptanceModel):
        return acceptance
    return ConstantAcceptance(acceptance)


def _cost(value: float, name: str) -> float:
    return check_number(value, name)


def expected_tokens_iid(a: float, gamma: int) -> float:
    """``E = (1 - a^(gamma+1)) / (1 - a) = sum_{i=0..gamma} a^i`` tokens per pass."""
    return ConstantAcceptance(a).expected_tokens(gamma)


def speedup(acceptance_model: AcceptanceModel | float, gamma: int, cost_ratio: float) -> float:
    """Walltime speedup ``E / (gamma * c + 1)`` over plain decoding."""
    c = _cost(cost_ratio, "cost_ratio")
    return _model(acceptance_model).expected_tokens(gamma) / (gamma * c + 1.0)


def optimal_gamma(
    acceptance_model: AcceptanceModel | float, cost_ratio: float, max_gamma: int = 64
) -> tuple[int, float]:
    """Integer ``gamma`` in ``1..max_gamma`` maximising :func:`speedup`; ties go to the smaller.

    A trace-based model caps the search at the draft length it was recorded at.
    """
    model = _model(acceptance_model)
    max_gamma = _check_count(max_gamma, "max_gamma", minimum=1)
    bound = model.max_gamma()
    if bound is not None:
        max_gamma = min(max_gamma, bound)
    best_g, best_s = 1, speedup(model, 1, cost_ratio)
    for g in range(2, max_gamma + 1):
        s = speedup(model, g, cost_ratio)
        if s > best_s:
            best_g, best_s = g, s
    return best_g, best_s


def _pass_cycles(gamma: int, draft: float, verify: float, overhead: float) -> float:
    total = gamma * draft + verify + overhead
    if total <= 0:
        raise InputError("a speculative pass must take a positive number of cycles "
                         "(gamma * draft_step_cycles + verify_step_cycles + overhead_cycles)")
    return total


def speedup_with_costs(
    model: AcceptanceModel | float,
    gamma: int,
    draft_step_cycles: float,
    verify_step_cycles: float,
    baseline_step_cycles: float,
    overhead_cycles: float = 0,
) -> float:
    """General form ``E * T_baseline / (gamma * T_draft + T_verify + overhead)``.

    ``verify_step_cycles`` is the target pass over ``gamma + 1`` positions and
    ``baseline_step_cycles`` one plain (non-speculative) decode step of the target.
    """
    gamma = _check_count(gamma, "gamma")
    draft = _cost(draft_step_cycles, "draft_step_cycles")
    verify = _cost(verify_step_cycles, "verify_step_cycles")
    base = _cost(baseline_step_cycles, "baseline_step_cycles")
    over = _cost(overhead_cycles, "overhead_cycles")
    return _model(model).expected_tokens(gamma) * base / _pass_cycles(gamma, draft, verify, over)


def break_even_acceptance(
    gamma: int,
    draft_step_cycles: float,
    verify_step_cycles: float,
    baseline_step_cycles: float,
    overhead_cycles: float = 0,
) -> float | None:
    """Constant acceptance ``a`` at which :func:`speedup_with_costs` equals 1 (within 1e-9).

    Returns 0.0 if speculation wins even at ``a = 0`` and None if it loses even at ``a = 1``.
    The returned ``a`` is the upper end of the final bisection bracket, so it never loses.
    """
    gamma = _check_count(gamma, "gamma")
    draft = _cost(draft_step_cycles, "draft_step_cycles")
    verify = _cost(verify_step_cycles, "verify_step_cycles")
    base = _cost(baseline_step_cycles, "baseline_step_cycles")
    over = _cost(overhead_cycles, "overhead_cycles")
    cost = _pass_cycles(gamma, draft, verify, over)

    # a in [0, 1] and gamma checked: the constant chain's sum directly (no model per point)
    return least_acceptance(lambda a: chain_expected_tokens(a, gamma) * base - cost >= 0)


def least_acceptance(meets: Callable[[float], bool], tol: float = 1e-9) -> float | None:
    """Smallest constant acceptance in [0, 1] for which `meets` holds, by bisection; `meets`
    must be monotone (false below some a, true from it on). 0.0 if it holds at 0, None if not
    even at 1. The result is the upper end of the final bracket, so `meets` holds there."""
    if meets(0.0):
        return 0.0
    if not meets(1.0):
        return None
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if meets(mid) else (mid, hi)
    return hi


def extra_arithmetic(
    acceptance_model: AcceptanceModel | float, gamma: int, ops_ratio: float
) -> float:
    """Factor by which total arithmetic grows: ``(gamma * c_ops + gamma + 1) / E``.

    For i.i.d. ``a`` this is Leviathan's ``(1 - a)(gamma * c_ops + gamma + 1) / (1 - a^(gamma+1))``;
    ``ops_ratio`` (``c_ops``) is the drafter's arithmetic per token over the target's.
    """
    gamma = _check_count(gamma, "gamma")
    c_ops = _cost(ops_ratio, "ops_ratio")
    return (gamma * c_ops + gamma + 1) / _model(acceptance_model).expected_tokens(gamma)
