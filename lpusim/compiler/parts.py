"""Stage parts: when the templates of a stage's consecutive blocks compose exactly.

Fast fidelity compiles a stage inside one node as parts (one per block: an attention, an FFN
up to its activation, a down projection, ...), each a template of its own shared by every stage
that has the same block in the same place, instead of one template per distinct stage. A later
part's template starts at cycle 0 with everything earlier parts made taken as ready there; the
part starts, in the whole stage, when the previous part's last result is ready (the previous
part's makespan, T). `join_parts` checks, from the parts' own schedules, that the whole stage
would schedule every task of the part exactly as the part's template does, shifted by T, and
that the critical-path walk would leave the part exactly where the template's walk does:

- a task of the part that issues at the part's cycle 0 reads a value of the previous part that
  is ready exactly at T (else, in the whole stage, it could have started before T);
- a task reading such a value, and a value made in its own part that is released at cycle 0
  too, would tie in the walk: refused;
- the value such a task waits for is not streamed (a streamed operand's walk enters its
  producer at its first vector).

List scheduling takes tasks in program order (the parts' tasks follow each other), and every
item of the earlier parts has finished, and freed its unit or link, by T; a task that issues
after cycle 0 of its part waits for something in the part, so it issues alike in both. When
the checks fail the stage is compiled whole.
"""

from __future__ import annotations

from typing import Any

from lpusim.program import Instr, Program, Transfer


class Part:
    """One part, for the checks: its program; its imports (task -> (address, chip position,
    streamed) per value of an earlier part it reads); its exports ((op position, chip position)
    or ("sync", chip position) -> the task holding that value); when each item's result is
    ready and how long it is busy; its makespan."""

    __slots__ = ("busy", "exports", "imports", "makespan", "prog", "ready")

    def __init__(self, prog: Program, imports: dict[int, tuple[tuple[Any, int, bool], ...]],
                 exports: dict[Any, int], ready: dict[int, int], busy: dict[int, int]):
        self.prog = prog
        self.imports = imports
        self.exports = exports
        self.ready = ready
        self.busy = busy
        self.makespan = max(ready.values(), default=0)


def join_parts(parts: list[Part]) -> list[dict[int, int]] | None:
    """For each part after the first, its roots (tasks whose walk continues in the previous
    part: task -> the previous part's task it waited for); None if the parts do not compose
    exactly (the stage must be compiled whole)."""
    offset: list[int] = []
    at = 0
    for p in parts:
        offset.append(at)
        at += p.makespan
    joins: list[dict[int, int]] = []
    for j in range(1, len(parts)):
        part = parts[j]
        imports, ready, busy = part.imports, part.ready, part.busy
        roots: dict[int, int] = {}
        items: tuple[Instr | Transfer, ...] = (*part.prog.instructions, *part.prog.transfers)
        for x in items:
            entries = imports.get(x.id)
            if entries is None:
                if x.issue == 0:        # nothing holds it back to the part's start
                    return None
                continue
            best: tuple[int, int, int, bool] | None = None   # (release, part, task, streamed)
            for addr, cpos, streamed in entries:
                src = _source(parts, j, addr, cpos)
                if src is None:
                    return None
                jj, t = src
                r = (parts[jj].ready[t] - (parts[jj].busy[t] if streamed else 0)
                     + offset[jj] - offset[j])
                if best is None or r > best[0] or (r == best[0] and (jj, t) < best[1:3]):
                    best = (r, jj, t, streamed)
            assert best is not None
            release, jj, t, streamed = best
            if release > 0 or (x.issue == 0 and release < 0):
                return None
            if release < 0:
                continue
            own = [ready[d] - (busy[d] if d in x.stream else 0) for d in x.deps]
            if streamed or jj != j - 1 or 0 in own:
                return None
            if not x.deps:
                roots[x.id] = t
        joins.append(roots)
    return joins


def _source(parts: list[Part], j: int, addr: Any, cpos: int) -> tuple[int, int] | None:
    """(part, task) holding the value part j imports at `addr` on chip position `cpos`."""
    if addr == ("sync",):
        for jj in range(j - 1, -1, -1):
            t = parts[jj].exports.get(("sync", cpos))
            if t is not None:
                return jj, t
        return None
    back, pos = addr
    t = parts[j - back].exports.get((pos, cpos))
    return None if t is None else (j - back, t)
