"""The compiler's invariant checks between passes: they pass on real compiles of every kind
of stage, and catch a broken placement or lowering."""

from __future__ import annotations

import dataclasses

import pytest

from lpusim.compiler import compile_pipeline, compile_program, place, set_pass_checks
from lpusim.compiler.checks import check_lowered, check_placement
from lpusim.compiler.lower import Task
from lpusim.config import load
from lpusim.config.specs import ModelSpec
from lpusim.errors import CompileError
from lpusim.graph import GraphParams, build_decode_graph
from tests.helpers import chip, system

TINY = ModelSpec(name="tiny", layers=3, hidden_size=640, ffn_size=2560, heads=4, kv_heads=2,
                 head_dim=160, vocab_size=3200, max_context=4096)
MOE = dataclasses.replace(TINY, name="tiny-moe", experts=8, experts_per_token=2)


@pytest.fixture
def checks_on():
    was = set_pass_checks(True)
    yield
    set_pass_checks(was)


@pytest.mark.parametrize("model,params,chips", [
    (TINY, GraphParams(context=16), 16),
    (TINY, GraphParams(context=16, positions=5), 24),
    (MOE, GraphParams(context=16, expert_parallel=True), 16),
    (MOE, GraphParams(context=16), 8),
])
def test_checks_pass_on_real_compiles(checks_on, model, params, chips):
    s = system("groqrack-576")
    g = build_decode_graph(model, params)
    compile_program(g, s, chips=chips, tp=8)
    compile_pipeline(g, s, chips=chips, tp=8)


def test_checks_pass_on_a_shipped_model_with_local_layers(checks_on):
    m = load("workloads/gemma-2-9b.yaml")
    g = build_decode_graph(m, GraphParams(context=64, context_window=1024))
    compile_pipeline(g, system("groqrack-576"), chips=48, tp=8)


def test_a_block_placed_twice_or_missing_is_caught():
    g = build_decode_graph(TINY, GraphParams(context=16))
    pl = place(g, chip(), 16, 8)
    broken = dataclasses.replace(pl, stages=(pl.stages[0], pl.stages[0]))
    with pytest.raises(CompileError, match="compile pass 'place': blocks not placed exactly once"):
        check_placement(g, broken)
    check_placement(g, pl)


def test_forward_dependencies_and_missing_ops_are_caught():
    g = build_decode_graph(TINY, GraphParams(context=16))
    pl = place(g, chip(), 8, 8)
    with pytest.raises(CompileError, match="depends on a later or missing task"):
        check_lowered(g, pl, chip(), [Task("instr", 0, "x", 0, (1,))])
    with pytest.raises(CompileError, match="is not lowered on chip 0"):
        check_lowered(g, pl, chip(), [])
