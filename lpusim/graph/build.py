"""Build the operation graph of one transformer decode step.

`build_decode_graph(model, params)` returns a `DecodeGraph`: a DAG whose nodes are `Op`s (also
as a networkx DiGraph, `dag`), for `positions` new tokens (1 for plain decode, gamma+1 or a
tree of n nodes for a verification pass) of `batch` sequences, each with `context` tokens
already in its KV cache.

Assumptions: Llama-style pre-norm blocks (RMSNorm, GQA attention with RoPE, SwiGLU FFN); the new
positions attend causally to each other (position i sees context + i + 1 keys); MoE layers route
each token to `experts_per_token` experts and the number of distinct experts touched by the step
is the expectation under uniform routing; sampling is greedy (argmax per position). FLOPs count
a multiply-add as 2; element-wise op counts are per element as stated in each op.

One layer of each kind (local or global attention) is built; the other layers of that kind are
copies of its ops under their own names (the layers of a kind differ in nothing else, and a
graph is built for every width and context a study asks for).

Model variants (fields of `ModelSpec`):
- head_dim need not be hidden_size / heads: q/k/v produce heads x head_dim features and o_proj
  reduces heads x head_dim back to hidden_size (Gemma).
- FFN: SwiGLU and GeGLU are gated (gate, up, down); plain GELU has up and down only. GELU is the
  tanh approximation: 7 ALU ops (x*x, *a, +c, *x, +1, *x, *0.5) and one tanh per element.
- Local (sliding-window) layers: position i attends to the last min(window, context + i + 1)
  keys, its own included; the layer's KV cache is a rolling buffer of the window (plus the
  positions - 1 extra keys a verification pass of several positions needs at once).
- Soft-capping: cap * tanh(x / cap) on every attention logit, and on every output logit, as
  its own VXM op (2 multiplies and a tanh per element). The output cap does not change the
  greedy argmax (tanh is monotone) but an endpoint sampling at a temperature needs the capped
  logits, so it is counted.
- QKV bias (Qwen 2.5): a bias vector on q, k and v (n parameters and n adds per row each).
- Post-norms (Gemma 2): the attention and FFN outputs are normed before each residual add.
- Embedding scale (Gemma): the looked-up rows are multiplied by sqrt(hidden_size).
- Tied embeddings: the LM head multiplies by the embedding table (one set of parameters, read
  in full every step, `weight_read_bytes`); the table's resident bytes are counted once, on the
  embedding op.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lpusim.config.specs import ModelSpec, PrecisionSpec, dtype_bytes
from lpusim.errors import GraphError
from lpusim.graph.ops import Op

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class GraphParams:
    """Width and precision of a decode step."""

    positions: int = 1
    batch: int = 1
    context: int = 8192        # tokens in each sequence's KV cache before this step (attended)
    precision: PrecisionSpec = field(default_factory=PrecisionSpec)
    with_heads: bool = False   # include the model's speculative heads
    context_window: int | None = None   # KV cache reserved per sequence; None: context
    window_attention: bool = False      # attention compiled for the whole window
    expert_parallel: bool = False       # MoE: experts whole on chips, not sharded across them

    @property
    def attended(self) -> int:
        """Cached keys each new position attends to: the context, or the whole window when
        the static schedule is compiled for the window."""
        if self.window_attention and self.context_window:
            return max(self.context, self.context_window - self.positions)
        return self.context

    @property
    def kv_reserved_tokens(self) -> int:
        """Tokens of KV cache held in SRAM per sequence: the window, and never less than this
        step needs."""
        return max(self.context_window or 0, self.context + self.positions)

    def canonical(self) -> GraphParams:
        """These params with the context set to 0 where the graph does not depend on it:
        attention compiled for the whole window, which the context and the new positions fit.
        The graph reads the context only through `attended` and `kv_reserved_tokens`, and both
        are then the window's (W - positions and W), so every such context builds the same
        graph, and the steps of a context what-if share it and all compiled from it."""
        context = self.canonical_context(self.context, self.positions, self.context_window,
                                         self.window_attention)
        return self if context == self.context else dataclasses.replace(self, context=context)

    @staticmethod
    def canonical_context(context: int, positions: int, context_window: int | None,
                          window_attention: bool) -> int:
        """`canonical`'s context of these fields (without making the params: a cache key
        asks for it often)."""
        if window_attention and context_window and context + positions <= context_window:
            return 0
        return context


class DecodeGraph:
    """The DAG of one decode step, with its blocks in pipeline order.

    The ops are kept in a plain mapping (name -> Op, topological order), which is all the
    compiler reads; `dag`, the same graph as a networkx DiGraph (an op per node, an edge per
    input), is built on first use."""

    __slots__ = ("_dag", "block_form", "block_index", "block_ops", "blocks", "derived", "model",
                 "op_table", "params")

    def __init__(self, model: ModelSpec, params: GraphParams, op_table: dict[str, Op],
                 blocks: list[str], block_ops: dict[str, list[str]],
                 block_form: dict[str, str] | None = None):
        self.model = model
        self.params = params
        self.op_table = op_table
        # "embed", then per layer "layer<i>.attn", "layer<i>.mlp" (and "layer<i>.down" for a
        # dense FFN's down projection), then "head"
        self.blocks = blocks
        self.block_ops = block_ops                 # op names per block, topological order
        self.block_index = {b: i for i, b in enumerate(blocks)}    # block -> its position
        # block -> the block whose ops it copies up to their names (itself, when built): a
        # block's cost, size and structure are its form's, and so are those of a run of
        # consecutive blocks (each layer reads only the previous one's output)
        self.block_form = block_form or {b: b for b in blocks}
        # what the compiler derives from this graph (placements, stage parts, hand-off sizes),
        # kept with it (lpusim.caches.derived)
        self.derived: dict[Any, Any] = {}
        self._dag: nx.DiGraph | None = None

    @property
    def dag(self) -> nx.DiGraph:
        if self._dag is None:
            import networkx as nx  # heavy import, kept local: the compiler never needs it
            dag = nx.DiGraph()
            for name, op in self.op_table.items():
                dag.add_node(name, op=op)
                for src in op.inputs:
                    dag.add_edge(src, name)
            self._dag = dag
        return self._dag

    def op(self, name: str) -> Op:
        return self.op_table[name]

    def ops(self) -> list[Op]:
        return list(self.op_table.values())

    def total(self, attr: str) -> int:
        return sum(getattr(o, attr) for o in self.op_table.values())


class _Builder:
    def __init__(self, model: ModelSpec, params: GraphParams):
        self.m = model
        self.p = params
        self.pr = params.precision
        self.ops: dict[str, Op] = {}
        self.blocks: list[str] = []
        self.block_ops: dict[str, list[str]] = {}
        self.block = ""

    def start(self, block: str) -> None:
        self.block = block
        self.blocks.append(block)
        self.block_ops[block] = []

    def add(self, op: Op) -> str:
        if op.name in self.ops:
            raise GraphError(f"op {op.name!r} added twice")
        for src in op.inputs:
            if src not in self.ops:
                raise GraphError(f"op {op.name!r} reads {src!r}, which is not built yet")
        self.ops[op.name] = op
        self.block_ops[self.block].append(op.name)
        return op.name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.ops[name].out_shape

    def act(self, n: int) -> int:
        return dtype_bytes(self.pr.activations, n)

    # generic op makers ---------------------------------------------------------------
    def matmul(self, name: str, src: str, k: int, n: int, parallel: str,
               weight_shared: bool = False, bias: bool = False, kind: str = "matmul") -> str:
        """`weight_shared`: the weights are another op's (no resident bytes of its own)."""
        b, p = self.p.batch, self.p.positions
        rows = b * p
        wparams = k * n + (n if bias else 0)
        wbytes = dtype_bytes(self.pr.weights, wparams)
        return self.add(Op(
            name=name, kind=kind, block=self.block, inputs=(src,),
            in_shapes=(self.shape(src),), out_shape=(b, p, n), dtype=self.pr.activations,
            flops=2 * rows * k * n + (rows * n if bias else 0),
            weight_bytes=0 if weight_shared else wbytes, weight_read_bytes=wbytes,
            act_in_bytes=self.act(rows * k), act_out_bytes=self.act(rows * n),
            parallel=parallel, mats=1, m=rows, k=k, n=n, in_dtype=self.pr.weights))

    def vector(self, name: str, kind: str, srcs: tuple[str, ...], out_shape: tuple[int, ...],
               ops_per_element: int, elements: int | None = None, transcendentals: int = 0,
               parallel: str = "column", weight_params: int = 0, dtype: str | None = None,
               heads: int = 0) -> str:
        n_out = math.prod(out_shape)
        n_el = elements if elements is not None else n_out
        n_in = sum(math.prod(self.shape(s)) for s in srcs)
        dt = dtype or self.pr.activations
        wb = dtype_bytes(self.pr.activations, weight_params) if weight_params else 0
        return self.add(Op(
            name=name, kind=kind, block=self.block, inputs=srcs,
            in_shapes=tuple(self.shape(s) for s in srcs), out_shape=out_shape, dtype=dt,
            flops=n_el * ops_per_element, weight_bytes=wb, weight_read_bytes=wb,
            act_in_bytes=sum(dtype_bytes(self.ops[s].dtype, math.prod(self.shape(s)))
                             for s in srcs) if n_in else 0,
            act_out_bytes=dtype_bytes(dt, n_out), parallel=parallel, elements=n_el,
            ops_per_element=ops_per_element, transcendentals=transcendentals, heads=heads))

    def norm(self, name: str, src: str) -> str:
        h = self.m.hidden_size
        b, p = self.p.batch, self.p.positions
        # square, accumulate, scale, weight: 4 ALU ops per element; one rsqrt per row
        per = 1 if self.m.norm == "rmsnorm" else 2
        return self.vector(name, "norm", (src,), (b, p, h), 4, transcendentals=b * p,
                           parallel="replicated", weight_params=per * h)

    # blocks --------------------------------------------------------------------------
    def embed(self) -> str:
        m, b, p = self.m, self.p.batch, self.p.positions
        self.start("embed")
        tokens = self.add(Op(name="tokens", kind="embedding", block="embed", inputs=(),
                             in_shapes=(), out_shape=(b, p), dtype="int32",
                             parallel="replicated"))
        resident = dtype_bytes(self.pr.weights, m.vocab_size * m.hidden_size)
        rows = dtype_bytes(self.pr.weights, b * p * m.hidden_size)
        x = self.add(Op(
            name="embed", kind="embedding", block="embed", inputs=(tokens,),
            in_shapes=((b, p),), out_shape=(b, p, m.hidden_size), dtype=self.pr.activations,
            weight_bytes=resident, weight_read_bytes=rows, act_in_bytes=4 * b * p,
            act_out_bytes=self.act(b * p * m.hidden_size), parallel="vocab",
            elements=b * p * m.hidden_size))
        if m.scale_embeddings:
            # x * sqrt(hidden_size): one multiply per element
            x = self.vector("embed_scale", "scale", (x,), (b, p, m.hidden_size), 1,
                            parallel="replicated")
        return x

    def layer(self, i: int, x: str) -> str:
        m, b, p, ctx = self.m, self.p.batch, self.p.positions, self.p.attended
        hd, H, KV, h = m.head_dim, m.heads, m.kv_heads, m.hidden_size
        # two placement blocks per layer, so that a pipeline stage may end between a layer's
        # attention and its FFN (balanced stages when layers do not divide evenly)
        self.start(f"layer{i}.attn")
        pre = f"L{i}."
        a = self.norm(pre + "attn_norm", x)
        bias = m.qkv_bias
        q = self.matmul(pre + "q_proj", a, h, H * hd, "column", bias=bias)
        k = self.matmul(pre + "k_proj", a, h, KV * hd, "column", bias=bias)
        v = self.matmul(pre + "v_proj", a, h, KV * hd, "column", bias=bias)
        qr = self.vector(pre + "rope_q", "rope", (q,), (b, p, H * hd), 3, heads=H,
                         parallel="heads")
        kr = self.vector(pre + "rope_k", "rope", (k,), (b, p, KV * hd), 3, heads=KV,
                         parallel="heads")
        kv_new = dtype_bytes(self.pr.kv, 2 * b * p * KV * hd)
        window = m.sliding_window if m.is_local(i) else None
        reserved = self.p.kv_reserved_tokens
        if window is not None:
            # rolling buffer: the window, plus the keys the first new position still needs
            # while the later ones are appended
            reserved = min(reserved, window + p - 1)
        app = self.add(Op(
            name=pre + "kv_append", kind="kv_append", block=self.block, inputs=(kr, v),
            in_shapes=(self.shape(kr), self.shape(v)), out_shape=(b, p, 2 * KV * hd),
            dtype=self.pr.kv, act_in_bytes=self.act(2 * b * p * KV * hd),
            kv_write_bytes=kv_new, parallel="heads", elements=2 * b * p * KV * hd,
            heads=H, kv_heads=KV, kv_tokens=reserved))
        if window is None:
            T = ctx + p                               # keys after the append
            seen = p * ctx + p * (p + 1) // 2         # causal among the new positions
        else:
            # position j sees the last min(window, ctx + j + 1) keys
            T = min(ctx + p, window + p - 1)
            seen = sum(min(window, ctx + j + 1) for j in range(p))
        kv_cache = dtype_bytes(self.pr.kv, b * KV * hd * T)
        group = H // KV
        attn_flops = 2 * b * H * hd * seen
        s = self.add(Op(
            name=pre + "attn_scores", kind="attn_scores", block=self.block, inputs=(qr, app),
            in_shapes=(self.shape(qr), self.shape(app)), out_shape=(b, H, p, T),
            dtype=self.pr.logits, flops=attn_flops, act_in_bytes=self.act(b * p * H * hd),
            act_out_bytes=dtype_bytes(self.pr.logits, b * H * p * T), kv_read_bytes=kv_cache,
            parallel="heads", mats=b * KV, m=p * group, k=hd, n=T, in_dtype=self.pr.kv,
            heads=H, kv_heads=KV))
        if m.attn_logit_softcap is not None:
            # cap * tanh(s / cap): 2 multiplies and a tanh per score
            s = self.vector(pre + "attn_softcap", "attn_softcap", (s,), (b, H, p, T), 2,
                            elements=b * H * seen, transcendentals=b * H * seen,
                            parallel="heads", dtype=self.pr.logits, heads=H)
        # max, subtract, exp, sum, divide: 5 ops per score
        sm = self.vector(pre + "softmax", "softmax", (s,), (b, H, p, T), 5,
                         elements=b * H * seen, transcendentals=b * H * seen, parallel="heads",
                         dtype=self.pr.activations, heads=H)
        o = self.add(Op(
            name=pre + "attn_values", kind="attn_values", block=self.block, inputs=(sm, app),
            in_shapes=(self.shape(sm), self.shape(app)), out_shape=(b, p, H * hd),
            dtype=self.pr.activations, flops=attn_flops,
            act_in_bytes=self.act(b * H * p * T), act_out_bytes=self.act(b * p * H * hd),
            kv_read_bytes=kv_cache, parallel="heads", mats=b * KV, m=p * group, k=T, n=hd,
            in_dtype=self.pr.kv, heads=H, kv_heads=KV))
        op = self.matmul(pre + "o_proj", o, H * hd, h, "row")
        if m.post_norms:
            op = self.norm(pre + "post_attn_norm", op)
        r1 = self.vector(pre + "attn_residual", "residual", (x, op), (b, p, h), 1,
                         parallel="replicated")
        self.start(f"layer{i}.mlp")
        f = self.norm(pre + "ffn_norm", r1)
        out = self.moe(pre, f) if m.experts > 1 else self.ffn(pre, f)
        if m.post_norms:
            out = self.norm(pre + "post_ffn_norm", out)
        return self.vector(pre + "ffn_residual", "residual", (r1, out), (b, p, h), 1,
                           parallel="replicated")

    def ffn_body(self, pre: str, f: str, rows: int, shape: tuple[int, ...]) -> str:
        """Up (and gate) projections and the activation of one FFN: the input of down_proj."""
        m = self.m
        if m.activation == "gelu":
            u = self.matmul(pre + "up_proj", f, m.hidden_size, m.ffn_size, "column")
            # GELU (tanh form): 7 ALU ops and a tanh
            return self.vector(pre + "act", "activation", (u,), shape, 7,
                               transcendentals=rows * m.ffn_size, parallel="column")
        g = self.matmul(pre + "gate_proj", f, m.hidden_size, m.ffn_size, "column")
        u = self.matmul(pre + "up_proj", f, m.hidden_size, m.ffn_size, "column")
        # SiLU(g) * u: sigmoid (transcendental), 2 multiplies; GELU(g) * u: 7 ALU ops, a tanh
        # and the gating multiply
        ops = 4 if m.activation == "swiglu" else 8
        return self.vector(pre + "act", "activation", (g, u), shape, ops,
                           transcendentals=rows * m.ffn_size, parallel="column")

    def ffn(self, pre: str, f: str) -> str:
        m, b, p = self.m, self.p.batch, self.p.positions
        act = self.ffn_body(pre, f, b * p, (b, p, m.ffn_size))
        # a third placement block: a stage may also end before the down projection (its
        # hand-off then carries the FFN activation and the residual)
        self.start(self.block.removesuffix(".mlp") + ".down")
        return self.matmul(pre + "down_proj", act, m.ffn_size, m.hidden_size, "row")

    def moe(self, pre: str, f: str) -> str:
        m, b, p = self.m, self.p.batch, self.p.positions
        tokens = b * p
        E, k = m.experts, m.experts_per_token
        active = min(E, math.ceil(E * (1 - (1 - k / E) ** tokens) - 1e-9))
        rows = math.ceil(tokens * k / active)
        r = self.matmul(pre + "router", f, m.hidden_size, E, "replicated", kind="router")
        t = self.vector(pre + "topk", "topk", (r,), (b, p, k), 2, elements=tokens * E,
                        parallel="replicated")
        outs = []
        saved = self.p
        for e in range(active):
            # each active expert sees `rows` tokens; weights of all E experts are resident
            self.p = GraphParams(positions=rows, batch=1, context=saved.context,
                                 window_attention=saved.window_attention,
                                 precision=saved.precision,
                                 context_window=saved.context_window)
            ep = f"{pre}expert{e}."
            first = len(self.block_ops[self.block])
            act = self.ffn_body(ep, f, rows, (1, rows, m.ffn_size))
            outs.append(self.matmul(ep + "down_proj", act, m.ffn_size, m.hidden_size, "row"))
            if saved.expert_parallel:
                # the expert runs whole on its owner chip, which holds the (replicated) input
                for name in self.block_ops[self.block][first:]:
                    self.ops[name] = _replace(self.ops[name], parallel="expert", expert=e)
        self.p = saved
        comb = self.vector(pre + "moe_combine", "moe_combine", (t, *outs),
                           (b, p, m.hidden_size), 2 * k, elements=tokens * m.hidden_size,
                           parallel="replicated")
        # the experts this step does not touch still live in SRAM, sharded like the others
        idle = (E - active) * dtype_bytes(self.pr.weights, m.ffn_params_per_expert)
        old = self.ops[outs[-1]]
        self.ops[outs[-1]] = _replace(old, weight_bytes=old.weight_bytes + idle)
        return comb

    def head(self, x: str) -> str:
        m, b, p = self.m, self.p.batch, self.p.positions
        self.start("head")
        n = self.norm("final_norm", x)
        lm = self.matmul("lm_head", n, m.hidden_size, m.vocab_size, "vocab",
                         weight_shared=m.tied_embeddings)
        if m.final_logit_softcap is not None:
            # cap * tanh(logit / cap): 2 multiplies and a tanh per logit
            lm = self.vector("logit_softcap", "logit_softcap", (lm,), (b, p, m.vocab_size), 2,
                             transcendentals=b * p * m.vocab_size, parallel="vocab")
        # running max and index over the vocabulary: 2 ops per logit
        am = self.vector("argmax", "argmax", (lm,), (b, p), 2, elements=b * p * m.vocab_size,
                         parallel="vocab", dtype="int32")
        if self.p.with_heads and m.speculative_heads is not None:
            sh = m.speculative_heads
            for i in range(sh.count):
                y = n
                for j in range(sh.layers_per_head):
                    fc = self.matmul(f"medusa{i}.fc{j}", y, m.hidden_size, m.hidden_size,
                                     "row", bias=True)
                    y = self.vector(f"medusa{i}.res{j}", "residual", (y, fc),
                                    (b, p, m.hidden_size), 5,
                                    transcendentals=b * p * m.hidden_size,
                                    parallel="replicated")
                lmh = self.matmul(f"medusa{i}.lm_head", y, m.hidden_size, m.vocab_size,
                                  "vocab", weight_shared=sh.shared_lm_head)
                self.vector(f"medusa{i}.topk", "argmax", (lmh,), (b, p), 2,
                            elements=b * p * m.vocab_size, parallel="vocab", dtype="int32")
        return am


    def stamp(self, like: int, ops: list[Op], i: int, x: str) -> str:
        """Layer i as a copy of layer `like` (its `ops`), reading `x`: layers of one kind
        (local or not) have the same ops up to their names, which the copies take from i."""
        old, new, cut = f"L{like}.", f"L{i}.", len(f"layer{like}.")
        n = len(old)
        src = ops[0].inputs[0]              # what layer `like` reads: its attn_norm's input
        block = name = ""
        table, names = self.ops, []
        make = tuple.__new__                # Op's fields in order, unchecked: a copy of
        for op in ops:                      # ops `add` checked
            if op.block != block:
                block = op.block
                self.start(f"layer{i}." + block[cut:])
                names = self.block_ops[self.block]
            name = new + op.name[n:]
            inputs = tuple(x if s == src else new + s[n:] for s in op.inputs)
            table[name] = make(Op, (name, op.kind, self.block, inputs, *op[4:]))
            names.append(name)
        return name


def _replace(op: Op, **kw: Any) -> Op:
    return op._replace(**kw)


def build_decode_graph(model: ModelSpec, params: GraphParams | None = None) -> DecodeGraph:
    """The DAG of one decode step of `model` at the width and precision of `params`."""
    params = params or GraphParams()
    if params.positions < 1 or params.batch < 1 or params.context < 0:
        raise GraphError("positions and batch must be >= 1 and context >= 0")
    b = _Builder(model, params)
    x = b.embed()
    # a layer of each kind (local or not) is built, the others of its kind are copied
    built: dict[bool, tuple[int, list[Op]]] = {}
    form = {"embed": "embed"}
    for i in range(model.layers):
        kind = model.is_local(i)
        start = len(b.blocks)
        if kind in built:
            like = built[kind][0]
            x = b.stamp(*built[kind], i, x)
        else:
            like, first = i, len(b.ops)
            x = b.layer(i, x)
            built[kind] = (i, list(b.ops.values())[first:])
        form.update({blk: f"layer{like}." + blk.split(".", 1)[1] for blk in b.blocks[start:]})
    b.head(x)
    form["head"] = "head"
    return DecodeGraph(model, params, b.ops, b.blocks, b.block_ops, form)
