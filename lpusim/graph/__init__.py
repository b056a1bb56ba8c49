"""Decode-step graphs: a transformer decode step as a DAG of operations with exact shapes."""

from lpusim.graph.build import DecodeGraph, GraphParams, build_decode_graph
from lpusim.graph.ops import Op

__all__ = ["DecodeGraph", "GraphParams", "Op", "build_decode_graph"]
