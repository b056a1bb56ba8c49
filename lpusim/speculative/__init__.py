"""Speculative decoding: acceptance models, closed-form theory and Monte Carlo passes."""

from lpusim.speculative.acceptance import (
    PRESET_SOURCES,
    PRESETS,
    AcceptanceModel,
    ConstantAcceptance,
    MixtureAcceptance,
    PositionalAcceptance,
    TraceAcceptance,
    load_trace,
    parse_acceptance,
)
from lpusim.speculative.montecarlo import MonteCarloResult, simulate_passes
from lpusim.speculative.theory import (
    break_even_acceptance,
    expected_tokens_iid,
    extra_arithmetic,
    optimal_gamma,
    speedup,
    speedup_with_costs,
)

__all__ = [
    "PRESETS",
    "PRESET_SOURCES",
    "AcceptanceModel",
    "ConstantAcceptance",
    "MixtureAcceptance",
    "PositionalAcceptance",
    "TraceAcceptance",
    "load_trace",
    "parse_acceptance",
    "MonteCarloResult",
    "simulate_passes",
    "break_even_acceptance",
    "expected_tokens_iid",
    "extra_arithmetic",
    "optimal_gamma",
    "speedup",
    "speedup_with_costs",
]
