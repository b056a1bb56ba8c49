"""Speculative decoding: acceptance models, closed-form theory and Monte Carlo passes.

The strategies that run on the simulated machine (`registry.py`: the protocol, the typed
result and the registry; `strategies.py`: draft, async and heads) are not imported here:
they compile steps, and the light parts above are used without them.
"""

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
