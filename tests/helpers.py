"""Small specs for hand-computed tests."""

from __future__ import annotations

from lpusim.config import load


def chip():
    return load("chip_configs/groqchip1.yaml")


def system(name: str = "groqnode-8"):
    return load(f"chip_configs/{name}.yaml")
