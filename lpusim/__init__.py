"""lpusim: cycle-approximate simulator of LPU-style deterministic dataflow accelerators."""

__version__ = "0.1.0"
