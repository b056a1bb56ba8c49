"""Placement: pipeline stages across nodes, tensor parallelism inside a node, SRAM per chip.

The decode graph's blocks (embedding; per layer its attention, its FFN up to the activation and
its down projection; the head with final norm and LM head) are cut into contiguous pipeline
stages, one per tensor-parallel group of `tp` chips (a node by default). A stage may end
between a layer's attention and its FFN; it ends before a down projection (whose hand-off
carries the wide FFN activation) only when the model does not fit otherwise. The cut minimises
the largest per-chip SRAM footprint (weights, KV cache, activation buffers: double-buffered
inputs and outputs of the largest op; attention scores stream between units and are not
buffered whole), then splits the largest stages until every group has work. Each layer's KV
cache holds the tokens its KV append records (a sliding-window layer: at most its window).
Each chip of a group holds a 1/tp shard of every split op (replicated ops whole). Capacity per
chip is the chip's SRAM minus its reserved bytes; a model that does not fit raises
`CapacityError` with the chip, what overflowed by how much, and the minimum chips that would
fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from lpusim.config.specs import ChipSpec, dtype_bytes
from lpusim.errors import CapacityError
from lpusim.graph import DecodeGraph, Op

SRAM_CATEGORIES = ("weights", "kv_cache", "activations")


def shard(total: int, tp: int, parallel: str) -> int:
    """Per-chip share of a quantity split `tp` ways (replicated: all of it)."""
    if parallel == "replicated" or tp == 1:
        return total
    return -(-total // tp)


def kv_heads_per_chip(op: Op, tp: int) -> int:
    return -(-op.kv_heads // tp) if op.kv_heads else 0


def op_sram(op: Op, graph: DecodeGraph, tp: int) -> dict[str, int]:
    """SRAM bytes one chip needs for its shard of `op`."""
    out = {"weights": shard(op.weight_bytes, tp, op.parallel), "kv_cache": 0,
           "activations": 0}
    if op.kind == "kv_append":
        p = graph.params
        m = graph.model
        # the tokens this layer's cache holds (a local layer: its window)
        out["kv_cache"] = dtype_bytes(p.precision.kv, p.batch * op.kv_tokens * 2
                                      * kv_heads_per_chip(op, tp) * m.head_dim)
    return out


def block_sram(graph: DecodeGraph, block: str, tp: int) -> dict[str, int]:
    tot = dict.fromkeys(SRAM_CATEGORIES, 0)
    act = 0
    for name in graph.block_ops[block]:
        op = graph.op(name)
        for k, v in op_sram(op, graph, tp).items():
            tot[k] += v
        # double-buffered input and output of the largest op; attention scores and their
        # softmax flow MXM -> VXM -> MXM on streams, one key block at a time, never whole in SRAM
        if op.kind in ("attn_scores", "attn_softcap", "softmax", "attn_values"):
            continue
        par = op.parallel if op.kind not in ("residual", "norm") else "replicated"
        if par == "expert":         # whole on its owner chip
            par = "replicated"
        act = max(act, 2 * (shard(op.act_in_bytes, tp, par) + shard(op.act_out_bytes, tp, par)))
    tot["activations"] = act
    return tot


@dataclass(frozen=True)
class Placement:
    tp: int
    stages: tuple[tuple[str, ...], ...]          # blocks per stage
    stage_chips: tuple[tuple[int, ...], ...]     # chips per stage
    sram: tuple[dict[str, int], ...]             # per stage: bytes per chip by category
    capacity_bytes: int

    @property
    def chips(self) -> int:
        return sum(len(c) for c in self.stage_chips)

    def chip_sram(self, only: set[int] | None = None) -> dict[int, dict[str, int]]:
        """chip -> its SRAM bytes by category (of the chips in `only`, when given), in chip
        order."""
        if only is None:
            return {c: dict(self.sram[s]) for s, cs in enumerate(self.stage_chips) for c in cs}
        stage = self._stage_of
        return {c: dict(self.sram[stage[c]]) for c in sorted(only) if c in stage}

    @cached_property
    def _stage_of(self) -> dict[int, int]:
        return {c: s for s, cs in enumerate(self.stage_chips) for c in cs}

    @property
    def max_sram_bytes(self) -> int:
        return max(sum(s.values()) for s in self.sram)


class _Sizes:
    """Block sizes with O(1) stage totals: prefix sums of the bytes that add up (weights, KV
    cache) and a sparse table for the activation buffer, of which a stage keeps the largest."""

    __slots__ = ("act", "n", "pre", "table")

    def __init__(self, sizes: list[dict[str, int]]):
        self.n = len(sizes)
        self.pre = [0]
        for t in sizes:
            self.pre.append(self.pre[-1] + t["weights"] + t["kv_cache"])
        self.act = [t["activations"] for t in sizes]
        self.table = [self.act]
        span = 1
        while 2 * span <= self.n:
            row = self.table[-1]
            self.table.append([max(row[i], row[i + span]) for i in range(self.n - 2 * span + 1)])
            span *= 2

    def max_act(self, lo: int, hi: int) -> int:
        k = (hi - lo).bit_length() - 1
        row = self.table[k]
        return max(row[lo], row[hi - (1 << k)])

    def total(self, lo: int, hi: int) -> int:
        """SRAM per chip of a stage of blocks lo..hi-1 (hi > lo)."""
        return self.pre[hi] - self.pre[lo] + self.max_act(lo, hi)


def _greedy(sz: _Sizes, cap: int) -> list[tuple[int, int]] | None:
    """Fewest contiguous stages with every stage <= cap (None if a block alone exceeds it)."""
    return _cut(sz, cap)[0]


def _cut(sz: _Sizes, cap: int) -> tuple[list[tuple[int, int]] | None, int, int]:
    """`_greedy`'s stages, the largest stage total among them, and the least cap at which
    one of them could take the block after it (no larger cap below it cuts otherwise)."""
    out = []
    lo = 0
    n = sz.n
    pre, act = sz.pre, sz.act
    widest = 0
    grow = -1                       # none yet: every stage ends the model
    while lo < n:
        # grow the stage block by block, keeping its running activation maximum
        a = act[lo]
        if pre[lo + 1] - pre[lo] + a > cap:
            return None, 0, 0
        hi = lo + 1
        while hi < n:
            a2 = a if a >= act[hi] else act[hi]
            total = pre[hi + 1] - pre[lo] + a2
            if total > cap:
                if grow < 0 or total < grow:
                    grow = total
                break
            a, hi = a2, hi + 1
        total = pre[hi] - pre[lo] + a
        if total > widest:
            widest = total
        out.append((lo, hi))
        lo = hi
    return out, widest, grow


def min_stages(sizes: list[dict[str, int]], cap: int) -> int | None:
    g = _greedy(_Sizes(sizes), cap)
    return None if g is None else len(g)


def partition(sizes: list[dict[str, int]], n_stages: int) -> list[tuple[int, int]]:
    """Exactly n_stages contiguous groups minimising the largest group (n_stages <= blocks).

    The least cap whose greedy cut has at most n_stages stages, found by bisection that
    jumps: a cap that fits comes down to the widest stage of its cut (which cuts alike), and
    one that does not goes up to the least cap at which any of its stages could grow (every
    cap below cuts alike), so a few cuts find it where plain bisection over bytes needs
    about thirty."""
    sz = _Sizes(sizes)
    total = sz.total
    lo = max(total(i, i + 1) for i in range(sz.n))
    hi = total(0, sz.n)
    while lo < hi:
        mid = (lo + hi) // 2
        g, widest, grow = _cut(sz, mid)
        if g is not None and len(g) <= n_stages:
            hi = widest
        else:
            lo = max(mid + 1, grow)
    groups = _greedy(sz, lo) or [(0, sz.n)]
    while len(groups) < n_stages:
        # split the largest multi-block group (first one on ties) in its balanced middle
        best = max((i for i, (a, b) in enumerate(groups) if b - a > 1),
                   key=lambda i: (total(*groups[i]), -i))
        a, b = groups[best]
        cut = min(range(a + 1, b), key=lambda c: (max(total(a, c), total(c, b)), c))
        groups[best:best + 1] = [(a, cut), (cut, b)]
    return groups


def _merge(sizes: list[dict[str, int]], groups: list[tuple[int, int]]) -> list[dict[str, int]]:
    out = []
    for a, b in groups:
        tot = {k: sum(sizes[i][k] for i in range(a, b)) for k in ("weights", "kv_cache")}
        tot["activations"] = max(sizes[i]["activations"] for i in range(a, b))
        out.append(tot)
    return out


def atoms(blocks: list[str], fine: bool) -> list[tuple[int, int]]:
    """Groups of consecutive blocks a stage boundary may not split. Coarse: a layer's FFN
    (activation and down projection) stays whole, so every cut hands off the residual stream
    only; fine: a cut may also fall before a down projection (a wider hand-off)."""
    out: list[tuple[int, int]] = []
    for i, b in enumerate(blocks):
        if not fine and b.endswith(".down") and out:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _plan(sizes: list[dict[str, int]], blocks: list[str], n_stages: int,
          cap: int) -> tuple[list[tuple[int, int]], list[dict[str, int]]]:
    """Stage groups (block ranges): the coarse atoms when they fit the capacity in n_stages,
    else the fine ones; with their SRAM per chip."""
    tried = None
    for fine in (False, True):
        at = atoms(blocks, fine)
        if n_stages > len(at):
            continue
        asz = _merge(sizes, at)
        if not fine:
            # the greedy cut is the fewest stages within a capacity: when the coarse atoms need
            # more than n_stages within `cap`, no coarse partition fits, and the fine one decides
            need = _greedy(_Sizes(asz), cap)
            if need is None or len(need) > n_stages:
                continue
        groups = [(at[a][0], at[b - 1][1]) for a, b in partition(asz, n_stages)]
        sram = _merge(sizes, groups)
        tried = (groups, sram)
        if all(sum(t.values()) <= cap for t in sram):
            return tried
    assert tried is not None
    return tried


def place(graph: DecodeGraph, chip: ChipSpec, chips: int, tp: int) -> Placement:
    """Cut `graph` into chips // tp pipeline stages of `tp` chips and check SRAM capacity."""
    if chips % tp:
        raise CapacityError(f"{chips} chips are not a whole number of tensor-parallel "
                            f"groups of {tp}")
    blocks = graph.blocks
    form = graph.block_form
    by_form: dict[str, dict[str, int]] = {}     # copies of a block need what it needs
    for f in dict.fromkeys(form[b] for b in blocks):
        by_form[f] = block_sram(graph, f, tp)
    sizes = [dict(by_form[form[b]]) for b in blocks]
    cap = chip.usable_sram_bytes
    n_stages = chips // tp
    need = min_stages(sizes, cap)
    if n_stages > len(blocks):
        raise CapacityError(
            f"{chips} chips make {n_stages} pipeline stages of {tp}, but the model has only "
            f"{len(blocks)} placement blocks (embedding, {graph.model.layers} layers, head); "
            f"use at most {len(blocks) * tp} chips", min_chips=(need or 0) * tp or None)
    groups, stage_sram = _plan(sizes, blocks, n_stages, cap)
    for s, ((a, b), tot) in enumerate(zip(groups, stage_sram, strict=True)):
        used = sum(tot.values())
        if used > cap:
            worst = max(tot, key=lambda k: tot[k])
            first_chip = s * tp
            hint = (f"at least {need * tp} chips would fit" if need is not None else
                    f"a single block does not fit in one chip at tensor parallelism {tp}")
            raise CapacityError(
                f"chip {first_chip} (stage {s}, {blocks[a]}..{blocks[b - 1]}) needs "
                f"{_mb(used)} of SRAM but has {_mb(cap)} usable: over by {_mb(used - cap)} "
                f"({worst} {_mb(tot[worst])}); {hint}",
                chip=first_chip, overflow_bytes=used - cap,
                min_chips=need * tp if need is not None else None)
    return Placement(
        tp=tp,
        stages=tuple(tuple(blocks[a:b]) for a, b in groups),
        stage_chips=tuple(tuple(range(s * tp, (s + 1) * tp)) for s in range(n_stages)),
        sram=tuple(stage_sram), capacity_bytes=cap)


def _mb(nbytes: int) -> str:
    """Bytes for a message: decimal megabytes (10^6 B)."""
    return f"{nbytes / 1e6:,.1f} MB"


def minimum_chips(graph: DecodeGraph, chip: ChipSpec, tp: int) -> int | None:
    """The fewest chips (whole groups of tp) whose SRAM holds the model, or None if a single
    block cannot fit at this tensor parallelism."""
    sizes = [block_sram(graph, b, tp) for b in graph.blocks]
    n = min_stages(sizes, chip.usable_sram_bytes)
    return None if n is None else n * tp
