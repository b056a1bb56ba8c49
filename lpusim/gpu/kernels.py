"""The decode graph as a GPU runs it: fused kernels and tensor-parallel collectives, per GPU.

The graph is the target-neutral one of `lpusim.graph.build_decode_graph`; this module only
groups its ops into kernels and counts what one GPU of a tensor-parallel group of `tp` moves
and computes in each.

Fusion (assumption, after the kernels TensorRT-LLM runs in decode): Q, K and V projections are
one GEMM; RoPE, the KV-cache append, the attention scores, softmax and the weighted sum of values
are one fused attention kernel (scores never reach HBM); gate and up projections with the SwiGLU
activation are one GEMM with a fused epilogue; a residual add and the norm that consumes it are
one kernel; every other op is its own kernel. An op with no bytes and no arithmetic (the token
ids) is no kernel.

Per GPU: weights and FLOPs of a split op (column, row, heads, vocab) are divided by `tp`
(rounded up), replicated ops are whole; the KV cache is split by KV heads, ceil(kv_heads / tp)
per GPU (replicated when tp exceeds the KV heads). Activations count only where they cross a
kernel boundary. Collectives (tp > 1): an all-reduce of the output after each row-parallel op
(attention output and FFN down projections; for MoE one per layer after the expert combine) and
after the vocabulary-parallel embedding; an all-gather of the logits after each
vocabulary-parallel LM head.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpusim.graph import DecodeGraph, Op

ATTENTION_KINDS = frozenset({"rope", "kv_append", "attn_scores", "softmax", "attn_values"})
TENSOR_KINDS = frozenset({"matmul", "attn_scores", "attn_values", "router"})
EIGHT_BIT = frozenset({"int4", "int8", "fp8"})   # run at the FP8/INT8 tensor rate


@dataclass(frozen=True)
class Kernel:
    """One kernel on one GPU: bytes it moves through HBM and the arithmetic it does."""

    name: str
    ops: tuple[str, ...]
    weight_bytes: int          # weights read
    kv_bytes: int              # KV cache read and written
    act_bytes: int             # activations read and written across the kernel boundary
    fp8_flops: int             # tensor-core FLOPs at the 8-bit rate
    bf16_flops: int            # tensor-core FLOPs at the 16-bit rate
    vector_flops: int          # CUDA-core arithmetic (norms, softmax, element-wise)

    @property
    def hbm_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + self.act_bytes


@dataclass(frozen=True)
class Collective:
    """A tensor-parallel collective over the NVLink domain, after kernel `after`."""

    name: str
    kind: str                  # "allreduce" or "allgather"
    bytes: int                 # the whole tensor (every GPU ends with all of it)
    after: str


def shard(total: int, tp: int, parallel: str) -> int:
    """One GPU's share of a quantity split `tp` ways (replicated: all of it)."""
    if parallel == "replicated" or tp == 1:
        return total
    return -(-total // tp)


def kv_share(total: int, op: Op, tp: int) -> int:
    """One GPU's share of KV-cache bytes: ceil(kv_heads / tp) of the op's KV heads."""
    if not op.kv_heads or tp == 1:
        return total
    per_head = total // op.kv_heads
    return per_head * -(-op.kv_heads // tp)


def _group(op: Op, group_of: dict[str, str], graph: DecodeGraph) -> str:
    short = op.name.rsplit(".", 1)[-1]
    prefix = op.name[: len(op.name) - len(short)]
    if op.kind in ATTENTION_KINDS:
        return prefix + "attention"
    if op.kind == "matmul" and short in ("q_proj", "k_proj", "v_proj"):
        return prefix + "qkv_proj"
    if short in ("gate_proj", "up_proj") or (op.kind == "activation" and short == "act"):
        return prefix + "gate_up_proj"
    if op.kind == "norm" and len(op.inputs) == 1 and \
            graph.op(op.inputs[0]).kind == "residual":
        return group_of[op.inputs[0]]
    return op.name


def _order(graph: DecodeGraph) -> list[str]:
    return [name for block in graph.blocks for name in graph.block_ops[block]]


def build_kernels(graph: DecodeGraph, tp: int) -> tuple[list[Kernel], list[Collective]]:
    """The kernels of one decode step on one GPU of a `tp`-way group, in order, and the
    collectives between them."""
    names = _order(graph)
    group_of: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for name in names:
        op = graph.op(name)
        if not (op.flops or op.weight_read_bytes or op.kv_read_bytes or op.kv_write_bytes
                or op.act_out_bytes or op.elements):
            continue
        g = _group(op, group_of, graph)
        group_of[name] = g
        members.setdefault(g, []).append(name)
    kernels = []
    for g, ops in members.items():
        inside = set(ops)
        w = kv = act = f8 = f16 = vec = 0
        for name in ops:
            op = graph.op(name)
            par = op.parallel
            w += shard(op.weight_read_bytes, tp, par)
            kv += kv_share(op.kv_read_bytes + op.kv_write_bytes, op, tp)
            if any(src not in inside for src in op.inputs):
                act += shard(op.act_in_bytes, tp, par)
            consumers = list(graph.dag.successors(name))
            if not consumers or any(c not in inside for c in consumers):
                act += shard(op.act_out_bytes, tp, par)
            flops = shard(op.flops, tp, par)
            if op.kind in TENSOR_KINDS:
                if (op.in_dtype or "bf16") in EIGHT_BIT:
                    f8 += flops
                else:
                    f16 += flops
            else:
                vec += flops + shard(op.transcendentals, tp, par)
        kernels.append(Kernel(g, tuple(ops), w, kv, act, f8, f16, vec))
    collectives: list[Collective] = []
    if tp > 1:
        for k in kernels:
            for name in k.ops:
                op = graph.op(name)
                partial_sums = ((op.parallel == "row" and ".expert" not in name)
                                or op.kind == "moe_combine"
                                or (op.kind == "embedding" and op.parallel == "vocab"))
                if partial_sums:
                    collectives.append(Collective(f"{name}.allreduce", "allreduce",
                                                  op.act_out_bytes, k.name))
                elif op.kind == "matmul" and op.parallel == "vocab":
                    collectives.append(Collective(f"{name}.allgather", "allgather",
                                                  op.act_out_bytes, k.name))
    return kernels, collectives
