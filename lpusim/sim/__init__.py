"""Simulation of compiled programs: simpy execution, schedule checking, step metrics."""

from lpusim.sim.engine import SimResult, simulate
from lpusim.sim.metrics import (
    StepMemory,
    StepMetrics,
    critical_path,
    metrics_full,
    metrics_pipeline,
    step_memory_of,
)

__all__ = ["SimResult", "StepMemory", "StepMetrics", "critical_path", "metrics_full",
           "metrics_pipeline", "simulate", "step_memory_of"]
