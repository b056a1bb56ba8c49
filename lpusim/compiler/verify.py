"""Verification of a compiled Program, independent of how it was scheduled.

Checks that no functional-unit queue runs two instructions at once, that no link carries two
transfers at once (on any hop), that every instruction and transfer issues only after all of
its operands have arrived (for streamed operands: their first vector, and it does not end
before their last), and that no chip's SRAM is over capacity. Raises `CompileError`
(pass 'verify') naming the first problem found.
"""

from __future__ import annotations

from lpusim.errors import CompileError
from lpusim.program import Instr, Program, Transfer


def _what(x: Instr | Transfer) -> str:
    if isinstance(x, Instr):
        return f"instruction {x.id} ({x.op}) on chip {x.chip} {x.unit}"
    return f"transfer {x.id} ({x.op}) {x.src}->{x.dst}"


def verify_program(prog: Program) -> None:
    """Raise CompileError('verify', ...) if the static schedule is not valid."""
    verify_schedule(prog)
    verify_sram(prog)


def verify_schedule(prog: Program) -> None:
    """The timing checks of `verify_program`: operands, unit queues and links."""
    ready: dict[int, int] = {}
    first: dict[int, int] = {}          # when an item's first vector is out
    # the items' `ready` and `busy`, inline: this runs once per item of every program
    for i in prog.instructions:
        f = i.issue + i.transit + i.fill
        first[i.id] = f
        ready[i.id] = f + i.duration
    for t in prog.transfers:
        f = t.issue + sum(t.hop_latency)
        first[t.id] = f
        ready[t.id] = f + t.serialisation
    for items in (prog.instructions, prog.transfers):
        for x in items:
            stream, issue = x.stream, x.issue
            for d in x.deps:
                r = ready.get(d)
                if r is None:
                    raise CompileError("verify", f"{_what(x)} depends on unknown {d}")
                if stream and d in stream:
                    need = first[d]
                    if need > issue:
                        raise CompileError("verify", f"{_what(x)} issues at cycle {issue} "
                                                     f"before operand {d} arrives at {need}")
                    if issue + x.busy < r:
                        raise CompileError("verify", f"{_what(x)} ends at cycle "
                                                     f"{issue + x.busy} before its streamed "
                                                     f"operand {d} ends at {r}")
                elif r > issue:
                    raise CompileError("verify", f"{_what(x)} issues at cycle {issue} before "
                                                 f"operand {d} arrives at {r}")
    queues: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    for i in prog.instructions:
        queues.setdefault((i.chip, i.unit), []).append((i.issue, i.issue + i.duration, i.id))
    for (chip, unit), q in queues.items():
        q.sort()
        for (s0, e0, id0), (s1, _e1, id1) in zip(q, q[1:], strict=False):
            if s1 < e0:
                raise CompileError("verify", f"chip {chip} {unit} double-booked: instruction "
                                             f"{id1} at cycle {s1} overlaps {id0} "
                                             f"[{s0}, {e0})")
    busy: dict[int, list[tuple[int, int, int]]] = {}
    for t in prog.transfers:
        s, ser, lats = t.issue, t.serialisation, t.hop_latency
        for h, lid in enumerate(t.route):           # hop h starts at t.hop_start(h)
            busy.setdefault(lid, []).append((s, s + ser, t.id))
            if h < len(lats):
                s += lats[h]
    for lid, q in busy.items():
        q.sort()
        for (s0, e0, id0), (s1, _e1, id1) in zip(q, q[1:], strict=False):
            if s1 < e0:
                raise CompileError("verify", f"link {lid} oversubscribed: transfer {id1} at "
                                             f"cycle {s1} overlaps {id0} [{s0}, {e0})")


def verify_sram(prog: Program) -> None:
    """The capacity check of `verify_program`: no chip's SRAM is over capacity."""
    for chip, cats in prog.sram_bytes.items():
        used = sum(cats.values())
        if used > prog.sram_capacity_bytes:
            raise CompileError("verify", f"chip {chip} SRAM {used} B over capacity "
                                         f"{prog.sram_capacity_bytes} B")
