"""Step metrics: latency, its breakdown along the critical path, utilisation, SRAM.

The breakdown walks the critical path backwards from the last result of the step. Each step of
the walk goes to whatever released the current item: the operand that arrived last, or the
previous occupant of its unit queue or link. An item on the path contributes its busy cycles
to its category (MXM or VXM compute, on-chip data movement for MEM/SXM, link serialisation,
synchronisation), its stream transit to data movement, its pipeline fill and ripple to
pipeline fill (a fixed-latency mechanism's delay to that mechanism: collective latency, layer
barrier, stage deskew), and its hop latencies to link latency; any wait is `idle`. The parts
sum exactly to the step latency. In fast fidelity the stage templates' metrics are added up with the
hand-offs, which gives the same latency as the full program. A template whose items are the
very objects of one simulated before (the compiler reuses a verified schedule for equal tasks)
reuses that run: a simulation is a function of the items alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from itertools import groupby
from typing import Any

from lpusim.caches import BoundedCache
from lpusim.program import CATEGORIES, LATENCY_CATEGORIES, UNITS, PipelineProgram, Program
from lpusim.sim.engine import SimResult, simulate

BREAKDOWN_KEYS = (*CATEGORIES, "idle")


@dataclass(frozen=True)
class StepMetrics:
    latency_cycles: int
    clock_hz: int
    chips: int
    breakdown_cycles: dict[str, int]
    unit_busy_cycles: dict[str, int]          # summed over chips
    link_busy_cycles: int                     # summed over links used
    links_used: int
    sram_bytes_per_chip_max: int
    sram_bytes_by_category: dict[str, int]    # of the fullest chip
    sram_capacity_bytes: int
    instructions: int
    transfers: int
    events: int
    fidelity: str
    program_hash: str = ""
    # the least spacing at which a second run of the same program could start without any unit
    # queue or link serving both: the widest span over which one resource is in use
    initiation_interval_cycles: int = 0
    # how many such steps' KV caches fit next to the weights on the fullest-by-KV chip
    # (0: the model keeps no KV cache)
    kv_slots: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_us(self) -> float:
        return self.latency_cycles * 1e6 / self.clock_hz

    @property
    def breakdown_us(self) -> dict[str, float]:
        return {k: v * 1e6 / self.clock_hz for k, v in self.breakdown_cycles.items()}

    @property
    def unit_utilisation(self) -> dict[str, float]:
        denom = max(1, self.latency_cycles * self.chips)
        return {u: self.unit_busy_cycles.get(u, 0) / denom for u in UNITS}

    @property
    def link_utilisation(self) -> float:
        return self.link_busy_cycles / max(1, self.latency_cycles * max(1, self.links_used))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_us"] = self.latency_us
        d["breakdown_us"] = self.breakdown_us
        d["unit_utilisation"] = self.unit_utilisation
        d["link_utilisation"] = self.link_utilisation
        return d


def _fill_category(x: Any) -> str:
    return x.category if x.category in LATENCY_CATEGORIES else "pipeline_fill"


def _latencies(x: Any) -> list[tuple[str, int]]:
    if hasattr(x, "unit"):
        return [("data_movement", x.transit), (_fill_category(x), x.fill)]
    return [("link_latency", sum(x.hop_latency))]


def critical_path(res: SimResult) -> dict[str, int]:
    """Cycles per breakdown category along the critical path of a simulated program."""
    return _walk(_PathIndex(res))[0]


class _PathIndex:
    """What a critical-path walk over one simulated program looks up: its items, the previous
    occupant of each instruction's unit queue, and of each transfer's links (with the cycle it
    released the transfer)."""

    __slots__ = ("items", "link_prev", "prev_on_queue", "res")

    def __init__(self, res: SimResult):
        prog = res.program
        self.res = res
        items: dict[int, Any] = {i.id: i for i in prog.instructions}
        items.update({t.id: t for t in prog.transfers})
        self.items = items
        self.prev_on_queue: dict[int, int] = {}
        for q in res.queues:            # as the simulator ran them
            for a, b in zip(q, q[1:], strict=False):
                self.prev_on_queue[b.id] = a.id
        self.link_prev: dict[int, tuple[int, int]] = {}   # id -> (prev id, release cycle)
        for hops in res.link_hops:
            for (s0, _h0, ta), (s1, _h1, tb) in zip(hops, hops[1:], strict=False):
                release = s0 + ta.serialisation - (s1 - tb.issue)
                old = self.link_prev.get(tb.id)
                if old is None or release > old[1]:
                    self.link_prev[tb.id] = (ta.id, release)


def _walk(ix: _PathIndex, start: int | None = None, outside: dict[int, int] | None = None
          ) -> tuple[dict[str, int], int | None]:
    """The critical-path breakdown from item `start` (default: the last result) back to the
    program's start. `outside` gives items an operand from outside the program (a stage
    template's hand-off pieces: id -> the cycle their operand is ready); a walk that reaches
    one through it stops there and returns that item's id, else None."""
    res, items = ix.res, ix.items
    prev_on_queue, link_prev = ix.prev_on_queue, ix.link_prev
    outside = outside or {}
    out = dict.fromkeys(BREAKDOWN_KEYS, 0)
    if not items:
        return out, None
    cur = max(items, key=lambda k: (res.ready[k], -k)) if start is None else start
    upto = res.ready[cur]   # the cycle up to which `cur` is on the path
    first = False           # did a streaming consumer release it at its first vector?
    while True:
        x = items[cur]
        s = res.start[cur]
        if not first and x.stream and x.busy > 0:
            # a streaming item stretched to its producer's end, on the path to its end: the
            # producer is the path, the item adds only its own latency after the last vector
            d_end = max(x.stream, key=lambda d: (res.ready[d], -d))
            if s + x.busy == res.ready[d_end] <= upto:
                tail = upto - res.ready[d_end]
                for cat, cycles in (_latencies(x) + [("link_latency", tail)]):
                    take = min(cycles, tail)
                    out[cat] += take
                    tail -= take
                cur, upto = d_end, res.ready[d_end]
                continue
        span = upto - s
        if hasattr(x, "unit"):
            parts = [(x.category, x.duration), ("data_movement", x.transit),
                     (_fill_category(x), x.fill)]
        else:
            parts = [("link_serialisation", x.serialisation),
                     ("link_latency", sum(x.hop_latency))]
        if first:     # up to its first vector: the latencies, not the busy time
            parts = parts[1:] + parts[:1]
        for cat, cycles in parts:     # the path may cover only the first part(s) of an item
            take = min(cycles, span)
            out[cat] += take
            span -= take
        if span:                      # a link's later hop released the successor
            out["link_latency"] += span
        best, release, first = None, 0, False
        for d in x.deps:
            streamed = d in x.stream
            r = res.ready[d] - items[d].busy if streamed else res.ready[d]
            if r > release or best is None:
                best, release, first = d, r, streamed
        if cur in outside:              # its operand, from the previous stage
            best, release, first = -1, outside[cur], False
        if hasattr(x, "unit"):
            p = prev_on_queue.get(cur)
            if p is not None:
                r = res.start[p] + items[p].duration
                if r > release or best is None:
                    best, release, first = p, r, False
        else:
            lp = link_prev.get(cur)
            if lp is not None and (lp[1] > release or best is None):
                (best, release), first = lp, False
        if best == -1:
            out["idle"] += s - release
            return out, cur
        if best is None or release <= 0:
            out["idle"] += s
            break
        out["idle"] += s - release
        cur, upto = best, release
    return out, None


def _busy(prog: Program) -> tuple[dict[str, int], int, int]:
    units = dict.fromkeys(UNITS, 0)
    for i in prog.instructions:
        units[i.unit] += i.duration
    link_busy = sum(t.serialisation * len(t.route) for t in prog.transfers)
    return units, link_busy, len(prog.links)


def initiation_interval(prog: Program) -> int:
    """Cycles from the first to the last busy cycle of the most widely used resource (a chip's
    unit queue or a link) of `prog`: runs spaced at least this far apart never collide.

    Spans are taken per pipeline stage (a stage's work and the hand-off into it), as in fast
    fidelity: a route that borrows a link of another stage's node, and the token return, are
    assumed to be moved by the compiler to one of the Dragonfly's spare paths when two runs
    would meet there."""
    stages = prog.meta.get("stages") or [[]]
    stage_of = [s for s, blocks in enumerate(stages) for _ in blocks]

    def st(block: int) -> int:
        return stage_of[block] if 0 <= block < len(stage_of) else -1

    lo: dict[tuple, int] = {}
    hi: dict[tuple, int] = {}

    def use(key: tuple, a: int, b: int) -> None:
        if key in lo:
            if a < lo[key]:
                lo[key] = a
            if b > hi[key]:
                hi[key] = b
        else:
            lo[key], hi[key] = a, b

    for i in prog.instructions:
        use((i.chip, i.unit, st(i.block)), i.issue, i.issue + i.duration)
    ret = 0
    for t in prog.transfers:
        if t.op == "token_return":
            ret = max(ret, t.serialisation)
            continue
        s0, stage = t.issue, st(t.block)
        for lid, lat in zip(t.route, t.hop_latency, strict=True):
            use((lid, stage), s0, s0 + t.serialisation)
            s0 += lat
    return max(ret, max((hi[k] - lo[k] for k in lo), default=0))


def kv_slots(sram: dict[int, dict[str, int]], capacity: int) -> int:
    """Independent KV caches (one per step in flight) that fit on every chip beside its
    weights and buffers: min over chips of (capacity - other bytes) // KV bytes."""
    slots = [(capacity - (sum(c.values()) - c.get("kv_cache", 0))) // c["kv_cache"]
             for c in sram.values() if c.get("kv_cache", 0) > 0]
    return max(0, min(slots)) if slots else 0


def _sram(sram: dict[int, dict[str, int]]) -> tuple[int, dict[str, int]]:
    if not sram:
        return 0, {}
    chip = max(sram, key=lambda c: (sum(sram[c].values()), -c))
    return sum(sram[chip].values()), dict(sram[chip])


@dataclass(frozen=True)
class StepMemory:
    """The SRAM side of a step's metrics, under StepMetrics' names: the fullest chip's bytes,
    by category, the capacity per chip and the KV slots."""

    sram_bytes_per_chip_max: int
    sram_bytes_by_category: dict[str, int]
    sram_capacity_bytes: int
    kv_slots: int


def step_memory_of(sram: dict[int, dict[str, int]], capacity: int) -> StepMemory:
    """StepMemory of chips' SRAM by category (chip -> category -> bytes), as the metrics of a
    program holding it count it."""
    smax, scat = _sram(sram)
    return StepMemory(smax, scat, capacity, kv_slots(sram, capacity))


def metrics_full(prog: Program) -> StepMetrics:
    """Simulate the whole program and measure it."""
    res = simulate(prog)
    units, link_busy, nlinks = _busy(prog)
    smax, scat = _sram(prog.sram_bytes)
    return StepMetrics(
        latency_cycles=res.latency_cycles, clock_hz=prog.clock_hz, chips=len(prog.chips),
        breakdown_cycles=critical_path(res), unit_busy_cycles=units,
        link_busy_cycles=link_busy, links_used=nlinks, sram_bytes_per_chip_max=smax,
        sram_bytes_by_category=scat, sram_capacity_bytes=prog.sram_capacity_bytes,
        instructions=len(prog.instructions), transfers=len(prog.transfers),
        events=res.events, fidelity="full", program_hash=prog.content_hash(),
        initiation_interval_cycles=initiation_interval(prog),
        kv_slots=kv_slots(prog.sram_bytes, prog.sram_capacity_bytes))


def _spans(res: SimResult) -> dict[tuple[Any, ...], tuple[int, int]]:
    """(first, last) busy cycle of each resource of a simulated stage template: a unit queue
    as (chip position, unit), a link as its ends (chip positions in the stage; other chips by
    number) and its rank among the template's links between the same ends, so that the
    templates of one stage's parts name a resource alike. A queue ran its items in order,
    none overlapping: its first starts first and its last ends last."""
    prog = res.program
    pos = {c: i for i, c in enumerate(prog.chips)}
    spans: dict[tuple[Any, ...], tuple[int, int]] = {}
    for q in res.queues:
        spans[("unit", pos[q[0].chip], q[0].unit)] = (q[0].issue, q[-1].issue + q[-1].duration)
    ends: dict[int, tuple[Any, ...]] = {}
    rank: dict[tuple[Any, ...], int] = {}
    for lk in sorted(prog.links, key=lambda x: x.id):
        pair = (pos.get(lk.src, ("chip", lk.src)), pos.get(lk.dst, ("chip", lk.dst)))
        rank[pair] = rank.get(pair, -1) + 1
        ends[lk.id] = ("link", *pair, rank[pair])
    for hops in res.link_hops:
        first, h, t = hops[0]
        last, _h, u = hops[-1]
        spans[ends[t.route[h]]] = (first, last + u.serialisation)
    return spans


class _Simulated:
    """A simulated template and what the metrics derive from it (busy cycles, the walk's
    index, the walks from each entry point, the resource spans by the program's chips), kept
    with its items (`_RUNS`): a template the compiler reused (the same item objects) reuses
    all of it, as all of it is a function of the items."""

    __slots__ = ("busy", "index", "res", "spans", "walks")

    def __init__(self, res: SimResult):
        self.res = res
        self.busy = _busy(res.program)
        self.index: _PathIndex | None = None
        self.walks: dict[tuple[Any, ...], tuple[dict[str, int], int | None]] = {}
        self.spans: dict[tuple[int, ...], dict[tuple[Any, ...], tuple[int, int]]] = {}

    def walk(self, start: int | None, outside: dict[int, int]
             ) -> tuple[dict[str, int], int | None]:
        memo = (start, tuple(sorted(outside.items())))
        hit = self.walks.get(memo)
        if hit is None:
            if self.index is None:
                self.index = _PathIndex(self.res)
            hit = self.walks[memo] = _walk(self.index, start, outside)
        return hit

    def spans_in(self, prog: Program) -> dict[tuple[Any, ...], tuple[int, int]]:
        hit = self.spans.get(prog.chips)
        if hit is None:
            hit = self.spans[prog.chips] = _spans(replace(self.res, program=prog))
        return hit


# (id of a template's instructions, of its transfers) -> those items and their _Simulated;
# the entry holds the items, so no other live object has their ids. At most 5 x 10^4 items
_RUNS: BoundedCache[tuple[Any, Any, _Simulated]] = BoundedCache(
    "template_runs", maxsize=2048, weigh=lambda v: len(v[0]) + len(v[1]), max_weight=50_000)


def _simulated(prog: Program) -> _Simulated:
    """`simulate(prog)` and what derives from it, reused for a template with the same item
    objects."""
    key = (id(prog.instructions), id(prog.transfers))
    hit = _RUNS.get(key)
    if hit is not None and hit[0] is prog.instructions and hit[1] is prog.transfers:
        return hit[2]
    rec = _Simulated(simulate(prog))
    _RUNS.put(key, (prog.instructions, prog.transfers, rec))
    return rec


def metrics_pipeline(pp: PipelineProgram) -> StepMetrics:
    """Simulate each distinct template once and compose the step (fast fidelity).

    A stage starts when the previous one's output reaches its earliest chip (the templates'
    hand-off pieces leave later chips by their lag, `compile_pipeline`); a stage compiled as
    parts runs them one after another, each from the previous one's last result. The critical
    path is walked back from the last stage, template by template, entering each previous
    stage at the chip whose piece was on the path, and each previous part at the task the
    part's root waited for, as the walk over the full program does."""
    runs = {key: _simulated(prog) for key, prog in sorted(pp.templates.items())}
    per = {key: r.res for key, r in runs.items()}
    breakdown = dict.fromkeys(BREAKDOWN_KEYS, 0)
    units = dict.fromkeys(UNITS, 0)
    link_busy = 0
    latency = 0
    instrs = transfers = events = 0
    n = len(pp.stages)
    last_stage = pp.stage_of[-1]
    ends_stage = [i == n - 1 or pp.stage_of[i + 1] != pp.stage_of[i] for i in range(n)]
    arrive: dict[int, list[int]] = {}           # stage -> its output per chip, from its start
    offset = [0] * n                            # a template's start, from its stage's start
    for i, key in enumerate(pp.stages):
        res = per[key]
        st = pp.stage_of[i]
        if ends_stage[i]:
            arrive[st] = [res.ready[o] for o in pp.outputs[key]]
            latency += res.latency_cycles if st == last_stage else min(arrive[st])
        else:
            latency += res.latency_cycles
            offset[i + 1] = offset[i] + res.latency_cycles
        u, lb, _n = runs[key].busy
        for k, v in u.items():
            units[k] += v
        link_busy += lb
        instrs += len(res.program.instructions)
        transfers += len(res.program.transfers)
        events += res.events
    i, start = n - 1, None
    while True:
        key, st = pp.stages[i], pp.stage_of[i]
        first = i == 0 or pp.stage_of[i - 1] != st
        outside: dict[int, int] = {}
        if not first:
            outside = dict.fromkeys(pp.joins[i] or {}, 0)
        elif st > 0:
            base = min(arrive[st - 1])
            outside = {t: arrive[st - 1][pos] - base for t, pos in pp.pieces[key].items()}
        # stages sharing a template mostly walk it alike (kept with its run)
        part, via = runs[key].walk(start, outside)
        for k, v in part.items():
            breakdown[k] += v
        if via is None:
            break
        if first:
            start = pp.outputs[pp.stages[i - 1]][pp.pieces[key][via]]
        else:
            start = (pp.joins[i] or {})[via]
        i -= 1
    interval, n_links = _stage_resources(pp, runs, offset)
    for h in pp.handoffs:
        interval = max(interval, h.serialisation)
        latency += h.cycles
        breakdown["link_serialisation"] += h.serialisation
        breakdown["link_latency"] += sum(h.hop_latency)
        link_busy += h.serialisation * len(h.hop_latency)
        transfers += 1 if h.hop_latency else 0
    smax, scat = _sram(pp.sram_bytes)
    n_links += sum(len(h.hop_latency) for h in pp.handoffs)
    return StepMetrics(
        latency_cycles=latency, clock_hz=pp.clock_hz, chips=pp.chips,
        breakdown_cycles=breakdown, unit_busy_cycles=units, link_busy_cycles=link_busy,
        links_used=n_links, sram_bytes_per_chip_max=smax, sram_bytes_by_category=scat,
        sram_capacity_bytes=pp.sram_capacity_bytes, instructions=instrs, transfers=transfers,
        events=events, fidelity="fast", program_hash=pp.content_hash(),
        initiation_interval_cycles=interval,
        kv_slots=kv_slots(pp.sram_bytes, pp.sram_capacity_bytes))


def _stage_resources(pp: PipelineProgram, runs: dict[str, _Simulated],
                     offset: list[int]) -> tuple[int, int]:
    """The initiation interval over the stages (each stage's widest resource span, its parts
    placed at their offsets) and the links the stages use (counted per stage)."""
    seen: dict[tuple[Any, ...], tuple[int, int]] = {}
    interval = links = 0
    i = 0
    for _stage, entries in groupby(pp.stage_of):
        j = i + len(list(entries))
        run = tuple(pp.stages[i:j])
        if run not in seen:
            # parts run one after another, each within its own cycles: a resource's span
            # opens in the first part using it and closes in the last
            lo: dict[tuple[Any, ...], int] = {}
            hi: dict[tuple[Any, ...], int] = {}
            for k, key in enumerate(run, start=i):
                for r, (a, b) in runs[key].spans_in(pp.templates[key]).items():
                    lo.setdefault(r, a + offset[k])
                    hi[r] = b + offset[k]
            seen[run] = (max((hi[r] - lo[r] for r in lo), default=0),
                         sum(1 for r in lo if r[0] == "link"))
        width, used = seen[run]
        interval = max(interval, width)
        links += used
        i = j
    return interval, links
