"""Discrete-event execution of a static Program in simpy.

One simpy process per (chip, functional-unit queue) and one per link direction. Each process
takes its queue in order, waits for the issue cycle the compiler fixed, and checks that the
unit (or link) is free and that every operand has arrived; otherwise it raises
`ScheduleViolation(chip, unit, cycle, instruction)`: the machine has no arbiter or
back-pressure, so a stall is a compiler bug. The simulator records the start of everything it
ran; latency and metrics are derived from what actually ran, not from the compiler's intent.

Each item costs one simpy event (the wait for its issue cycle): occupancy is checked against
the end of the previous item on the same queue or link, so no second event marks the end.
Compiled items last at least one cycle, so a producer has always started strictly before its
consumer issues, whatever the order of events within a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpusim.errors import ScheduleViolation
from lpusim.program import Instr, Program, Transfer


@dataclass(frozen=True)
class SimResult:
    program: Program
    start: dict[int, int]       # id -> cycle it started
    ready: dict[int, int]       # id -> cycle its result arrived
    latency_cycles: int
    events: int


def _arrived(deps: tuple[int, ...], ready: dict[int, int], now: int) -> bool:
    """Every (plain) operand has arrived by `now`: the common case, checked without building
    a message; otherwise `check_operands` says what is wrong."""
    for d in deps:
        r = ready.get(d)
        if r is None or r > now:
            return False
    return True


def simulate(prog: Program) -> SimResult:
    """Run `prog` cycle by cycle in simpy; raise ScheduleViolation if the schedule breaks."""
    import simpy  # heavy import kept local: only simulation needs it

    env = simpy.Environment()
    start: dict[int, int] = {}
    ready: dict[int, int] = {}
    counter = [0]
    queues: dict[tuple[int, str], list[Instr]] = {}
    for i in prog.instructions:
        queues.setdefault((i.chip, i.unit), []).append(i)
    hops: dict[int, list[tuple[int, int, Transfer]]] = {}
    for t in prog.transfers:
        for h, lid in enumerate(t.route):
            hops.setdefault(lid, []).append((t.hop_start(h), h, t))
    direct = [t for t in prog.transfers if not t.route]

    items: tuple[Instr | Transfer, ...] = (*prog.instructions, *prog.transfers)
    busy = {x.id: x.busy for x in items}

    def check_operands(deps: tuple[int, ...], now: int, chip: int, unit: str, name: str,
                       stream: tuple[int, ...] = (), end: int = 0) -> None:
        for d in deps:
            r = ready.get(d)
            if r is not None and d in stream:
                if r > end:
                    raise ScheduleViolation(chip, unit, now, name,
                                            f"ends at cycle {end} before streamed operand {d} "
                                            f"ends at {r}")
                r -= busy[d]                # its first vector
            if r is None or r > now:
                why = (f"operand {d} not yet produced" if r is None
                       else f"operand {d} arrives at cycle {r}")
                raise ScheduleViolation(chip, unit, now, name, why)

    def unit_proc(key: tuple[int, str], q: list[Instr]):
        q = sorted(q, key=lambda i: (i.issue, i.id))
        free = 0
        for ins in q:
            if ins.issue < env.now or ins.issue < free:
                raise ScheduleViolation(key[0], key[1], ins.issue, f"{ins.id}:{ins.op}",
                                        f"unit busy until cycle {max(free, int(env.now))}")
            yield env.timeout(ins.issue - env.now)
            if ins.stream or not _arrived(ins.deps, ready, ins.issue):
                check_operands(ins.deps, ins.issue, key[0], key[1], f"{ins.id}:{ins.op}",
                               ins.stream, ins.issue + ins.duration)
            start[ins.id] = ins.issue
            ready[ins.id] = ins.issue + ins.duration + ins.transit + ins.fill
            counter[0] += 1
            free = ins.issue + ins.duration

    def link_proc(lid: int, q: list[tuple[int, int, Transfer]]):
        q = sorted(q, key=lambda x: (x[0], x[2].id))
        free = 0
        for s, h, t in q:
            if s < env.now or s < free:
                raise ScheduleViolation(t.src, f"link{lid}", s, f"{t.id}:{t.op}",
                                        f"link busy until cycle {max(free, int(env.now))}")
            yield env.timeout(s - env.now)
            if h == 0:
                if t.stream or not _arrived(t.deps, ready, s):
                    check_operands(t.deps, s, t.src, f"link{lid}", f"{t.id}:{t.op}",
                                   t.stream, s + t.serialisation)
                start[t.id] = s
                ready[t.id] = t.ready
            elif t.id not in start:
                raise ScheduleViolation(t.src, f"link{lid}", s, f"{t.id}:{t.op}",
                                        "hop before the first")
            counter[0] += 1
            free = s + t.serialisation

    def local_proc(t: Transfer):
        yield env.timeout(t.issue - env.now)
        check_operands(t.deps, t.issue, t.src, "local", f"{t.id}:{t.op}", t.stream,
                       t.issue + t.serialisation)
        start[t.id] = t.issue
        ready[t.id] = t.ready
        counter[0] += 1

    # processes start in a fixed order so same-cycle events resolve deterministically
    for key in sorted(queues):
        env.process(unit_proc(key, queues[key]))
    for lid in sorted(hops):
        env.process(link_proc(lid, hops[lid]))
    for t in direct:
        env.process(local_proc(t))
    env.run()
    missing = len(prog.instructions) + len(prog.transfers) - len(start)
    if missing:
        raise ScheduleViolation(-1, "-", int(env.now), "-", f"{missing} items never ran")
    latency = max(ready.values(), default=0)
    return SimResult(prog, start, ready, latency, counter[0])
