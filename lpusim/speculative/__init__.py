"""Speculative decoding: acceptance models, closed-form theory and Monte Carlo passes.

The names below are imported on first use (PEP 562), so that loading a scenario without
speculation, or checking one, does not import numpy. The strategies that run on the simulated
machine (`registry.py`: the protocol, the typed result and the registry; `strategies.py`:
draft, async and heads) are not exported here: they compile steps, and the light parts above
are used without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "PRESETS": "acceptance",
    "PRESET_SOURCES": "acceptance",
    "AcceptanceModel": "acceptance",
    "ConstantAcceptance": "acceptance",
    "MixtureAcceptance": "acceptance",
    "PositionalAcceptance": "acceptance",
    "TraceAcceptance": "acceptance",
    "load_trace": "acceptance",
    "parse_acceptance": "acceptance",
    "MonteCarloResult": "montecarlo",
    "simulate_passes": "montecarlo",
    "break_even_acceptance": "theory",
    "expected_tokens_iid": "theory",
    "extra_arithmetic": "theory",
    "optimal_gamma": "theory",
    "speedup": "theory",
    "speedup_with_costs": "theory",
}
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lpusim.speculative' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lpusim.speculative.{module}"), name)
