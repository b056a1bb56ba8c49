"""The compiler: decode graph + system -> static Program (place -> lower -> schedule -> verify).

`compile_program` produces the full program (every chip, every layer, every transfer);
`compile_pipeline` produces the fast-fidelity form, one template per distinct stage, which
simulates to exactly the same step latency (stages of a batch-1 decode step run one after
another and use disjoint resources while they run); a stage whose output reaches its chips at
different cycles hands those lags to the next stage's template. A stage inside one node is
compiled as parts, one template per block shared by every stage with that block in that
place, when `lpusim.compiler.parts` finds that they compose exactly (else whole). When a stage
has no exact template (work outlasting its output) it raises `NoStageTemplate`, and the caller
simulates the full program instead. A template whose lowered tasks equal those of a template
verified before (in any compile of the process: a what-if on context, or another batch or
width, often leaves a block's tasks unchanged) reuses that schedule, the same objects, and only
its SRAM is checked again; the simulator reuses its run by the same objects. A stage's lowering
is reused across what-ifs on link bandwidth and hop latency, its transfers re-timed, and on
the fixed sync latencies, their instructions' fill derived again (`_lowered`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from itertools import groupby
from operator import attrgetter
from typing import Any, NamedTuple

from lpusim import parallel
from lpusim.caches import BoundedCache, derived
from lpusim.compiler.checks import check_lowered, check_placement, pass_checks, set_pass_checks
from lpusim.compiler.lower import Task, serialisation_cycles
from lpusim.compiler.parts import Part, join_parts
from lpusim.compiler.place import Placement, minimum_chips, place
from lpusim.compiler.schedule import (
    LoweredPart,
    Lowerer,
    NoSplit,
    StageIO,
    assemble,
    crosses_cuts,
    group_signature,
    handoff_plan,
    handoff_signature,
    lower_stage_template,
    lower_step,
    plan_routes,
    schedule,
    sync_cycles,
    timed,
)
from lpusim.compiler.topology import LinkGraph, build_link_graph
from lpusim.compiler.verify import verify_program, verify_schedule, verify_sram
from lpusim.config.specs import ChipSpec, SystemSpec
from lpusim.errors import CapacityError, CompileError, LpusimError, NoStageTemplate
from lpusim.graph import DecodeGraph
from lpusim.graph.ops import COST_FIELDS
from lpusim.program import Handoff, Instr, PipelineProgram, Program, Transfer

__all__ = ["Placement", "compile_pipeline", "compile_program", "minimum_chips", "place",
           "placement", "set_pass_checks", "verify_program"]


def _run_pass(pass_name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run one named pass; errors that are not already lpusim errors name the pass."""
    try:
        return fn(*args, **kw)
    except (CapacityError, CompileError):
        raise
    except LpusimError:
        raise
    except (ValueError, KeyError, AssertionError) as e:
        raise CompileError(pass_name, str(e)) from e


def _group_key(pl: Placement, s: int) -> tuple[Any, ...]:
    return ("group", pl.stage_chips[s], pl.stage_chips[s - 1] if s else ())


def _group_signature(links: LinkGraph, pl: Placement, s: int) -> str:
    """`group_signature`, kept with the link graph by the chips of the group and the one
    before: every width of a speculative search places the same groups, and a group spanning
    racks needs hundreds of routes to sign."""
    return derived(links, _group_key(pl, s), lambda: group_signature(links, pl, s))


# a child signs the groups of the later stages when at least this many span nodes, unsigned
SIGN_AHEAD_STAGES = 16


class _SignsAhead:
    """With a CPU free for a child (`lpusim.parallel.free_cpus`), the node-spanning groups of
    the later two thirds of the stages are signed in a forked child while this process signs
    and compiles the earlier stages (each group signs hundreds of routes, and a first 405B
    step spends a third of its time so); `take(s)` before stage s's signature is read keeps
    the child's signatures with the link graph once s is the first of them. The signatures
    are the ones this process would make (a function of the links and the placement), and a
    child that fails leaves them to be made here."""

    def __init__(self, links: LinkGraph, pl: Placement):
        self.links = links
        self.pl = pl
        self.first = -1
        self.child: parallel.Forked[dict[int, str]] | None = None
        if parallel.free_cpus() < 1:
            return
        unsigned = [s for s, chips in enumerate(pl.stage_chips)
                    if len({links.node_of(c) for c in chips}) > 1
                    and _group_key(pl, s) not in links.derived]
        if len(unsigned) < SIGN_AHEAD_STAGES:
            return
        later = unsigned[len(unsigned) // 3:]       # this process also compiles templates
        self.first = later[0]
        self.child = parallel.fork(lambda: {s: group_signature(links, pl, s) for s in later})

    def take(self, s: int) -> None:
        if s != self.first or self.child is None:
            return
        got = self.child.result()
        self.child = None
        if got is not None:
            for t, sig in got[0].items():
                self.links.derived.setdefault(_group_key(self.pl, t), sig)

    def __enter__(self) -> _SignsAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.child is not None:
            self.child.cancel()


def placement(graph: DecodeGraph, chip: ChipSpec, chips: int, tp: int) -> Placement:
    """`place`, kept with the graph (`caches.derived`): a what-if on links or clocks, and the
    run after its deployment's sizing, re-place nothing. Treat the result as read-only."""
    return derived(graph, ("placement", chip, chips, tp),
                   lambda: _run_pass("place", place, graph, chip, chips, tp))


def _place(graph: DecodeGraph, system: SystemSpec, chips: int | None,
           tp: int | None) -> tuple[int, int, Placement, LinkGraph]:
    """The shared first passes: placement and the link graph of the chips used."""
    n = chips or system.chips
    tp = tp or system.topology.chips_per_node
    pl = placement(graph, system.chip, n, tp)
    if pass_checks():
        check_placement(graph, pl)
    links: LinkGraph = _run_pass("topology", build_link_graph, system, n)
    return n, tp, pl, links


def compile_program(graph: DecodeGraph, system: SystemSpec, *, chips: int | None = None,
                    tp: int | None = None, name: str = "step") -> Program:
    """The full static program of one decode step: place -> lower -> schedule -> verify."""
    n, tp, pl, links = _place(graph, system, chips, tp)
    tasks, meta = _run_pass("lower", lower_step, graph, system, pl, links)
    if pass_checks():
        check_lowered(graph, pl, system.chip, tasks)
    meta = {**meta, "stages": [list(s) for s in pl.stages], "tp": tp}
    prog: Program = _run_pass("schedule", schedule, tasks, name=name, system=system,
                              links=links, chips=tuple(range(n)), pl=pl, meta=meta)
    _run_pass("verify", verify_program, prog)
    return prog


def _stage_key(graph: DecodeGraph, blocks: tuple[str, ...], first: bool, last: bool,
               same: bool, handoff: str, signatures: dict[Any, str],
               per_layer: Counter[str]) -> str:
    """A name for the stage's template: its blocks (whole layers compacted, a half layer at
    either end named), its role and hand-off, and a digest of its ops' structure, so that two
    stages share a template only if they lower to the same program up to chip numbers.
    `per_layer` counts the graph's blocks per layer."""
    groups = [(layer, list(bs)) for layer, bs in groupby(blocks, key=lambda b: b.split(".")[0])]
    kinds: list[str] = []
    for layer, bs in groups:
        if layer.startswith("layer") and len(bs) == per_layer[layer]:
            kinds.append("layer")
        else:
            kinds += [b.split(".")[-1] for b in bs]
    compact: list[str] = []
    for k in kinds:
        if compact and compact[-1].split("x")[-1] == k and k == "layer":
            cnt = int(compact[-1].split("x")[0]) + 1 if "x" in compact[-1] else 2
            compact[-1] = f"{cnt}x{k}"
        else:
            compact.append(k)
    key = "+".join(compact)
    if first:
        key += "|tokens"
    if last:
        key += "|exit" + ("=entry" if same else "")
    if handoff:
        key += f"|in:{handoff}"
    return f"{key}#{_structure_digest(graph, blocks, signatures)}"


_signature = attrgetter(*COST_FIELDS)


def _structure_digest(graph: DecodeGraph, blocks: tuple[str, ...],
                      signatures: dict[Any, str]) -> str:
    """Digest of the ops of `blocks` without their names: every field that sets a cost, and
    each input as its position in the stage (or -1 for the stage input). `signatures` memoises,
    for the graph being compiled, the text of each op's fields by op name and by the fields
    themselves (the layers repeat them); the digest is of the text of the list of (fields,
    input positions) rows, built piecewise."""
    pos: dict[str, int] = {}
    rows = []
    for b in blocks:
        for name in graph.block_ops[b]:
            op = graph.op(name)
            sig = signatures.get(name)
            if sig is None:
                fields = _signature(op)
                sig = signatures.get(fields)        # the same fields in another layer
                if sig is None:
                    sig = signatures[fields] = repr(fields)
                signatures[name] = sig
            pos[name] = len(pos)
            rows.append(f"({sig}, {tuple(pos.get(s, -1) for s in op.inputs)!r})")
    return hashlib.sha256(f"[{', '.join(rows)}]".encode()).hexdigest()[:12]


class _Templates:
    """The templates of one fast-fidelity compile, and how each joins its neighbours: the
    items putting its output on each chip, when they are ready, its hand-off pieces, and (a
    stage part) what it imports and exports."""

    def __init__(self) -> None:
        self.programs: dict[str, Program] = {}
        self.outputs: dict[str, tuple[int, ...]] = {}
        self.arrivals: dict[str, list[int]] = {}
        self.pieces: dict[str, dict[int, int]] = {}
        self.parts: dict[str, Part] = {}
        self.no_split: set[str] = set()
        self.joins: dict[tuple[str, ...], list[dict[int, int]] | None] = {}


def _template(graph: DecodeGraph, system: SystemSpec, pl: Placement, links: LinkGraph, s: int,
              io: StageIO, released: dict[int, int] | None, key: str, name: str,
              tpl: _Templates, parts: tuple[tuple[int, int], ...] | None = None,
              part: int = 0) -> None:
    """Compile stage s's template (or, with `parts`, the template of one of its parts) into
    `tpl` under `key`: the verified program, the items putting its output on each of its
    chips (in chip order), when they are ready, its hand-off pieces (transfer id -> position
    of the sending chip in the previous stage) and, a part, what it imports and exports."""
    lp = _lowered(graph, system, pl, links, s, io, released if part == 0 else None, parts,
                  part)
    tasks, outs = lp.tasks, lp.outputs
    blocks = range(*parts[part]) if parts is not None else None
    if pass_checks():
        check_lowered(graph, pl, system.chip, tasks, range(s, s + 1), blocks)
    prog, sched = _scheduled(tasks, name=name, system=system, links=links,
                             chips=pl.stage_chips[s], pl=pl,
                             meta={"stage": s, "blocks": list(pl.stages[s])})
    ready = sched.ready
    order = tuple(outs[c] for c in pl.stage_chips[s] if c in outs)
    stage_end = parts is None or part == len(parts) - 1
    if stage_end and max(ready.values()) != max(ready[o] for o in order):
        raise NoStageTemplate(s, key)       # work outlasting the stage's output
    tpl.programs[key] = prog
    tpl.outputs[key] = order
    tpl.arrivals[key] = [ready[o] for o in order]
    if s > 0 and (parts is None or part == 0):
        prev = pl.stage_chips[s - 1]
        tpl.pieces[key] = {t.id: prev.index(t.src) for t in prog.transfers
                           if t.op == f"stage{s}.handoff"}
    if parts is not None:
        tpl.parts[key] = Part(prog, lp.imports, lp.exports, ready, sched.busy)


# what a stage's lowering reads but the link bandwidth, the hop latencies and the fixed sync
# latencies' values -> (the graph, placement, links and link graph it was lowered on, its
# bandwidth, whether every transfer takes a direct link, its sync cycles, the lowering); at
# most 5 x 10^4 tasks in all
_LOWERINGS: BoundedCache[tuple[Any, ...]] = BoundedCache(
    "template_lowerings", maxsize=2048, weigh=lambda v: len(v[7].tasks), max_weight=50_000)


def _lowered(graph: DecodeGraph, system: SystemSpec, pl: Placement, links: LinkGraph, s: int,
             io: StageIO, released: dict[int, int] | None,
             parts: tuple[tuple[int, int], ...] | None, part: int) -> LoweredPart:
    """`lower_stage_template`, kept (`template_lowerings`) by all the lowering reads (the
    graph, the chip, the placement, the links, the stage and its input) except the link
    bandwidth, the hop latencies and the values of the sync latencies. The bandwidth sets only
    each transfer's serialisation, and where every transfer of the stage takes one direct
    link, the latencies set only its hop latency (routes of several hops are chosen by
    latency, so such a stage is lowered again); a sync latency sets only the fill of the
    instructions of its category, once it is above 0 (`schedule.sync_cycles`: whether it is
    is part of the key). A what-if on any of them re-derives those cycles and lowers nothing
    again. The graph, placement and links are named by identity and held by the entry, so no
    other object can take their ids. Treat the result as read-only."""
    fixed = sync_cycles(system)
    key = (id(graph), id(pl), id(links.links), system.chip,
           tuple(v > 0 for v in fixed.values()), s,
           (io.entry, io.exit, io.input_bytes),
           tuple(sorted(released.items())) if released is not None else None, parts, part)
    bw = system.link_bandwidth_bytes_per_s
    hit = _LOWERINGS.get(key)
    if (hit is None or hit[0] is not graph or hit[1] is not pl or hit[2] is not links.links
            or (hit[3] is not links and not hit[5])):
        lp = _run_pass("lower", lower_stage_template, graph, system, pl, links, s, io,
                       released, parts, part)
        direct = all(len(t.route) <= 1 for t in lp.tasks)
        hit = (graph, pl, links.links, links, bw, direct, fixed, lp)
        _LOWERINGS.put(key, hit)
    _graph, _pl, _shape, lowered_on, lowered_bw, _direct, lowered_fixed, lp = hit
    same_sync = lowered_fixed == fixed
    if lowered_on is links and lowered_bw == bw and same_sync:
        return lp
    clock = system.chip.clock_hz
    latency = links.latency
    retime = lowered_on is not links or lowered_bw != bw
    ser: dict[int, int] = {}
    tasks = []
    for t in lp.tasks:
        if t.kind == "transfer":
            if retime:
                n = t.nbytes
                cycles = ser.get(n)
                if cycles is None:
                    cycles = ser[n] = serialisation_cycles(n, bw, clock)
                t = Task._make((*t[:9], cycles, tuple(map(latency.__getitem__, t.route)),
                                *t[11:]))
        elif not same_sync:
            c = t.cost
            if c is not None and c.category in fixed and c.unit == "icu":
                t = t._replace(cost=c._replace(fill=fixed[c.category]))
        tasks.append(t)
    return LoweredPart(tasks, lp.outputs, lp.imports, lp.exports)


class _TasksKey:
    """A template's tasks as a cache key, hashed once: a 70B template's tuple of tasks takes
    tens of microseconds to hash, and a look-up and a store hash their key again."""

    __slots__ = ("_hash", "tasks")

    def __init__(self, tasks: tuple[Task, ...]):
        self.tasks = tasks
        self._hash = hash(tasks)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _TasksKey) and self._hash == other._hash
                and self.tasks == other.tasks)


class _Schedule(NamedTuple):
    """A verified schedule, shared read-only: its items, and by item id when each result is
    ready and how long each item is busy."""

    instrs: tuple[Instr, ...]
    transfers: tuple[Transfer, ...]
    ready: dict[int, int]
    busy: dict[int, int]


# a template's lowered tasks -> their verified schedule; at most 5 x 10^4 items in all (about
# 30 MB with their tasks)
_SCHEDULES: BoundedCache[_Schedule] = BoundedCache(
    "template_schedules", maxsize=2048, weigh=lambda v: len(v.instrs) + len(v.transfers),
    max_weight=50_000)


def _scheduled(tasks: list[Task], *, name: str, system: SystemSpec, links: LinkGraph,
               chips: tuple[int, ...], pl: Placement, meta: dict[str, object]
               ) -> tuple[Program, _Schedule]:
    """Schedule and verify a template's tasks, or reuse the verified schedule of equal tasks:
    a schedule is a function of the tasks alone (`timed`), so it is the same, and it passed
    the same timing checks; the program around it (name, links, SRAM) is built anew and its
    SRAM checked. Also returns the schedule (shared with the cache: read-only)."""
    key = _TasksKey(tuple(tasks))
    hit = _SCHEDULES.get(key)
    fresh = hit is None
    if hit is None:
        instrs, transfers, ready, busy = _run_pass("schedule", timed, key.tasks)
        hit = _Schedule(instrs, transfers, dict(enumerate(ready)), dict(enumerate(busy)))
    prog = assemble(hit.instrs, hit.transfers, name=name, system=system, links=links,
                    chips=chips, pl=pl, meta=meta)
    if fresh:
        _run_pass("verify", verify_schedule, prog)
        _SCHEDULES.put(key, hit)            # only a schedule that passed is kept
    _run_pass("verify", verify_sram, prog)
    return prog, hit


def _compile_parts(graph: DecodeGraph, system: SystemSpec, pl: Placement, links: LinkGraph,
                   s: int, io: StageIO, released: dict[int, int] | None,
                   parts: tuple[tuple[int, int], ...], keys: list[str], name: str,
                   tpl: _Templates) -> bool:
    """Compile the parts of stage s that are new; True if they compose exactly (their joins
    are then in `tpl.joins`), False if the stage must be compiled whole."""
    combo = tuple(keys)
    if combo not in tpl.joins:
        for j, key in enumerate(keys):
            if key in tpl.no_split:
                tpl.joins[combo] = None
                break
            if key not in tpl.programs:
                try:
                    _template(graph, system, pl, links, s, io, released, key,
                              f"{name}:{key}", tpl, parts, j)
                except (NoSplit, NoStageTemplate) as e:
                    if isinstance(e, NoSplit):      # the same key will not lower alone again
                        tpl.no_split.add(key)
                    tpl.joins[combo] = None
                    break
        else:
            tpl.joins[combo] = join_parts([tpl.parts[k] for k in keys])
    return tpl.joins[combo] is not None


def _parts(graph: DecodeGraph, pl: Placement, s: int, signatures: dict[Any, str]
           ) -> tuple[tuple[tuple[int, int], ...], list[str]]:
    """How stage s is cut into parts, and each part's structure: every block is a part,
    except that a cut is not made where a value that cannot cross one (`crosses_cuts`) would.
    A part's structure names its blocks, their digest and which earlier part's values its
    ops read (parts back, position of the op there)."""
    blocks = pl.stages[s]
    where = {n: j for j, blk in enumerate(blocks) for n in graph.block_ops[blk]}
    joined: set[int] = set()        # j: no cut before block j
    for j, blk in enumerate(blocks):
        for n in graph.block_ops[blk]:
            for src in graph.op(n).inputs:
                k = where.get(src)
                if k is not None and k < j and not crosses_cuts(graph.op(src), pl.tp):
                    joined.update(range(k + 1, j + 1))
    cuts = [j for j in range(1, len(blocks)) if j not in joined]
    parts = tuple(zip([0, *cuts], [*cuts, len(blocks)], strict=True))
    made: dict[str, tuple[int, int]] = {}
    out = []
    for j, (a, b) in enumerate(parts):
        names = [n for blk in blocks[a:b] for n in graph.block_ops[blk]]
        kind = "+".join(blk.split(".")[-1] for blk in blocks[a:b])
        digest = _structure_digest(graph, blocks[a:b], signatures)
        reads = sorted({(j - made[src][0], made[src][1]) for n in names
                        for src in graph.op(n).inputs if src in made})
        out.append(f"{kind}#{digest}|reads:{reads}")
        made.update({n: (j, i) for i, n in enumerate(names)})
    return parts, out


def _part_keys(graph: DecodeGraph, pl: Placement, s: int, first: bool, last: bool,
               same: bool, handoff: str, tail: str, signatures: dict[Any, str],
               in_bytes: int) -> tuple[tuple[tuple[int, int], ...], list[str]]:
    """Stage s's parts and the template key of each: the first part's key adds the stage
    input (tokens, or its hand-off, `tail`: lags and group, and its size), the last part's
    the stage's exit role."""
    # kept with the graph: a what-if on links or clocks compiles the same parts; and by the
    # forms of the stage's blocks (DecodeGraph.block_form): the stages of copied layers have
    # the same parts
    forms = tuple(map(graph.block_form.__getitem__, pl.stages[s]))
    parts, shapes = derived(graph, ("parts", pl.tp, forms),
                            lambda: _parts(graph, pl, s, signatures))
    keys = []
    for j, shape in enumerate(shapes):
        key = f"part:{shape}"
        if j == 0:
            key = f"first-part:{shape}" + ("|tokens" if first else "")
            key += f"|in:{handoff}" if handoff else ""
            key += f"|bytes:{in_bytes}{tail}"
        if j == len(shapes) - 1 and last:
            key += "|exit" + ("=entry" if same else "")
        keys.append(key)
    return parts, keys


def compile_pipeline(graph: DecodeGraph, system: SystemSpec, *, chips: int | None = None,
                     tp: int | None = None, name: str = "step") -> PipelineProgram:
    """Fast fidelity: verified templates of the distinct stages (or of their parts), plus the
    token return.

    A template holds its stage's incoming hand-off, its compute and collectives; it runs until
    its output is on every chip of the stage (the last stage: on the exit chip). A hand-off
    piece leaves the previous stage's chip at cycle 0, or, when that stage's output lands on
    its chips at different cycles (a tensor-parallel group spanning nodes), as many cycles
    after the earliest as that chip lags: the offsets are part of the template's key, and so
    are the routes inside a group spanning nodes (`group_signature`). Inside one node the
    output must reach every chip at once (else `NoStageTemplate`), and a stage of several
    blocks is compiled as one template per block when those compose exactly
    (`lpusim.compiler.parts`); else whole."""
    n, tp, pl, links = _place(graph, system, chips, tp)
    ios, back = _run_pass("lower", plan_routes, pl, links)
    tpl = _Templates()
    keys: list[str] = []
    stage_of: list[int] = []
    joins: list[dict[int, int] | None] = []
    last = len(ios) - 1
    same = ios[0].entry == ios[-1].exit
    signatures: dict[Any, str] = {}
    per_layer = Counter(b.split(".")[0] for b in graph.blocks)
    live_in = Lowerer(graph, system, pl, links).live_in_bytes
    lag: tuple[int, ...] = ()       # the previous stage's output per chip, after its earliest
    with _SignsAhead(links, pl) as signs:
        for s, io in enumerate(ios):
            signs.take(s)
            handoff = handoff_signature(links, pl, s)
            group = _group_signature(links, pl, s)
            released: dict[int, int] | None = None
            tail = ""
            if any(lag):
                prev = pl.stage_chips[s - 1]
                released = {c: lag[i] for i, c in enumerate(prev)}
                at = sorted((prev.index(a), released[a], pl.stage_chips[s].index(b),
                             tuple(links.latency[lid] for lid in route))
                            for a, b, route in handoff_plan(links, pl, s))
                tail += "|at:" + hashlib.sha256(repr(at).encode()).hexdigest()[:12]
            if group:
                tail += f"|group:{group}"
            mine: list[str] | None = None
            if not group and len(pl.stages[s]) > 1:
                parts, mine = _part_keys(graph, pl, s, s == 0, s == last, same, handoff, tail,
                                         signatures, live_in(s))
                if len(parts) == 1 or not _compile_parts(graph, system, pl, links, s, io,
                                                         released, parts, mine, name, tpl):
                    mine = None
            if mine is None:
                key = _stage_key(graph, pl.stages[s], s == 0, s == last, same, handoff,
                                 signatures, per_layer) + tail
                if key not in tpl.programs:
                    _template(graph, system, pl, links, s, io, released, key, f"{name}:{key}",
                              tpl)
                mine = [key]
                joins.append(None)
            else:
                found = tpl.joins[tuple(mine)]
                assert found is not None
                joins += [None, *found]
            keys += mine
            stage_of += [s] * len(mine)
            arrive = tpl.arrivals[mine[-1]]
            lag = tuple(r - min(arrive) for r in arrive) if s < last else ()
            if any(lag) and not group:
                # a group inside one node shares templates up to a permutation of its chips, which
                # would permute the lags too: exact only when its output is everywhere at once
                raise NoStageTemplate(s, mine[-1])
    p = graph.params
    clock = system.chip.clock_hz
    tokens = 4 * p.batch * p.positions
    if back:
        ret = Handoff(ios[-1].exit, ios[0].entry, tokens,
                      serialisation_cycles(tokens, system.link_bandwidth_bytes_per_s, clock),
                      tuple(links.latency[lid] for lid in back))
    else:
        ret = Handoff(ios[-1].exit, ios[0].entry, tokens, 0, ())
    used = set(keys)
    return PipelineProgram(
        name=name, clock_hz=clock, chips=n,
        templates={k: v for k, v in tpl.programs.items() if k in used}, stages=tuple(keys),
        stage_of=tuple(stage_of), handoffs=(ret,), sram_capacity_bytes=pl.capacity_bytes,
        sram_bytes=pl.chip_sram(),
        meta={"stages": [list(s) for s in pl.stages], "tp": tp,
              "entry": ios[0].entry, "exit": ios[-1].exit},
        outputs={k: v for k, v in tpl.outputs.items() if k in used},
        pieces={k: v for k, v in tpl.pieces.items() if k in used}, joins=tuple(joins))
