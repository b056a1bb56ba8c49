"""Simulation of compiled programs: simpy execution, schedule checking, step metrics."""

from lpusim.sim.engine import SimResult, simulate
from lpusim.sim.metrics import StepMetrics, critical_path, metrics_full, metrics_pipeline

__all__ = ["SimResult", "StepMetrics", "critical_path", "metrics_full", "metrics_pipeline",
           "simulate"]
