"""One operation of a decode step and what it costs in arithmetic and bytes.

An `Op` records its kind, the producers it reads, input and output shapes, the output dtype,
FLOPs, bytes of weights resident in SRAM and read per step, activation bytes in and out, and KV
bytes read and written (a KV append also records the tokens per sequence its layer's cache
holds). Matrix ops also carry their GEMM view (`mats` independent matrices of `m` x `k` times
`k` x `n`) and the way tensor parallelism may split them (`parallel`), which the compiler uses
to shard and lower them. All counts are for the whole (unsharded) step.
"""

from __future__ import annotations

from typing import NamedTuple

# parallel: how tensor parallelism splits an op across a node's chips
#   column   split the output features (n); no communication after
#   row      split the reduction (k); partial sums need an all-reduce
#   heads    split attention heads (and their KV)
#   vocab    split the vocabulary (embedding rows, LM-head columns, argmax)
#   expert   (expert parallelism, MoE) the op runs whole on the chip that owns its expert
#            (`expert`, owner = expert index modulo the stage's chips)
#   replicated  every chip does the whole op
PARALLEL = ("column", "row", "heads", "vocab", "replicated", "expert")

# unit: which functional unit executes the op's arithmetic
UNIT_OF_KIND = {
    "embedding": "mem",
    "norm": "vxm",
    "matmul": "mxm",
    "rope": "vxm",
    "kv_append": "mem",
    "attn_scores": "mxm",
    "softmax": "vxm",
    "attn_values": "mxm",
    "residual": "vxm",
    "activation": "vxm",
    "router": "mxm",
    "topk": "vxm",
    "moe_combine": "vxm",
    "argmax": "vxm",
    "scale": "vxm",
    "attn_softcap": "vxm",
    "logit_softcap": "vxm",
}


class Op(NamedTuple):
    """One op of the decode graph: immutable, and a named tuple because a graph makes 10^3-10^4
    of them per width (several times cheaper to make than a frozen dataclass)."""

    name: str
    kind: str
    block: str                      # placement block: "embed", "layer<i>", "head"
    inputs: tuple[str, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    dtype: str
    flops: int = 0
    weight_bytes: int = 0           # resident in SRAM
    weight_read_bytes: int = 0      # read per step
    act_in_bytes: int = 0
    act_out_bytes: int = 0
    kv_read_bytes: int = 0
    kv_write_bytes: int = 0
    parallel: str = "replicated"
    # GEMM view for MXM ops: `mats` matrices of (m x k) @ (k x n); weight dtype sets the rate
    mats: int = 0
    m: int = 0
    k: int = 0
    n: int = 0
    in_dtype: str = ""
    # vector view for VXM/MEM ops: elements processed, ALU ops per element, and how many
    # transcendental evaluations (exp, rsqrt, sigmoid) the op needs
    elements: int = 0
    ops_per_element: int = 0
    transcendentals: int = 0
    heads: int = 0                  # attention heads (q) the op spans, for head sharding
    kv_heads: int = 0
    expert: int = -1                # MoE expert index of an expert-parallel op
    # kv_append: tokens per sequence its layer's KV cache holds. It sizes SRAM, not the op's
    # work, so it is not among the fields that set its cost (`COST_FIELDS`)
    kv_tokens: int = 0

    @property
    def unit(self) -> str:
        return UNIT_OF_KIND[self.kind]


# the fields of an Op that set what it costs: all but its names, its wiring and its KV size
COST_FIELDS = tuple(f for f in Op._fields if f not in ("name", "block", "inputs", "kv_tokens"))
