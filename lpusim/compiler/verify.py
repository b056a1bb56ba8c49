"""Verification of a compiled Program, independent of how it was scheduled.

Checks that no functional-unit queue runs two instructions at once, that no link carries two
transfers at once (on any hop), that every instruction and transfer issues only after all of
its operands have arrived, and that no chip's SRAM is over capacity. Raises `CompileError`
(pass 'verify') naming the first problem found.
"""

from __future__ import annotations

from lpusim.errors import CompileError
from lpusim.program import Program


def verify_program(prog: Program) -> None:
    """Raise CompileError('verify', ...) if the static schedule is not valid."""
    ready: dict[int, int] = {}
    for i in prog.instructions:
        ready[i.id] = i.ready
    for t in prog.transfers:
        ready[t.id] = t.ready
    for i in prog.instructions:
        for d in i.deps:
            if d not in ready:
                raise CompileError("verify", f"instruction {i.id} ({i.op}) on chip {i.chip} "
                                             f"depends on unknown {d}")
            if ready[d] > i.issue:
                raise CompileError("verify", f"instruction {i.id} ({i.op}) on chip {i.chip} "
                                             f"{i.unit} issues at cycle {i.issue} before operand "
                                             f"{d} arrives at {ready[d]}")
    for t in prog.transfers:
        for d in t.deps:
            if d not in ready or ready[d] > t.issue:
                raise CompileError("verify", f"transfer {t.id} ({t.op}) {t.src}->{t.dst} issues "
                                             f"at cycle {t.issue} before operand {d} arrives")
    queues: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    for i in prog.instructions:
        queues.setdefault((i.chip, i.unit), []).append((i.issue, i.end, i.id))
    for (chip, unit), q in queues.items():
        q.sort()
        for (s0, e0, id0), (s1, _e1, id1) in zip(q, q[1:], strict=False):
            if s1 < e0:
                raise CompileError("verify", f"chip {chip} {unit} double-booked: instruction "
                                             f"{id1} at cycle {s1} overlaps {id0} "
                                             f"[{s0}, {e0})")
    busy: dict[int, list[tuple[int, int, int]]] = {}
    for t in prog.transfers:
        for h, lid in enumerate(t.route):
            s = t.hop_start(h)
            busy.setdefault(lid, []).append((s, s + t.serialisation, t.id))
    for lid, q in busy.items():
        q.sort()
        for (s0, e0, id0), (s1, _e1, id1) in zip(q, q[1:], strict=False):
            if s1 < e0:
                raise CompileError("verify", f"link {lid} oversubscribed: transfer {id1} at "
                                             f"cycle {s1} overlaps {id0} [{s0}, {e0})")
    for chip, cats in prog.sram_bytes.items():
        used = sum(cats.values())
        if used > prog.sram_capacity_bytes:
            raise CompileError("verify", f"chip {chip} SRAM {used} B over capacity "
                                         f"{prog.sram_capacity_bytes} B")
