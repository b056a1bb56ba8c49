"""Discrete-event execution of a static Program in simpy.

One queue per (chip, functional-unit queue) and one per link direction. Each takes its items
in order, waits for the issue cycle the compiler fixed, and checks that the unit (or link) is
free and that every operand has arrived; otherwise it raises
`ScheduleViolation(chip, unit, cycle, instruction)`: the machine has no arbiter or
back-pressure, so a stall is a compiler bug. The simulator records the start of everything it
ran; latency and metrics are derived from what actually ran, not from the compiler's intent.

Each item costs one simpy event (the wait for its issue cycle): occupancy is checked against
the end of the previous item on the same queue or link, so no second event marks the end.
Compiled items last at least one cycle, so a producer has always started strictly before its
consumer issues, whatever the order of events within a cycle. A queue is a chain of events
rather than a simpy process: each event's callback runs its item and schedules the queue's
next one (what a process's `yield env.timeout(...)` does, without resuming a generator), in
the same order, so same-cycle events resolve as they would in processes started in the same
order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lpusim.errors import ScheduleViolation
from lpusim.program import Instr, Program, Transfer


@dataclass(frozen=True)
class SimResult:
    program: Program
    start: dict[int, int]       # id -> cycle it started
    ready: dict[int, int]       # id -> cycle its result arrived
    latency_cycles: int
    events: int
    # what ran on each unit queue, and each link's hops (hop start, hop, transfer), in the
    # order they ran (the critical-path walk looks up each item's predecessor there)
    queues: tuple[list[Instr], ...] = ()
    link_hops: tuple[list[tuple[int, int, Transfer]], ...] = ()


def _arrived(deps: tuple[int, ...], ready: dict[int, int], now: int) -> bool:
    """Every (plain) operand has arrived by `now`: the common case, checked without building
    a message; otherwise `check_operands` says what is wrong."""
    for d in deps:
        r = ready.get(d)
        if r is None or r > now:
            return False
    return True


def _streamed(deps: tuple[int, ...], stream: tuple[int, ...], ready: dict[int, int],
              busy: dict[int, int], now: int, end: int) -> bool:
    """`_arrived` for an item that streams some operands: those must have their first vector
    out by `now` and end by `end` (the item's own end)."""
    for d in deps:
        r = ready.get(d)
        if r is None:
            return False
        if d in stream:
            if r > end or r - busy[d] > now:
                return False
        elif r > now:
            return False
    return True


class _Run:
    """What the simulation has seen so far: when each item started and when its result
    arrived, and the event count."""

    __slots__ = ("busy", "env", "events", "ready", "start", "timeout")

    def __init__(self, instructions: tuple[Instr, ...], transfers: tuple[Transfer, ...]):
        import simpy  # heavy import kept local: only simulation needs it
        self.env = simpy.Environment()
        self.timeout = simpy.Timeout
        self.start: dict[int, int] = {}
        self.ready: dict[int, int] = {}
        # `busy` of each item, inline (once per item of every simulation)
        self.busy = {i.id: i.duration for i in instructions}
        self.busy.update({t.id: t.serialisation for t in transfers})
        self.events = 0

    def check_operands(self, deps: tuple[int, ...], now: int, chip: int, unit: str, name: str,
                       stream: tuple[int, ...] = (), end: int = 0) -> None:
        for d in deps:
            r = self.ready.get(d)
            if r is not None and d in stream:
                if r > end:
                    raise ScheduleViolation(chip, unit, now, name,
                                            f"ends at cycle {end} before streamed operand {d} "
                                            f"ends at {r}")
                r -= self.busy[d]           # its first vector
            if r is None or r > now:
                why = (f"operand {d} not yet produced" if r is None
                       else f"operand {d} arrives at cycle {r}")
                raise ScheduleViolation(chip, unit, now, name, why)


class _UnitQueue:
    """One (chip, unit) queue: its instructions in issue order, one event each."""

    __slots__ = ("chip", "free", "pos", "q", "run", "unit")

    def __init__(self, run: _Run, key: tuple[int, str], q: list[Instr]):
        self.run = run
        self.chip, self.unit = key
        self.q = sorted(q, key=lambda i: (i.issue, i.id))
        self.pos = 0
        self.free = 0
        self.next()

    def next(self) -> None:
        ins = self.q[self.pos]
        now = self.run.env.now
        if ins.issue < now or ins.issue < self.free:
            raise ScheduleViolation(self.chip, self.unit, ins.issue, f"{ins.id}:{ins.op}",
                                    f"unit busy until cycle {max(self.free, int(now))}")
        self.run.timeout(self.run.env, ins.issue - now).callbacks.append(self.fire)

    def fire(self, _event: Any) -> None:
        run = self.run
        ins = self.q[self.pos]
        issue, end = ins.issue, ins.issue + ins.duration
        # the common case inline (one call less per item); check_operands says what is wrong
        if not (_streamed(ins.deps, ins.stream, run.ready, run.busy, issue, end) if ins.stream
                else _arrived(ins.deps, run.ready, issue)):
            run.check_operands(ins.deps, issue, self.chip, self.unit, f"{ins.id}:{ins.op}",
                               ins.stream, end)
        run.start[ins.id] = issue
        run.ready[ins.id] = end + ins.transit + ins.fill
        run.events += 1
        self.free = end
        self.pos += 1
        if self.pos < len(self.q):
            self.next()


class _LinkQueue:
    """One link direction: the hops crossing it in order, one event each."""

    __slots__ = ("free", "name", "pos", "q", "run")

    def __init__(self, run: _Run, lid: int, q: list[tuple[int, int, Transfer]]):
        self.run = run
        self.name = f"link{lid}"            # where a violation is reported
        self.q = sorted(q, key=lambda x: (x[0], x[2].id))
        self.pos = 0
        self.free = 0
        self.next()

    def next(self) -> None:
        s, _h, t = self.q[self.pos]
        now = self.run.env.now
        if s < now or s < self.free:
            raise ScheduleViolation(t.src, self.name, s, f"{t.id}:{t.op}",
                                    f"link busy until cycle {max(self.free, int(now))}")
        self.run.timeout(self.run.env, s - now).callbacks.append(self.fire)

    def fire(self, _event: Any) -> None:
        run = self.run
        s, h, t = self.q[self.pos]
        if h == 0:
            end = s + t.serialisation
            if not (_streamed(t.deps, t.stream, run.ready, run.busy, s, end) if t.stream
                    else _arrived(t.deps, run.ready, s)):
                run.check_operands(t.deps, s, t.src, self.name, f"{t.id}:{t.op}", t.stream,
                                   end)
            run.start[t.id] = s
            run.ready[t.id] = t.ready
        elif t.id not in run.start:
            raise ScheduleViolation(t.src, self.name, s, f"{t.id}:{t.op}",
                                    "hop before the first")
        run.events += 1
        self.free = s + t.serialisation
        self.pos += 1
        if self.pos < len(self.q):
            self.next()


class _Local:
    """A transfer between units of one chip (no link): one event."""

    __slots__ = ("run", "t")

    def __init__(self, run: _Run, t: Transfer):
        self.run = run
        self.t = t
        run.timeout(run.env, t.issue - run.env.now).callbacks.append(self.fire)

    def fire(self, _event: Any) -> None:
        run, t = self.run, self.t
        run.check_operands(t.deps, t.issue, t.src, "local", f"{t.id}:{t.op}", t.stream,
                           t.issue + t.serialisation)
        run.start[t.id] = t.issue
        run.ready[t.id] = t.ready
        run.events += 1


def simulate(prog: Program) -> SimResult:
    """Run `prog` cycle by cycle in simpy; raise ScheduleViolation if the schedule breaks."""
    queues: dict[tuple[int, str], list[Instr]] = {}
    for i in prog.instructions:
        queues.setdefault((i.chip, i.unit), []).append(i)
    hops: dict[int, list[tuple[int, int, Transfer]]] = {}
    for t in prog.transfers:
        s, lats = t.issue, t.hop_latency
        for h, lid in enumerate(t.route):       # hop h starts at t.hop_start(h)
            hops.setdefault(lid, []).append((s, h, t))
            if h < len(lats):
                s += lats[h]
    run = _Run(prog.instructions, prog.transfers)
    env = run.env
    # queues start in a fixed order so same-cycle events resolve deterministically
    units = [_UnitQueue(run, key, queues[key]) for key in sorted(queues)]
    wires = [_LinkQueue(run, lid, hops[lid]) for lid in sorted(hops)]
    for t in prog.transfers:
        if not t.route:
            _Local(run, t)
    env.run()
    start, ready = run.start, run.ready
    missing = len(prog.instructions) + len(prog.transfers) - len(start)
    if missing:
        raise ScheduleViolation(-1, "-", int(env.now), "-", f"{missing} items never ran")
    latency = max(ready.values(), default=0)
    return SimResult(prog, start, ready, latency, run.events, tuple(u.q for u in units),
                     tuple(w.q for w in wires))
