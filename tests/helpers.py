"""Small specs for hand-computed tests."""

from __future__ import annotations

import dataclasses

from lpusim.config import load


def chip():
    return load("chip_configs/groqchip1.yaml")


def system(name: str = "groqnode-8", *, bare: bool = True):
    """A shipped system; `bare` (the default for hand-computed cases) removes the fitted
    software mechanisms (collective latency, layer barrier), leaving the hardware's timing."""
    s = load(f"chip_configs/{name}.yaml")
    if not bare:
        return s
    return dataclasses.replace(s, sync=dataclasses.replace(
        s.sync, collective_latency_ps=0, layer_barrier_ps=0))
