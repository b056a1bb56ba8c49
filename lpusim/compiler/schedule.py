"""Lower a placed decode step into tasks and list-schedule them into a `Program`.

`lower_step` walks the pipeline stages in order. For each stage the entry chip broadcasts the
stage input to its peers over the direct links (a collective: it pays the system's fixed
collective latency), every chip realigns to the global counters (the per-stage deskew), then
its shard of every op of every block in graph order; partial sums (row-parallel outputs, the
vocab-split embedding) are all-reduced before any non-linear consumer; the head's per-chip
argmax results are gathered on the exit chip. The exit chip hands the stage output to the next
stage's entry chip over the compiler's route; the last stage returns the sampled tokens to the
first stage, closing the step.

`schedule` is a deterministic list scheduler: tasks are taken in program order; each issues at
the earliest cycle at which its operands have arrived and its unit queue (or every link of its
route, cut-through) is free. Queues are in order, as on the hardware.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lpusim.caches import derived
from lpusim.compiler.lower import Cost, Task, ceil_div, op_costs, serialisation_cycles, vxm_cost
from lpusim.compiler.place import Placement
from lpusim.compiler.topology import LinkGraph
from lpusim.config.specs import ChipSpec, SystemSpec, dtype_bytes
from lpusim.graph import DecodeGraph, Op
from lpusim.program import Instr, Program, Transfer
from lpusim.units import ps_to_cycles


class NoSplit(Exception):  # noqa: N818 (a signal to the caller, not an error to report)
    """A stage cannot be cut into parts here: the caller compiles it whole."""


def crosses_cuts(op: Op, tp: int) -> bool:
    """Whether `op`'s value may be read across a cut between stage parts: not a partial sum
    (a row-parallel or vocab-split output, all-reduced by its reader) nor an expert's output
    (gathered by its reader), which the reader's part would have to redo."""
    return tp == 1 or (op.parallel not in ("row", "expert")
                       and op.kind not in ("embedding", "moe_combine"))


@dataclass
class StageIO:
    entry: int
    exit: int
    input_bytes: int


def sync_cycles(system: SystemSpec) -> dict[str, int]:
    """The machine's fixed latencies in cycles, by the breakdown category of the one-cycle ICU
    instruction that carries each (its `fill`): every `stage_deskew`, `collective_latency`
    and `layer_barrier` instruction the lowering makes has that fill, and the lowering reads
    these values nowhere else but in whether a latency is above 0 (then its instructions are
    made at all; the deskew always is)."""
    sync, clock = system.sync, system.chip.clock_hz
    return {"stage_deskew": ps_to_cycles(sync.deskew_per_stage_ps, clock),
            "collective_latency": ps_to_cycles(sync.collective_latency_ps, clock),
            "layer_barrier": ps_to_cycles(sync.layer_barrier_ps, clock)}


class Lowerer:
    def __init__(self, graph: DecodeGraph, system: SystemSpec, placement: Placement,
                 links: LinkGraph):
        self.g = graph
        self.pl = placement
        self.block_index = graph.block_index
        self._machine(system, links, graph.params.precision.activations)

    def _machine(self, system: SystemSpec, links: LinkGraph, act_dtype: str) -> None:
        """What the primitives and collectives need: the chip, links, clock and fixed
        latencies (all a collective alone needs, see `collectives_only`)."""
        self.sys = system
        self.chip: ChipSpec = system.chip
        self.links = links
        self.tasks: list[Task] = []
        self.clock = system.chip.clock_hz
        self.bw = system.link_bandwidth_bytes_per_s
        self._serialisation: dict[int, int] = {}
        self._latencies: dict[tuple[int, ...], tuple[int, ...]] = {}    # route -> hop latencies
        self._direct: dict[tuple[int, int], tuple[int, ...]] = {}       # (a, b) -> route
        fixed = sync_cycles(system)
        self.sync_cycles = fixed["stage_deskew"]
        self.collective_cycles = fixed["collective_latency"]
        self.barrier_cycles = fixed["layer_barrier"]
        self.act_dtype = act_dtype
        # a stage part (`stage(..., part=...)`): marker -> (address, chip position) of a value
        # an earlier part of the stage produced, and task -> what it imports
        self.markers: dict[int, tuple[Any, int]] = {}
        self.imports: dict[int, tuple[tuple[Any, int, bool], ...]] = {}

    @classmethod
    def collectives_only(cls, system: SystemSpec, links: LinkGraph,
                         act_dtype: str) -> Lowerer:
        """A lowerer for collectives outside a decode step (no graph, no placement: only the
        primitives and the collectives may be used)."""
        lw = cls.__new__(cls)
        lw._machine(system, links, act_dtype)
        return lw

    # primitives ------------------------------------------------------------------------
    def instr(self, chip: int, op: str, block: int, cost: Cost, deps: tuple[int, ...],
              stream: tuple[int, ...] = ()) -> int:
        if self.markers and deps and min(deps) < 0:
            deps, stream = self._imports(deps, stream)
        self.tasks.append(_make(Task, ("instr", chip, op, block, deps, cost, -1, (), 0, 0, (),
                                       stream, 0)))
        return len(self.tasks) - 1

    def _imports(self, deps: tuple[int, ...],
                 stream: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A task of a stage part reading values of earlier parts (negative markers): record
        them as its imports (address, chip position, streamed) and drop them from its deps."""
        self.imports[len(self.tasks)] = tuple((*self.markers[d], d in stream)
                                              for d in deps if d < 0)
        return (tuple(d for d in deps if d >= 0), tuple(d for d in stream if d >= 0))

    def transfer(self, src: int, dst: int, route: Sequence[int], nbytes: int, op: str,
                 block: int,
                 deps: tuple[int, ...], stream: tuple[int, ...] = (),
                 not_before: int = 0) -> int:
        if self.markers and deps and min(deps) < 0:
            deps, stream = self._imports(deps, stream)
        route = tuple(route)
        lat = self._latencies.get(route)
        if lat is None:     # a stage's collectives take the same few routes again and again
            lat = self._latencies[route] = tuple(map(self.links.latency.__getitem__, route))
        ser = self._serialisation.get(nbytes)
        if ser is None:     # a step moves the same few sizes thousands of times
            ser = self._serialisation[nbytes] = serialisation_cycles(nbytes, self.bw, self.clock)
        self.tasks.append(_make(Task, ("transfer", src, op, block, deps, None, dst,
                                       route, nbytes, ser, lat, stream, not_before)))
        return len(self.tasks) - 1

    def delay(self, ready: dict[int, int], name: str, block: int, category: str,
              cycles: int) -> dict[int, int]:
        """A fixed latency after `ready` on each chip: it delays the chain without occupying a
        unit (an ICU instruction of one cycle whose result arrives `cycles` later)."""
        if cycles <= 0:
            return ready
        return {c: self.instr(c, name, block, Cost("icu", 1, 0, cycles, category), (t,))
                for c, t in ready.items()}

    def direct(self, a: int, b: int) -> tuple[int, ...]:
        """The direct link a -> b, or the cheapest route when a group spans nodes."""
        hit = self._direct.get((a, b))
        if hit is None:
            lid = self.links.between.get((a, b))
            hit = self._direct[(a, b)] = ((lid,) if lid is not None
                                          else self.links.pair_route(a, b))
        return hit

    def all_reduce(self, chips: tuple[int, ...], ready: dict[int, int], nbytes: int, name: str,
                   block: int) -> dict[int, int]:
        """Reduce-scatter + all-gather over the direct links; returns chip -> ready task.

        A group spanning several nodes of equal size m is reduced hierarchically: a
        reduce-scatter inside each node (chunks of 1/m), an exchange of each reduced chunk with
        the chips holding the same chunk in the other nodes, then an all-gather inside each
        node. Only 1/m of the tensor per chip crosses between nodes, instead of every chip's
        share for every chip of the other nodes."""
        if len(chips) == 1:
            return dict(ready)
        nodes: dict[int, list[int]] = {}
        for c in chips:
            nodes.setdefault(self.links.node_of(c), []).append(c)
        groups = [tuple(g) for _n, g in sorted(nodes.items())]
        if len(groups) == 1 or len({len(g) for g in groups}) != 1:
            groups = [tuple(chips)]
        m = len(groups[0])
        chunk = ceil_div(nbytes, m)
        red: dict[int, int] = {}
        for g in groups:
            red.update(self._reduce_scatter(g, ready, chunk, f"{name}.reduce_scatter",
                                            f"{name}.reduce", block))
        if len(groups) > 1:
            act = self.act_dtype
            elems = max(1, chunk // max(1, dtype_bytes(act, 1)))
            for i in range(m):
                peers = [g[i] for g in groups]
                got = {c: [self.transfer(d, c, self.direct(d, c), chunk, f"{name}.exchange",
                                         block, (red[d],), stream=(red[d],))
                           for d in peers if d != c] for c in peers}
                for c in peers:
                    red[c] = self.instr(c, f"{name}.combine", block,
                                        vxm_cost(self.chip, elems * (len(peers) - 1), 1, act),
                                        (red[c], *got[c]), stream=(red[c], *got[c]))
        out: dict[int, int] = {}
        for g in groups:
            out.update(self._all_gather(g, red, chunk, f"{name}.all_gather", f"{name}.assemble",
                                        block))
        return self.delay(out, f"{name}.latency", block, "collective_latency",
                          self.collective_cycles)

    def _reduce_scatter(self, chips: tuple[int, ...], ready: dict[int, int], chunk: int,
                        xname: str, rname: str, block: int) -> dict[int, int]:
        """Each chip sends its partial of every peer's chunk to that peer, which adds them
        up: chip -> the task holding its reduced chunk."""
        if len(chips) == 1:
            return {chips[0]: ready[chips[0]]}
        act = self.act_dtype
        elems = max(1, chunk // max(1, dtype_bytes(act, 1)))
        rs: dict[int, list[int]] = {c: [] for c in chips}
        for a in chips:
            for b in chips:
                if a != b:
                    # each peer's chunk leaves as the producer emits it (the compiler orders
                    # output column blocks round-robin over the peers), so the scatter
                    # overlaps the matmul that makes the partial sums
                    rs[b].append(self.transfer(a, b, self.direct(a, b), chunk, xname, block,
                                               (ready[a],), stream=(ready[a],)))
        # the reduction adds vectors as they arrive, and sends each reduced vector on at once
        return {c: self.instr(c, rname, block,
                              vxm_cost(self.chip, elems * (len(chips) - 1), 1, act),
                              (ready[c], *rs[c]), stream=(ready[c], *rs[c])) for c in chips}

    def _all_gather(self, chips: tuple[int, ...], red: dict[int, int], chunk: int, xname: str,
                    aname: str, block: int) -> dict[int, int]:
        """Every chip sends its reduced chunk to its peers: chip -> the task holding all."""
        ag: dict[int, list[int]] = {c: [] for c in chips}
        for a in chips:
            for b in chips:
                if a != b:
                    ag[b].append(self.transfer(a, b, self.direct(a, b), chunk, xname, block,
                                               (red[a],), stream=(red[a],)))
        # a chip's full result: its own reduced chunk plus every peer's
        return {c: self.instr(c, aname, block, Cost("icu", 1, 0, 0, "synchronisation"),
                              (red[c], *ag[c])) for c in chips}

    def expert_gather(self, chips: tuple[int, ...], ready: dict[int, int], src: str,
                      block: int) -> dict[int, int]:
        """An expert-parallel op's output, on its owner chip only, sent (vector by vector, as
        the expert produces it) to every other chip of the stage: chip -> the task holding
        it. Together over a MoE layer's active experts this is the all-to-all combine."""
        (owner, t), = ready.items()
        nbytes = self.g.op(src).act_out_bytes
        out = {owner: t}
        for c in chips:
            if c != owner:
                out[c] = self.transfer(owner, c, self.direct(owner, c), nbytes,
                                       f"{src}.combine", block, (t,), stream=(t,))
        return out

    # a stage -------------------------------------------------------------------------
    def handoff_plan(self, s: int) -> list[tuple[int, int, list[int]]]:
        return handoff_plan(self.links, self.pl, s)

    def stage(self, s: int, io: StageIO, inputs: dict[int, int] | None,
              released: dict[int, int] | None = None,
              parts: tuple[tuple[int, int], ...] | None = None, part: int = 0,
              exports: dict[Any, int] | None = None) -> dict[int, int]:
        """Lower stage `s`. Stage 0 gets the tokens on io.entry; a later stage gets its input
        in pieces over the direct links between the two nodes (`inputs`: previous chip -> the
        task producing its output, empty for a template starting at cycle 0, whose pieces
        leave a previous chip at the cycle `released` gives it, 0 by default); each landing
        chip then forwards its piece to its peers. Returns chip -> the task putting the stage
        output there (the last stage: only io.exit, after the sampled tokens are gathered).

        With `parts` (block ranges cutting the stage), only part `part` is lowered: part 0
        takes the stage input as above, a later part starts from the values earlier parts
        made (markers: `imports` records which each task reads). `exports` receives, per
        (op position in the part, chip position), the task holding each op's value, and
        ("sync", chip position) the stage-start point. Raises `NoSplit` when the cut cannot
        be lowered alone (a partial sum or an expert output crossing it, or a value a layer
        barrier delays in a part between its maker and its reader)."""
        chips = self.pl.stage_chips[s]
        blocks = self.pl.stages[s]
        lo, hi = parts[part] if parts else (0, len(blocks))
        b0 = self.block_index[blocks[lo]]
        value: dict[str, dict[int, int]] = {}
        if lo > 0:
            assert parts is not None
            sync = self._part_inputs(s, parts, part, value)
            return self._blocks(s, io, blocks[lo:hi], hi == len(blocks), sync, value, exports)
        have: dict[int, tuple[int, ...]] = {}
        if s == 0:
            for c in chips:
                if c == io.entry:
                    have[c] = ()
                else:
                    have[c] = (self.transfer(io.entry, c, self.direct(io.entry, c),
                                             io.input_bytes, f"stage{s}.broadcast", b0, ()),)
        else:
            plan = self.handoff_plan(s)
            piece = ceil_div(io.input_bytes, len(plan))
            landed: dict[int, int] = {}
            for a, b, route in plan:
                dep = (inputs[a],) if inputs else ()
                landed[b] = self.transfer(a, b, route, piece, f"stage{s}.handoff", b0, dep,
                                          not_before=(released or {}).get(a, 0))
            for c in chips:
                got = [landed[c]] if c in landed else []
                # forwarded vector by vector as the piece lands
                got += [self.transfer(d, c, self.direct(d, c), piece,
                                      f"stage{s}.handoff_gather", b0, (t,), stream=(t,))
                        for d, t in landed.items() if d != c]
                have[c] = tuple(got)
        if self.collective_cycles > 0 and (len(chips) > 1 or s > 0):
            # the broadcast or hand-off of the stage input is a collective
            have = {c: (self.instr(c, f"stage{s}.input.latency", b0,
                                   Cost("icu", 1, 0, self.collective_cycles,
                                        "collective_latency"), have[c]),) for c in chips}
        sync = {c: self.instr(c, f"stage{s}.deskew", b0,
                              Cost("icu", 1, 0, self.sync_cycles, "stage_deskew"), have[c])
                for c in chips}
        return self._blocks(s, io, blocks[lo:hi], hi == len(blocks), sync, value, exports)

    def _part_inputs(self, s: int, parts: tuple[tuple[int, int], ...], part: int,
                     value: dict[str, dict[int, int]]) -> dict[int, int]:
        """The inputs of a later part of stage s: a marker per chip for the stage-start point
        (what ops reading the stage's input depend on) and for every value an earlier part
        made that this part reads (into `value`). Returns the stage-start markers."""
        chips = self.pl.stage_chips[s]
        blocks = self.pl.stages[s]
        lo, hi = parts[part]
        made: dict[str, tuple[int, int]] = {}       # op -> (parts back, position in its part)
        for back in range(1, part + 1):
            a, b = parts[part - back]
            names = [n for blk in blocks[a:b] for n in self.g.block_ops[blk]]
            made.update({n: (back, i) for i, n in enumerate(names)})

        def marker(addr: Any, pos: int) -> int:
            m = -1 - len(self.markers)
            self.markers[m] = (addr, pos)
            return m

        sync = {c: marker(("sync",), i) for i, c in enumerate(chips)}
        for blk in blocks[lo:hi]:
            for name in self.g.block_ops[blk]:
                for src in self.g.op(name).inputs:
                    if src in made and src not in value:
                        if not crosses_cuts(self.g.op(src), len(chips)):
                            raise NoSplit(f"{src} crosses the cut as a partial or expert "
                                          f"output")
                        if self._delayed_between(s, parts, part - made[src][0], part, src):
                            raise NoSplit(f"{src} is read after a layer barrier delays it")
                        value[src] = {c: marker(made[src], i) for i, c in enumerate(chips)}
        return sync

    def _delayed_between(self, s: int, parts: tuple[tuple[int, int], ...], made_in: int,
                         part: int, src: str) -> bool:
        """Whether a part strictly between the one that made `src` and `part` delays it by
        a layer barrier (its attention reads `src` first): the whole stage's later readers
        then wait for the delayed value, which that part does not export."""
        if self.barrier_cycles <= 0:
            return False
        blocks = self.pl.stages[s]
        return any(blk.endswith(".attn") and self.g.op(self.g.block_ops[blk][0]).inputs[0] == src
                   for mid in range(made_in + 1, part)
                   for blk in blocks[parts[mid][0]:parts[mid][1]])

    def _blocks(self, s: int, io: StageIO, blocks: tuple[str, ...], stage_end: bool,
                sync: dict[int, int], value: dict[str, dict[int, int]],
                exports: dict[Any, int] | None) -> dict[int, int]:
        """The ops of `blocks` of stage s on its chips, from `sync` (the stage-start point)
        and `value` (what earlier parts made); `stage_end`: they end the stage."""
        chips = self.pl.stage_chips[s]
        tp = len(chips)
        partial: set[str] = set()
        reduced: dict[str, dict[int, int]] = {}
        gathered: dict[str, dict[int, int]] = {}
        last = ""
        gathers: list[str] = []
        for blk in blocks:
            bi = self.block_index[blk]
            if blk.endswith(".attn") and self.barrier_cycles > 0:
                x = self.g.op(self.g.block_ops[blk][0]).inputs[0]
                if x in value:
                    value[x] = self.delay(value[x], f"{blk}.barrier", bi, "layer_barrier",
                                          self.barrier_cycles)
                else:
                    sync = self.delay(sync, f"{blk}.barrier", bi, "layer_barrier",
                                      self.barrier_cycles)
            for name in self.g.block_ops[blk]:
                op = self.g.op(name)
                costs = op_costs(op, self.chip, tp, self.g)
                ins: list[dict[int, int]] = []
                owner = chips[op.expert % tp] if op.parallel == "expert" else None
                for src in op.inputs:
                    if src not in value:
                        ins.append(sync)
                    elif owner is None and self.g.op(src).parallel == "expert":
                        # an expert's output, whole on its owner: sent to every other chip
                        if src not in gathered:
                            gathered[src] = self.expert_gather(chips, value[src], src, bi)
                        ins.append(gathered[src])
                    elif src in partial and op.kind != "moe_combine":
                        if src not in reduced:
                            nbytes = self.g.op(src).act_out_bytes
                            reduced[src] = self.all_reduce(chips, value[src], nbytes,
                                                           f"{src}.allreduce", bi)
                        ins.append(reduced[src])
                    else:
                        ins.append(value[src])
                if not op.inputs:
                    ins.append(sync)
                out: dict[int, int] = {}
                for c in (chips if owner is None else (owner,)):
                    deps = tuple(sorted({v[c] for v in ins}))
                    t = -1
                    for suffix, cost in costs:
                        t = self.instr(c, name + suffix, bi, cost, deps)
                        deps = (t,)
                    out[c] = t if t >= 0 else sync[c]
                if op.kind == "moe_combine" and any(s in gathered for s in op.inputs):
                    # the expert outputs' exchange (an all-to-all) is one collective
                    out = self.delay(out, f"{name}.latency", bi, "collective_latency",
                                     self.collective_cycles)
                value[name] = out
                if tp > 1 and (op.parallel == "row" or (op.kind == "embedding" and op.inputs)
                               or (op.kind == "moe_combine"
                                   and any(i in partial for i in op.inputs))):
                    partial.add(name)
                if op.kind == "argmax":
                    gathers.append(name)
                last = name
        if exports is not None:
            names = [n for blk in blocks for n in self.g.block_ops[blk]]
            pos = {c: i for i, c in enumerate(chips)}
            exports.update({(i, pos[c]): t for i, n in enumerate(names)
                            for c, t in value[n].items() if t >= 0})
            exports.update({("sync", pos[c]): t for c, t in sync.items() if t >= 0})
        if not stage_end and (last in partial or gathers):
            raise NoSplit(f"{last} ends a part as a partial sum")
        bl = self.block_index[blocks[-1]]
        if gathers:
            # every chip's (value, index) per position to the exit chip, then the final pick
            bp = self.g.params.batch * self.g.params.positions
            arrivals: list[int] = []
            for gname in gathers:
                for c in chips:
                    if c == io.exit:
                        arrivals.append(value[gname][c])
                    else:
                        arrivals.append(self.transfer(c, io.exit, self.direct(c, io.exit),
                                                      8 * bp, f"{gname}.gather", bl,
                                                      (value[gname][c],)))
            picked = {io.exit: self.instr(io.exit, "sample", bl,
                                          vxm_cost(self.chip, len(gathers) * tp * bp, 2, "fp32"),
                                          tuple(arrivals))}
            if tp == 1:
                return picked
            return self.delay(picked, "sample.gather.latency", bl, "collective_latency",
                              self.collective_cycles)
        if last in partial:
            nbytes = self.g.op(last).act_out_bytes
            return self.all_reduce(chips, value[last], nbytes, f"{last}.allreduce", bl)
        return value[last]

    def live_in_bytes(self, s: int) -> int:
        """Bytes the hand-off into stage s carries: every tensor produced before the stage
        and read in it (the residual stream, and the FFN activation when the stage starts at
        a down projection)."""
        if s == 0:
            return self.token_bytes()
        return derived(self.g, ("live_in", self.pl.stages[s]), lambda: self._live_in(s))

    def _live_in(self, s: int) -> int:
        mine = {n for b in self.pl.stages[s] for n in self.g.block_ops[b]}
        srcs = {src for n in mine for src in self.g.op(n).inputs if src not in mine}
        return sum(self.g.op(src).act_out_bytes for src in sorted(srcs))

    def token_bytes(self) -> int:
        p = self.g.params
        return 4 * p.batch * p.positions


def plan_routes(pl: Placement, links: LinkGraph) -> tuple[list[StageIO], list[int]]:
    """The entry chip of stage 0, the exit chip of the last stage, and the route returning
    the sampled tokens from the one to the other."""
    n = len(pl.stage_chips)
    src, dst, back = links.route(list(pl.stage_chips[-1]), list(pl.stage_chips[0]))
    ios = [StageIO(dst if s == 0 else -1, src if s == n - 1 else -1, 0) for s in range(n)]
    return ios, back


def lower_step(graph: DecodeGraph, system: SystemSpec, pl: Placement,
               links: LinkGraph) -> tuple[list[Task], dict[str, object]]:
    """All stages, hand-offs and the token return of one decode step, as untimed tasks."""
    lw = Lowerer(graph, system, pl, links)
    ios, back = plan_routes(pl, links)
    outputs: dict[int, int] | None = None
    for s, io in enumerate(ios):
        io.input_bytes = lw.live_in_bytes(s)
        outputs = lw.stage(s, io, outputs)
    assert outputs is not None
    last = ios[-1]
    if back:
        lw.transfer(last.exit, ios[0].entry, back, lw.token_bytes(), "token_return",
                    lw.block_index[pl.stages[-1][-1]], (outputs[last.exit],))
    return lw.tasks, {"entry": ios[0].entry, "exit": last.exit}


@dataclass
class LoweredPart:
    """A stage, or one part of it, lowered alone: its tasks; chip -> the task putting its
    last value there; for a part, per task the values of earlier parts it reads ((parts back,
    op position in that part) or ("sync",) for the stage-start point, chip position,
    streamed), and per (op position, chip position), or ("sync", chip position), the task
    holding that value."""

    tasks: list[Task]
    outputs: dict[int, int]
    imports: dict[int, tuple[tuple[Any, int, bool], ...]] = field(default_factory=dict)
    exports: dict[Any, int] = field(default_factory=dict)


def lower_stage_template(graph: DecodeGraph, system: SystemSpec, pl: Placement,
                         links: LinkGraph, s: int, io: StageIO,
                         released: dict[int, int] | None = None,
                         parts: tuple[tuple[int, int], ...] | None = None,
                         part: int = 0) -> LoweredPart:
    """One stage alone: its input (tokens on the entry chip, or the hand-off pieces leaving
    the previous stage) starts at cycle 0, or for a piece leaving previous chip c, at cycle
    `released[c]`. With `parts`, only part `part` (blocks parts[part]): part 0 so, a later
    part from the values of the earlier ones, taken as ready at its cycle 0; raises NoSplit
    if the cut cannot be lowered alone."""
    lw = Lowerer(graph, system, pl, links)
    io = StageIO(io.entry, io.exit, lw.live_in_bytes(s))
    exports: dict[Any, int] | None = {} if parts is not None else None
    out = lw.stage(s, io, {} if s > 0 else None, released, parts, part, exports)
    return LoweredPart(lw.tasks, out, lw.imports, exports or {})


def group_signature(links: LinkGraph, pl: Placement, s: int) -> str:
    """The routes inside stage s's group and of the hand-off into it, chips written as their
    positions in their groups and any other chip a route passes through as the order in which
    it first appears: two stages with the same signature lower to the same program up to chip
    and link numbers (a link is the ordered pair of its chips). '' for a group inside one node
    (its chips are interchangeable, `handoff_signature` says all)."""
    chips = pl.stage_chips[s]
    if len({links.node_of(c) for c in chips}) == 1:
        return ""
    pos: dict[int, tuple[str, int]] = {c: ("c", i) for i, c in enumerate(chips)}
    if s > 0:
        pos.update({c: ("p", i) for i, c in enumerate(pl.stage_chips[s - 1])})
    others = itertools.count()
    ends = links.links
    lat = links.latency

    def label(c: int) -> tuple[str, int]:
        hit = pos.get(c)
        if hit is None:
            hit = pos[c] = ("x", next(others))
        return hit

    def hops(route: tuple[int, ...] | list[int]) -> tuple[object, ...]:
        return tuple((label(ends[lid].src), label(ends[lid].dst), lat[lid]) for lid in route)

    rows: list[object] = []
    between, pair = links.between, links.pair_route
    for a in chips:
        for b in chips:
            if a != b:
                lid = between.get((a, b))
                rows.append(hops((lid,) if lid is not None else pair(a, b)))
    if s > 0:
        for a, b, route in handoff_plan(links, pl, s):
            rows.append((pos[a], pos[b], hops(route)))
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:12]


def handoff_plan(links: LinkGraph, pl: Placement,
                 s: int) -> list[tuple[int, int, list[int]]]:
    """How the output of stage s-1 reaches stage s: one piece per direct global link between
    the two groups (every chip of s-1 holds the whole output, so each link's own chip sends
    its share), or, with no direct link, the whole tensor along the cheapest route. The
    result is shared (memoised per link graph): treat it as read-only."""
    prev, cur = pl.stage_chips[s - 1], pl.stage_chips[s]
    return derived(links, ("handoff", prev, cur), lambda: _handoff_plan(links, prev, cur))


def _handoff_plan(links: LinkGraph, prev: tuple[int, ...],
                  chips: tuple[int, ...]) -> list[tuple[int, int, list[int]]]:
    cur = set(chips)
    direct = sorted(lid for a in prev for lid in links.out.get(a, [])
                    if links.links[lid].dst in cur)
    if direct:
        return [(links.links[lid].src, links.links[lid].dst, [lid]) for lid in direct]
    a, b, route = links.route(list(prev), sorted(cur))
    return [(a, b, route)]


def handoff_signature(links: LinkGraph, pl: Placement, s: int) -> str:
    """The timing-relevant shape of the hand-off into stage s: the number of pieces and each
    route's hop latencies. Chips inside a node are interchangeable (fully connected, uniform
    links), so which chips send and land does not change the stage's timing."""
    if s == 0:
        return ""
    return derived(links, ("handoff_signature", pl.stage_chips[s - 1], pl.stage_chips[s]),
                   lambda: _handoff_signature(links, handoff_plan(links, pl, s)))


def _handoff_signature(links: LinkGraph, plan: list[tuple[int, int, list[int]]]) -> str:
    lats = sorted(tuple(links.latency[lid] for lid in route) for _a, _b, route in plan)
    return f"{len(plan)}x" + "/".join("-".join(str(x) for x in lat) for lat in lats)


# a named tuple from its fields in order, without its constructor's frame (tasks,
# instructions and transfers: 10^4-10^5 a step)
_make = tuple.__new__


def schedule(tasks: list[Task], *, name: str, system: SystemSpec, links: LinkGraph,
             chips: tuple[int, ...], pl: Placement | None, meta: dict[str, object]) -> Program:
    """Assign every task its issue cycle (ASAP, in-order queues, no link oversubscription)."""
    instrs, transfers, _ready, _busy = timed(tasks)
    return assemble(instrs, transfers, name=name, system=system, links=links, chips=chips,
                    pl=pl, meta=meta)


def timed(tasks: list[Task] | tuple[Task, ...]
          ) -> tuple[tuple[Instr, ...], tuple[Transfer, ...], list[int], list[int]]:
    """The instructions and transfers of `tasks`, each at its issue cycle: a function of the
    tasks alone (their chips, units, costs, routes and hop latencies), so equal tasks give
    equal schedules. Also, by item id (an item's id is its task's index), when each item's
    result is ready and how long it is busy (its `ready` and `busy`, already at hand here)."""
    ready: list[int] = [0] * len(tasks)
    busy: list[int] = [0] * len(tasks)
    unit_free: dict[tuple[int, str], int] = {}
    link_free: dict[int, int] = {}
    instrs: list[Instr] = []
    transfers: list[Transfer] = []
    add_instr, add_transfer = instrs.append, transfers.append    # the loop runs 10^4-10^5 times
    make = _make            # an Instr or Transfer from its fields in order, without a frame
    for i, t in enumerate(tasks):
        kind, chip, op, block, deps, c, dst, route, nbytes, ser, lats, stream, not_before = t
        last = 0
        if stream:
            if deps == stream and len(stream) == 1:     # half of all tasks: one streamed input
                d = stream[0]
                last = ready[d]
                start = last - busy[d]
            else:
                ss = set(stream)
                start = max([ready[d] for d in deps if d not in ss]
                            + [ready[d] - busy[d] for d in stream])
                last = max([ready[d] for d in stream])
        elif len(deps) == 1:
            start = ready[deps[0]]
        else:
            start = max([ready[d] for d in deps]) if deps else 0
        if not_before > start:
            start = not_before
        if kind == "instr":
            assert c is not None
            unit, dur, transit, fill, category = c
            key = (chip, unit)
            free = unit_free.get(key, 0)
            if free > start:
                start = free
            if last - start > dur:                  # a streaming op lasts until its input ends
                dur = last - start
            unit_free[key] = start + dur
            busy[i] = dur
            ready[i] = start + dur + transit + fill
            add_instr(make(Instr, (i, chip, unit, op, block, start, dur, transit, fill,
                                   category, deps, stream)))
        else:
            off = 0
            for lid, lat in zip(route, lats, strict=True):
                free = link_free.get(lid, 0) - off
                if free > start:
                    start = free
                off += lat
            if last - start > ser:
                ser = last - start
            off = start + ser
            for lid, lat in zip(route, lats, strict=True):
                link_free[lid] = off
                off += lat
            busy[i] = ser
            ready[i] = off
            add_transfer(make(Transfer, (i, chip, dst, route, lats, nbytes, op, block, start,
                                         ser, deps, stream)))
    return tuple(instrs), tuple(transfers), ready, busy


def assemble(instrs: tuple[Instr, ...], transfers: tuple[Transfer, ...], *, name: str,
             system: SystemSpec, links: LinkGraph, chips: tuple[int, ...],
             pl: Placement | None, meta: dict[str, object]) -> Program:
    """The Program of a schedule: its items, the links they use and the SRAM of its chips."""
    used = sorted({lid for t in transfers for lid in t.route})
    mine = set(chips)
    sram = pl.chip_sram(mine) if pl is not None else {}
    return Program(
        name=name, clock_hz=system.chip.clock_hz, chips=chips,
        instructions=instrs, transfers=transfers,
        links=tuple(links.links[lid] for lid in used),
        sram_capacity_bytes=pl.capacity_bytes if pl is not None else 0,
        sram_bytes={c: v for c, v in sram.items() if c in mine}, meta=dict(meta))


def allreduce_program(system: SystemSpec, chips: tuple[int, ...], nbytes: int,
                      act_dtype: str = "fp8") -> Program:
    """A program holding one all-reduce of `nbytes` over `chips` (each chip's partial ready
    at cycle 0), built exactly as a decode step builds its all-reduces."""
    from lpusim.compiler.topology import build_link_graph
    links = build_link_graph(system, max(chips) + 1)
    lw = Lowerer.collectives_only(system, links, act_dtype)
    ready = {c: lw.instr(c, "partial", 0, Cost("icu", 1, 0, 0, "synchronisation"), ())
             for c in chips}
    lw.all_reduce(chips, ready, nbytes, "allreduce", 0)
    return schedule(lw.tasks, name=f"allreduce:{len(chips)}x{nbytes}B", system=system,
                    links=links, chips=chips, pl=None, meta={"stages": [["allreduce"]]})
