"""Discrete-event execution of a static Program in simpy.

One queue per (chip, functional-unit queue) and one per link direction. Each takes its items
in order at the issue cycle the compiler fixed, and checks that the unit (or link) is free and
that every operand has arrived; otherwise it raises `ScheduleViolation(chip, unit, cycle,
instruction)`: the machine has no arbiter or back-pressure, so a stall is a compiler bug. The
simulator records the start of everything it ran; latency and metrics are derived from what
actually ran, not from the compiler's intent.

Time advances by one simpy event per cycle at which anything issues (one event object,
scheduled again from its own callback), whose callback runs that cycle's items and schedules
the next such cycle: a 70B stage template has about 12 items per such cycle (its
tensor-parallel chips work in step), so this is an order of magnitude fewer events than one
per item. Occupancy is checked against the end of the previous item on the
same queue or link, so no event marks an end. Within a cycle the items run in program order
(by id; an item's operands have lower ids, as the compiler numbers them), so an operand
streamed from the cycle its producer issues (an instruction with no transit or fill, a
transfer inside one chip) is there when its consumer runs. Where a program breaks several
rules, the violation raised is the first in cycle, then program, order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from lpusim.errors import ScheduleViolation
from lpusim.program import Instr, Program, Transfer


@dataclass(frozen=True)
class SimResult:
    program: Program
    start: dict[int, int]       # id -> cycle it started
    ready: dict[int, int]       # id -> cycle its result arrived
    latency_cycles: int
    events: int                 # items run: instructions, link hops, chip-local transfers
    # what ran on each unit queue, and each link's hops (hop start, hop, transfer), in the
    # order they ran (the critical-path walk looks up each item's predecessor there)
    queues: tuple[list[Instr], ...] = ()
    link_hops: tuple[list[tuple[int, int, Transfer]], ...] = ()


_item_id, _issue, _first = attrgetter("id"), attrgetter("issue"), itemgetter(0)


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


def _check_operands(ready: dict[int, int], busy: dict[int, int], deps: tuple[int, ...],
                    now: int, chip: int, unit: str, name: str, stream: tuple[int, ...] = (),
                    end: int = 0) -> None:
    """Raise the violation of an item whose operands are not all in time (`_arrived`,
    `_streamed`): the first operand not yet produced or late."""
    for d in deps:
        r = ready.get(d)
        if r is not None and d in stream:
            if r > end:
                raise ScheduleViolation(chip, unit, now, name,
                                        f"ends at cycle {end} before streamed operand {d} "
                                        f"ends at {r}")
            r -= busy[d]            # its first vector
        if r is None or r > now:
            why = (f"operand {d} not yet produced" if r is None
                   else f"operand {d} arrives at cycle {r}")
            raise ScheduleViolation(chip, unit, now, name, why)


def simulate(prog: Program) -> SimResult:
    """Run `prog` cycle by cycle in simpy; raise ScheduleViolation if the schedule breaks."""
    import simpy  # heavy import kept local: only simulation needs it
    # one pass in program order: each unit queue's items and each link's hops (in the order
    # their queue runs them, once sorted stably by cycle), and cycle -> what runs then, in
    # program order: (id, kind, queue, item, hop) with kind 0 an instruction on unit queue
    # `queue`, 1 hop `hop` of a transfer on link queue `queue`, 2 a transfer inside one chip
    unit_at: dict[tuple[int, str], int] = {}
    unit_items: list[list[Instr]] = []
    link_at: dict[int, int] = {}
    link_hops: list[list[tuple[int, int, Transfer]]] = []
    at: defaultdict[int, list[tuple[int, int, int, Any, int]]] = defaultdict(list)
    every: list[Any] = [*prog.instructions, *prog.transfers]
    for x in sorted(every, key=_item_id):
        if x.__class__ is Instr:
            key = (x.chip, x.unit)
            u = unit_at.get(key)
            if u is None:
                u = unit_at[key] = len(unit_items)
                unit_items.append([])
            unit_items[u].append(x)
            at[x.issue].append((x.id, 0, u, x, 0))
        elif not x.route:
            at[x.issue].append((x.id, 2, -1, x, 0))
        else:
            s, lats = x.issue, x.hop_latency
            for h, lid in enumerate(x.route):   # hop h starts at x.hop_start(h)
                w = link_at.get(lid)
                if w is None:
                    w = link_at[lid] = len(link_hops)
                    link_hops.append([])
                link_hops[w].append((s, h, x))
                at[s].append((x.id, 1, w, x, h))
                if h < len(lats):
                    s += lats[h]
    # queues in (chip, unit) and link order, each by cycle then program order (stable sorts)
    units = [sorted(unit_items[unit_at[key]], key=_issue) for key in sorted(unit_at)]
    wires = [sorted(link_hops[link_at[lid]], key=_first) for lid in sorted(link_at)]
    names = [""] * len(link_hops)       # where a link violation is reported
    for lid, w in link_at.items():
        names[w] = f"link{lid}"
    ready: dict[int, int] = {}
    start: dict[int, int] = {}
    # `busy` of each item, inline (once per item of every simulation)
    busy = {i.id: i.duration for i in prog.instructions}
    busy.update({t.id: t.serialisation for t in prog.transfers})
    unit_free = [0] * len(unit_items)
    link_free = [0] * len(link_hops)
    env = simpy.Environment()
    # one event for every cycle at which anything issues: a timeout to the first, scheduled
    # again from its own callback (making a simpy event costs more than its callback runs)
    clock: Any = None
    schedule, NORMAL = env.schedule, simpy.events.NORMAL
    cycles = sorted(at)
    nxt = iter(cycles[1:])
    events = 0
    me: list[Any] = []          # the callback, cleared after the run: no cycle is left behind

    def tick(_event: Any) -> None:
        nonlocal events
        now = int(env.now)
        items = at[now]
        for _id, kind, q, x, h in items:
            if kind == 0:
                if now < unit_free[q]:
                    raise ScheduleViolation(x.chip, x.unit, now, f"{x.id}:{x.op}",
                                            f"unit busy until cycle {unit_free[q]}")
                end = now + x.duration
                # the common cases inline; _check_operands says what is wrong
                deps = x.deps
                if x.stream:
                    ok = _streamed(deps, x.stream, ready, busy, now, end)
                elif len(deps) == 1:
                    r = ready.get(deps[0])
                    ok = r is not None and r <= now
                else:
                    ok = _arrived(deps, ready, now)
                if not ok:
                    _check_operands(ready, busy, deps, now, x.chip, x.unit,
                                    f"{x.id}:{x.op}", x.stream, end)
                start[x.id] = now
                ready[x.id] = end + x.transit + x.fill
                unit_free[q] = end
            elif kind == 1:
                if now < link_free[q]:
                    raise ScheduleViolation(x.src, names[q], now, f"{x.id}:{x.op}",
                                            f"link busy until cycle {link_free[q]}")
                if h == 0:
                    end = now + x.serialisation
                    if not (_streamed(x.deps, x.stream, ready, busy, now, end) if x.stream
                            else _arrived(x.deps, ready, now)):
                        _check_operands(ready, busy, x.deps, now, x.src, names[q],
                                        f"{x.id}:{x.op}", x.stream, end)
                    start[x.id] = now
                    ready[x.id] = x.ready
                elif x.id not in start:
                    raise ScheduleViolation(x.src, names[q], now, f"{x.id}:{x.op}",
                                            "hop before the first")
                link_free[q] = now + x.serialisation
            else:
                _check_operands(ready, busy, x.deps, now, x.src, "local", f"{x.id}:{x.op}",
                                x.stream, now + x.serialisation)
                start[x.id] = now
                ready[x.id] = x.ready
        events += len(items)
        later = next(nxt, None)
        if later is not None:
            # the one event, taken again: simpy has cleared its callbacks to run them
            clock.callbacks = me
            schedule(clock, NORMAL, later - now)

    if cycles:
        if cycles[0] < 0:
            # nothing runs before cycle 0: the first item there is refused as the machine
            # would find its unit (or link) not yet free
            _id, kind, q, x, _h = at[cycles[0]][0]
            if kind == 0:
                raise ScheduleViolation(x.chip, x.unit, cycles[0], f"{x.id}:{x.op}",
                                        "unit busy until cycle 0")
            raise ScheduleViolation(x.src, names[q] if kind == 1 else "local", cycles[0],
                                    f"{x.id}:{x.op}", "link busy until cycle 0")
        me.append(tick)
        clock = simpy.Timeout(env, cycles[0])
        clock.callbacks = me
    try:
        env.run()
    finally:
        me.clear()
    missing = len(prog.instructions) + len(prog.transfers) - len(start)
    if missing:
        raise ScheduleViolation(-1, "-", int(env.now), "-", f"{missing} items never ran")
    latency = max(ready.values(), default=0)
    return SimResult(prog, start, ready, latency, events, tuple(units), tuple(wires))
