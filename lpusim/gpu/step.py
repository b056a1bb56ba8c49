"""One decode step on HBM GPUs: a per-kernel roofline with fixed costs, as a `StepMetrics`.

What is modelled. The decode graph (`lpusim.graph.build_decode_graph`, the same graph the LPU
compiler takes) is grouped into fused kernels (`lpusim.gpu.kernels`). One GPU of a
tensor-parallel group of `tp` GPUs runs each kernel in

    max(HBM bytes / (peak HBM bandwidth x hbm efficiency),
        FLOPs / (peak rate x compute efficiency)) + kernel latency

with the 8-bit tensor rate for 8-bit (and 4-bit) operands, the BF16 rate for 16-bit ones and
the CUDA-core FP32 rate for element-wise work. Each tensor-parallel collective inside the
NVLink domain costs `allreduce` latency + the bytes each GPU sends (ring: 2(n-1)/n of the tensor
for an all-reduce, (n-1)/n for an all-gather) / (peak NVLink bandwidth x nvlink efficiency).
Every step adds a fixed `step` latency (sampling, host runtime). With more GPUs than `tp`, the
layers are cut into pipeline stages of `tp` GPUs (contiguous blocks, balanced by resident
bytes); at batch 1 the stages run one after another, and each hand-off moves the activations
over NVLink (same server: the collective latency plus the bytes at the achieved NVLink
bandwidth) or the scale-out network (its latency and bandwidth); the token returns to the first
stage the same way.

Memory per GPU (HBM): the resident weights of its stage (split ops 1/tp), the KV cache reserved
for `batch` sequences of the context window (split by KV heads), activation buffers
(double-buffered input and output of the largest kernel) and the runtime's reserved bytes. A
model that does not fit raises `CapacityError` naming the fewest GPUs that would hold it.

Assumed, not modelled: kernels do not overlap (CUDA-graph replay of one stream), so a step is
the sum of its kernels; no L2 reuse of weights between steps; collectives do not overlap compute;
one efficiency per resource for every kernel. The named constants and their bounds are in the
GPU's YAML (`efficiency`, `latency`). Time is kept in cycles of the GPU's clock (a time base
only), so the speculation layer can treat GPU and LPU steps alike.

LPU-only fields of `StepMetrics` are neutral: no unit or link busy cycles, the initiation
interval equals the step (a GPU runs one step at a time; concurrent users share it by batching)
and `kv_slots` is 0. The SRAM fields carry HBM: bytes used per GPU by category and capacity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from lpusim import caches
from lpusim.config.gpu_specs import GpuSpec
from lpusim.config.specs import GpuSystemSpec, ModelSpec, PrecisionSpec, dtype_bytes
from lpusim.errors import CapacityError, ConfigError, Issue
from lpusim.gpu.kernels import Collective, Kernel, build_kernels, shard
from lpusim.graph import DecodeGraph, GraphParams, build_decode_graph
from lpusim.sim import StepMetrics
from lpusim.units import format_bytes

BREAKDOWN_KEYS = ("weights", "kv_cache", "activations", "compute", "launch_overhead",
                  "collectives", "pipeline", "step_overhead")
MEMORY_CATEGORIES = ("weights", "kv_cache", "activations", "reserved")


@dataclass(frozen=True)
class KernelTime:
    """Seconds of one kernel by breakdown category."""

    parts: dict[str, float]

    @property
    def seconds(self) -> float:
        return sum(self.parts.values())


def kernel_time(k: Kernel, gpu: GpuSpec) -> KernelTime:
    """max(memory time, compute time) + kernel latency; the memory time split by what moved."""
    bw = gpu.achieved_hbm_bytes_per_s
    eff = gpu.efficiency.compute.value
    c = gpu.compute
    t_mem = k.hbm_bytes / bw
    t_comp = (k.fp8_flops / (c.dense_fp8_tflops * 1e12 * eff)
              + k.bf16_flops / (c.dense_bf16_tflops * 1e12 * eff)
              + k.vector_flops / (c.vector_fp32_tflops * 1e12 * eff))
    return KernelTime({
        "weights": k.weight_bytes / bw, "kv_cache": k.kv_bytes / bw,
        "activations": k.act_bytes / bw, "compute": max(0.0, t_comp - t_mem),
        "launch_overhead": gpu.latency.kernel.value_ps * 1e-12,
    })


def collective_seconds(c: Collective, tp: int, gpu: GpuSpec) -> float:
    """Latency + the bytes each GPU sends over NVLink (ring algorithm) / achieved bandwidth."""
    if tp <= 1:
        return 0.0
    share = (2 if c.kind == "allreduce" else 1) * (tp - 1) / tp
    return gpu.latency.allreduce.value_ps * 1e-12 + share * c.bytes / \
        gpu.achieved_nvlink_bytes_per_s


def _block_memory(graph: DecodeGraph, tp: int) -> list[dict[str, int]]:
    """Resident weights and reserved KV cache per GPU, block by block."""
    p, m = graph.params, graph.model
    out = []
    for block in graph.blocks:
        w = kv = 0
        for name in graph.block_ops[block]:
            op = graph.op(name)
            w += shard(op.weight_bytes, tp, op.parallel)
            if op.kind == "kv_append":
                heads = -(-op.kv_heads // tp)
                kv += dtype_bytes(p.precision.kv,
                                  p.batch * p.kv_reserved_tokens * 2 * heads * m.head_dim)
        out.append({"weights": w, "kv_cache": kv})
    return out


def _stages(sizes: list[dict[str, int]], n: int) -> list[tuple[int, int]]:
    """`n` contiguous groups of blocks, each closing once it holds its share of the bytes."""
    total = sum(s["weights"] + s["kv_cache"] for s in sizes)
    cuts: list[tuple[int, int]] = []
    acc, lo = 0, 0
    for i, s in enumerate(sizes):
        acc += s["weights"] + s["kv_cache"]
        left_blocks = len(sizes) - i - 1
        left_stages = n - len(cuts) - 1
        if left_stages and (acc >= total * (len(cuts) + 1) / n or left_blocks == left_stages):
            cuts.append((lo, i + 1))
            lo = i + 1
    cuts.append((lo, len(sizes)))
    return cuts


def memory_per_gpu(graph: DecodeGraph, kernels: list[Kernel], gpu: GpuSpec, tp: int,
                   stages: int) -> dict[str, int]:
    """HBM bytes by category on the fullest GPU."""
    sizes = _block_memory(graph, tp)
    groups = _stages(sizes, stages)
    best: dict[str, int] = {}
    for lo, hi in groups:
        w = sum(s["weights"] for s in sizes[lo:hi])
        kv = sum(s["kv_cache"] for s in sizes[lo:hi])
        if not best or w + kv > best["weights"] + best["kv_cache"]:
            best = {"weights": w, "kv_cache": kv}
    best["activations"] = 2 * max((k.act_bytes for k in kernels), default=0)
    best["reserved"] = gpu.hbm.reserved_bytes
    return best


@caches.memoise("gpu_kernels", maxsize=64)
def _lowered(model: ModelSpec, params: GraphParams, tp: int
             ) -> tuple[DecodeGraph, tuple[Kernel, ...], tuple[Collective, ...]]:
    """The decode graph and its kernels and collectives for one GPU of a `tp`-way group
    (independent of the GPU's rates, so a calibration's many steps share them)."""
    graph = build_decode_graph(model, params)
    kernels, collectives = build_kernels(graph, tp)
    return graph, tuple(kernels), tuple(collectives)


def _check_parallelism(system: GpuSystemSpec, chips: int, tp: int, heads: int) -> None:
    gpn = system.topology.gpus_per_node
    if tp > gpn:
        raise CapacityError(f"tensor parallelism {tp} exceeds the {gpn} GPUs of one NVLink "
                            f"domain of {system.name}; lpusim keeps tensor parallelism inside "
                            f"a server")
    if chips % tp:
        raise CapacityError(f"{chips} GPUs are not a whole number of tensor-parallel groups "
                            f"of {tp}")
    if chips > system.chips:
        raise CapacityError(f"{chips} GPUs exceed the {system.chips} of {system.name}")
    if heads % tp:
        raise CapacityError(f"tensor parallelism {tp} does not divide the model's {heads} "
                            f"attention heads (GPU runtimes split whole heads)")


def minimum_gpus(model: ModelSpec, params: GraphParams, system: GpuSystemSpec) -> int | None:
    """The fewest GPUs (tensor parallel up to a server, then whole pipeline stages of a
    server) whose HBM holds the model, or None if even the whole system does not."""
    gpu = system.chip
    gpn = system.topology.gpus_per_node
    cands = [n for n in range(1, gpn) if model.heads % n == 0] + \
        [gpn * k for k in range(1, system.topology.nodes + 1)]
    for n in cands:
        tp = min(n, gpn)
        graph, kernels, _ = _lowered(model, params, tp)
        mem = memory_per_gpu(graph, list(kernels), gpu, tp, n // tp)
        if sum(mem.values()) <= gpu.hbm.capacity_bytes:
            return n
    return None


def gpu_step_metrics(model: ModelSpec, system: GpuSystemSpec, *, chips: int, tp: int,
                     positions: int = 1, batch: int = 1, context: int = 8192,
                     precision: PrecisionSpec | None = None, with_heads: bool = False,
                     fidelity: str = "fast", context_window: int | None = None,
                     expert_parallel: bool = False) -> StepMetrics:
    """Latency and metrics of one decode step of `model` on the first `chips` GPUs of
    `system` (same contract as `lpusim.step.step_metrics`; `fidelity` has no effect; MoE
    experts are sharded across the tensor-parallel GPUs, expert parallelism is not modelled)."""
    del fidelity
    if expert_parallel:
        raise ConfigError(Issue(system.name, None, None, "expert_parallel",
                                "expert parallelism is not modelled on GPUs (experts are "
                                "sharded across the tensor-parallel GPUs)"))
    _check_parallelism(system, chips, tp, model.heads)
    gpu = system.chip
    params = GraphParams(positions=positions, batch=batch, context=context,
                         precision=precision or PrecisionSpec(), with_heads=with_heads,
                         context_window=context_window)
    graph, kernels, collectives = _lowered(model, params, tp)
    stages = chips // tp
    mem = memory_per_gpu(graph, list(kernels), gpu, tp, stages)
    used = sum(mem.values())
    if used > gpu.hbm.capacity_bytes:
        need = minimum_gpus(model, params, system)
        hint = (f"at least {need} GPUs would hold it" if need is not None else
                f"even all {system.chips} GPUs of {system.name} do not hold it")
        raise CapacityError(
            f"{model.name} needs {format_bytes(used)} of HBM per GPU on {chips} {gpu.name} "
            f"({tp}-way tensor parallel, {stages} pipeline stage(s)) but a GPU has "
            f"{format_bytes(gpu.hbm.capacity_bytes)}: over by "
            f"{format_bytes(used - gpu.hbm.capacity_bytes)} (weights "
            f"{format_bytes(mem['weights'])}, KV cache {format_bytes(mem['kv_cache'])}, "
            f"reserved {format_bytes(mem['reserved'])}); {hint}",
            overflow_bytes=used - gpu.hbm.capacity_bytes, min_chips=need)
    seconds = dict.fromkeys(BREAKDOWN_KEYS, 0.0)
    for k in kernels:
        for cat, t in kernel_time(k, gpu).parts.items():
            seconds[cat] += t
    for c in collectives:
        seconds["collectives"] += collective_seconds(c, tp, gpu)
    if stages > 1:
        hidden = dtype_bytes(params.precision.activations,
                             batch * positions * model.hidden_size)
        hops = _handoffs(system, chips, tp)
        for same_node in hops:
            if same_node:
                t = gpu.latency.allreduce.value_ps * 1e-12 + hidden / \
                    gpu.achieved_nvlink_bytes_per_s
            else:
                t = system.scale_out.latency_ps * 1e-12 + hidden / \
                    system.scale_out.bandwidth_bytes_per_s
            seconds["pipeline"] += t
    seconds["step_overhead"] = gpu.latency.step.value_ps * 1e-12
    clock = gpu.clock_hz
    cycles = {k: round(v * clock) for k, v in seconds.items()}
    latency = sum(cycles.values())
    desc = json.dumps([[k.name, k.hbm_bytes, k.fp8_flops, k.bf16_flops, k.vector_flops]
                       for k in kernels] + [[c.name, c.bytes] for c in collectives]
                      + [cycles, mem], sort_keys=True)
    return StepMetrics(
        latency_cycles=latency, clock_hz=clock, chips=chips, breakdown_cycles=cycles,
        unit_busy_cycles={}, link_busy_cycles=0, links_used=0,
        sram_bytes_per_chip_max=used, sram_bytes_by_category=dict(mem),
        sram_capacity_bytes=gpu.hbm.capacity_bytes, instructions=len(kernels),
        transfers=len(collectives), events=0, fidelity="gpu-roofline",
        program_hash=hashlib.sha256(desc.encode()).hexdigest(),
        initiation_interval_cycles=latency, kv_slots=0,
        extra={"backend": "gpu", "memory": "hbm", "tensor_parallel": tp,
               "pipeline_stages": stages, "kernels": len(kernels),
               "collectives": len(collectives),
               "hbm_bytes_read_per_gpu": sum(k.hbm_bytes for k in kernels)})


def _handoffs(system: GpuSystemSpec, chips: int, tp: int) -> list[bool]:
    """For each stage boundary (and the token's return to stage 0): whether both ends sit in
    the same server."""
    gpn = system.topology.gpus_per_node
    firsts = list(range(0, chips, tp))
    pairs = list(zip(firsts, firsts[1:], strict=False)) + [(firsts[-1], firsts[0])]
    return [a // gpn == b // gpn for a, b in pairs]


def check_shared_memory(system: GpuSystemSpec, target: StepMetrics, draft: StepMetrics,
                        draft_name: str) -> None:
    """A drafter on the target's GPUs must fit in HBM beside it (one runtime reservation)."""
    t, d = target.sram_bytes_by_category, draft.sram_bytes_by_category
    used = sum(t.values()) + sum(d.values()) - d.get("reserved", 0)
    cap = system.chip.hbm.capacity_bytes
    if used > cap:
        raise CapacityError(f"draft model {draft_name} does not fit beside the target on the "
                            f"same GPUs: {used} B of HBM per GPU, {cap} B available",
                            overflow_bytes=used - cap)


def gpu_assumptions(system: GpuSystemSpec) -> dict[str, Any]:
    """The named constants a GPU result depends on."""
    g = system.chip
    return {
        "hbm_efficiency": g.efficiency.hbm.value,
        "compute_efficiency": g.efficiency.compute.value,
        "nvlink_efficiency": g.efficiency.nvlink.value,
        "kernel_latency_ns": g.latency.kernel.value_ps / 1000,
        "allreduce_latency_ns": g.latency.allreduce.value_ps / 1000,
        "step_overhead_ns": g.latency.step.value_ps / 1000,
        "achieved_hbm_bytes_per_s": g.achieved_hbm_bytes_per_s,
        "achieved_nvlink_bytes_per_s": g.achieved_nvlink_bytes_per_s,
    }
