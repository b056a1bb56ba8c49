"""Invariant checks between compiler passes, for debugging the compiler itself.

Off by default (they cost a little on every compile); an entry point turns them on with
`set_pass_checks(True)` (the CLI does when LPUSIM_CHECK_PASSES=1). Each check raises a
`CompileError` naming the pass whose output broke the invariant:

- after placement: every block of the decode graph is placed exactly once, in graph order,
  and the stages' chips are disjoint groups of the tensor parallelism;
- after lowering: every task depends only on tasks before it (the list scheduler's order is a
  topological order), and every op that costs work is lowered on each chip of its stage (an
  expert-parallel op on its owner chip).

Program-level invariants (issue cycles, link occupancy, operand arrival) are checked by the
`verify` pass on every compile, checks on or off.
"""

from __future__ import annotations

from lpusim.compiler.lower import Task, op_costs
from lpusim.compiler.place import Placement
from lpusim.config.specs import ChipSpec
from lpusim.errors import CompileError
from lpusim.graph import DecodeGraph

_ON = [False]


def set_pass_checks(on: bool) -> bool:
    """Turn the checks on or off; returns the previous setting (to restore it)."""
    was = _ON[0]
    _ON[0] = bool(on)
    return was


def pass_checks() -> bool:
    return _ON[0]


def check_placement(graph: DecodeGraph, pl: Placement) -> None:
    placed = [b for stage in pl.stages for b in stage]
    if placed != list(graph.blocks):
        missing = sorted(set(graph.blocks) - set(placed))
        twice = sorted({b for b in placed if placed.count(b) > 1})
        raise CompileError("place", f"blocks not placed exactly once in order (missing "
                                    f"{missing[:3]}, repeated {twice[:3]})")
    chips = [c for group in pl.stage_chips for c in group]
    if len(set(chips)) != len(chips) or any(len(g) != pl.tp for g in pl.stage_chips):
        raise CompileError("place", f"stage chip groups are not disjoint groups of {pl.tp}")


def check_lowered(graph: DecodeGraph, pl: Placement, chip: ChipSpec, tasks: list[Task],
                  stages: range | None = None, blocks: range | None = None) -> None:
    """`tasks` lowered for `stages` (default: all of them); with `blocks`, only those
    blocks (by position in the stage) of the one stage given (a stage part)."""
    for i, t in enumerate(tasks):
        if any(d >= i or d < 0 for d in t.deps):
            raise CompileError("lower", f"task {i} ({t.op} on chip {t.chip}) depends on a "
                                        f"later or missing task")
    done = {(t.chip, t.op) for t in tasks if t.kind == "instr"}
    for s in stages if stages is not None else range(len(pl.stages)):
        chips = pl.stage_chips[s]
        mine = pl.stages[s] if blocks is None else pl.stages[s][blocks.start:blocks.stop]
        for block in mine:
            for name in graph.block_ops[block]:
                op = graph.op(name)
                wanted = [name + suffix for suffix, _cost in op_costs(op, chip, pl.tp, graph)]
                owners = (chips[op.expert % len(chips)],) if op.parallel == "expert" else chips
                for c in owners:
                    for instr in wanted:
                        if (c, instr) not in done:
                            raise CompileError("lower", f"{instr} (stage {s}) is not lowered "
                                                        f"on chip {c}")
