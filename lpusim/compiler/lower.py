"""Lowering: placed ops to untimed functional-unit instructions and link transfers.

Costs come from the chip spec only:
- MXM (matmul, attention): a shard is `mats` x ceil(k/rows) x ceil(n/cols) weight tiles spread
  over the planes. Per plane the first tile is loaded (tile bytes over `weight_load_streams`
  streams of one vector per cycle), then each tile costs max(load of the next tile, install +
  m activation vectors x the precision slowdown): loading overlaps compute. The slowdown
  applies when either operand is 16 bits or wider (FP16 activations against INT8 weights need
  the FP16 datapath); 8-bit formats (INT8, FP8 stored as block floating point) run on the INT8
  array. The MEM slices must also supply the tile bytes; the busier of the two bounds the op.
- VXM: one element per lane per ALU op for any width up to 32 bits (INT8 on one byte stream,
  FP16/FP32 on stream groups of two or four, ISCA 2020), so an op costs ceil(elements / lanes)
  vectors x ALU ops per element over the ALUs per lane, plus the transcendental issue interval
  per vector of values needing exp/rsqrt/sigmoid.
- MEM (embedding gather, KV append): vectors spread over the slices; SXM reshapes the new K/V
  into the layout the MXM reads.
- Every instruction pays stream transit (slices crossed x cycles per slice, plus the SRAM read
  latency) and pipeline fill (unit latency plus instruction ripple) before its result is ready.
- Links: serialisation is bytes over the link bandwidth; each hop adds its latency.
Collectives are built from transfers: an all-reduce over a tensor-parallel group is a
reduce-scatter (every chip sends 1/tp of the tensor to each peer over the direct links, each
chip adds what it received on its VXM) followed by an all-gather of the reduced chunks.
"""

from __future__ import annotations

from typing import NamedTuple

from lpusim.config.specs import DTYPE_BITS, ChipSpec, dtype_bytes
from lpusim.graph import DecodeGraph, Op

_HALF_RATE = 16  # MXM inputs of this many bits or more run at the chip's FP16 rate


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Cost(NamedTuple):
    """What an instruction occupies (a unit, for `duration` cycles) and how much later its
    result arrives (`transit`, `fill`), under a breakdown category."""

    unit: str
    duration: int
    transit: int
    fill: int
    category: str


def mxm_cost(chip: ChipSpec, mats: int, m: int, k: int, n: int, in_dtype: str,
             stream_dtype: str | None = None) -> Cost:
    """`in_dtype`: the stationary operand (weights, or K/V); `stream_dtype`: the activations
    streamed through it. The array runs at the FP16 rate if either is 16 bits or wider."""
    x = chip.mxm
    tiles = mats * ceil_div(k, x.rows) * ceil_div(n, x.cols)
    per_plane = ceil_div(tiles, x.planes)
    bits = max(DTYPE_BITS[in_dtype], DTYPE_BITS[stream_dtype or in_dtype])
    slow = x.fp16_slowdown if bits >= _HALF_RATE else 1
    tile_bytes = dtype_bytes(in_dtype, x.rows * x.cols)
    load = ceil_div(tile_bytes, x.weight_load_streams * chip.vector_bytes)
    step = max(load, x.install_cycles + m * slow)
    compute = load + per_plane * step
    mem = ceil_div(tiles * tile_bytes, chip.mem.slices * chip.mem.vectors_per_slice_per_cycle
                   * chip.vector_bytes)
    return Cost("mxm", max(compute, mem, 1), _transit(chip, chip.streams.slices_mem_to_mxm),
                x.pipeline_latency_cycles + chip.icu.ripple_cycles, "compute_mxm")


def vxm_cost(chip: ChipSpec, elements: int, ops_per_element: int, dtype: str,
             transcendentals: int = 0) -> Cost:
    # one element per lane per ALU op whatever its width up to 32 bits (wider operands are
    # stream groups of byte streams); 64-bit values take two
    lanes = chip.lanes
    words = ceil_div(DTYPE_BITS[dtype], 32)
    vectors = ceil_div(elements * words, lanes)
    alus = chip.vxm.alus_per_lane
    busy = ceil_div(vectors * ops_per_element, alus)
    if transcendentals:
        t_vectors = ceil_div(transcendentals * words, lanes)
        busy += ceil_div(t_vectors * chip.vxm.transcendental_cycles, alus)
    return Cost("vxm", max(busy, 1), _transit(chip, chip.streams.slices_mem_to_vxm),
                chip.vxm.op_latency_cycles + chip.icu.ripple_cycles, "compute_vxm")


def mem_cost(chip: ChipSpec, nbytes: int) -> Cost:
    vectors = ceil_div(nbytes, chip.vector_bytes)
    busy = ceil_div(vectors, chip.mem.slices * chip.mem.vectors_per_slice_per_cycle)
    return Cost("mem", max(busy, 1), chip.mem.read_latency_cycles, chip.icu.ripple_cycles,
                "data_movement")


def sxm_cost(chip: ChipSpec, nbytes: int) -> Cost:
    vectors = ceil_div(nbytes, chip.vector_bytes)
    busy = ceil_div(vectors, chip.sxm.vectors_per_cycle)
    return Cost("sxm", max(busy, 1), _transit(chip, chip.streams.slices_mem_to_vxm),
                chip.sxm.latency_cycles + chip.icu.ripple_cycles, "data_movement")


def _transit(chip: ChipSpec, slices: int) -> int:
    return chip.mem.read_latency_cycles + slices * chip.streams.transit_cycles_per_slice


def serialisation_cycles(nbytes: int, bandwidth_bytes_per_s: int, clock_hz: int) -> int:
    return max(1, ceil_div(nbytes * clock_hz, bandwidth_bytes_per_s))


def op_costs(op: Op, chip: ChipSpec, tp: int, graph: DecodeGraph) -> list[tuple[str, Cost]]:
    """The instructions (suffix, cost) one chip runs for its shard of `op`, in order."""
    act = graph.params.precision.activations
    if op.kind in ("matmul", "router"):
        mats, m, k, n = op.mats, op.m, op.k, op.n
        if op.parallel in ("column", "vocab"):
            n = ceil_div(n, tp)
        elif op.parallel == "row":
            k = ceil_div(k, tp)
        return [("", mxm_cost(chip, mats, m, k, n, op.in_dtype, act))]
    if op.kind in ("attn_scores", "attn_values"):
        kvc = ceil_div(op.kv_heads, tp)
        hc = ceil_div(op.heads, tp)
        positions = op.m // (op.heads // op.kv_heads)
        m = positions * ceil_div(hc, kvc)
        mats = graph.params.batch * kvc
        return [("", mxm_cost(chip, mats, m, op.k, op.n, op.in_dtype, act))]
    if op.kind == "embedding":
        if not op.inputs:   # the token ids themselves: nothing to run
            return []
        return [("", mem_cost(chip, ceil_div(op.weight_read_bytes, tp)))]
    if op.kind == "kv_append":
        nbytes = ceil_div(op.kv_write_bytes, tp) if op.kv_heads >= tp else op.kv_write_bytes
        return [(".layout", sxm_cost(chip, nbytes)), ("", mem_cost(chip, nbytes))]
    par = op.parallel
    if par in ("replicated", "expert"):
        elements, trans = op.elements, op.transcendentals
    else:
        elements, trans = ceil_div(op.elements, tp), ceil_div(op.transcendentals, tp)
    return [("", vxm_cost(chip, elements, op.ops_per_element, act, trans))]


class Task(NamedTuple):
    """An untimed instruction or transfer with its dependencies (indices of earlier tasks).
    Immutable, and a named tuple: a stage's tuple of tasks is the key its schedule is reused
    by (`lpusim.compiler.schedule.timed`)."""

    kind: str                   # "instr" or "transfer"
    chip: int                   # instr: its chip; transfer: source chip
    op: str
    block: int
    deps: tuple[int, ...]
    cost: Cost | None = None
    dst: int = -1
    route: tuple[int, ...] = ()
    nbytes: int = 0
    serialisation: int = 0
    hop_latency: tuple[int, ...] = ()
    stream: tuple[int, ...] = ()    # deps consumed vector by vector as they arrive
    # earliest issue cycle: in a stage template, a hand-off piece leaves a chip of the previous
    # stage that many cycles after that stage's earliest output (0: when its deps allow)
    not_before: int = 0
