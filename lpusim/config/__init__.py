"""Specs (chip, system, model, scenario) loaded from versioned YAML with exact errors."""

from lpusim.config.gpu_specs import GpuSpec
from lpusim.config.load import (
    KINDS,
    load,
    load_chip,
    load_model,
    load_scenario,
    load_system,
    resolve_ref,
    shipped,
)
from lpusim.config.specs import (
    DTYPE_BITS,
    ChipSpec,
    GpuSystemSpec,
    ModelSpec,
    PrecisionSpec,
    ScenarioSpec,
    SpeculationSpec,
    SystemSpec,
    dtype_bytes,
)

__all__ = [
    "DTYPE_BITS", "KINDS", "ChipSpec", "GpuSpec", "GpuSystemSpec", "ModelSpec", "PrecisionSpec",
    "ScenarioSpec", "SpeculationSpec", "SystemSpec", "dtype_bytes", "load", "load_chip",
    "load_model", "load_scenario", "load_system", "resolve_ref", "shipped",
]
