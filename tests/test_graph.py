import math

import networkx as nx
import pytest

from lpusim.config import load
from lpusim.config.specs import ModelSpec
from lpusim.graph import GraphParams, build_decode_graph


@pytest.mark.parametrize("name,total,active", [
    ("llama-3.1-8b", 8.03e9, None),
    ("llama-3.1-70b", 70.55e9, None),
    ("llama-3.1-405b", 405.85e9, None),
    ("llama-3.2-1b", 1.24e9, None),
    ("mixtral-8x7b", 46.7e9, 12.9e9),
])
def test_published_parameter_totals(name, total, active):
    m = load(f"workloads/{name}.yaml")
    assert round(m.total_params / 1e9, 2) == round(total / 1e9, 2)
    if active:
        assert round(m.active_params / 1e9, 1) == round(active / 1e9, 1)


def tiny(**kw) -> ModelSpec:
    base = dict(name="tiny", layers=2, hidden_size=64, ffn_size=128, heads=4, kv_heads=2,
                head_dim=16, vocab_size=100, max_context=1024)
    base.update(kw)
    return ModelSpec(**base)


def test_tiny_model_hand_computed():
    m = tiny()
    # attention: q 64x64, k 64x32, v 64x32, o 64x64 = 4096+2048+2048+4096
    assert m.attention_params == 12288
    assert m.ffn_params_per_expert == 3 * 64 * 128
    layer = 12288 + 24576 + 2 * 64
    assert m.layer_params == layer
    assert m.total_params == 100 * 64 + 2 * layer + 64 + 100 * 64


def test_tiny_flops_hand_computed():
    m = tiny()
    g = build_decode_graph(m, GraphParams(context=10))
    # one token: 2 FLOPs per weight of every matmul; embedding is a lookup
    matmul = 2 * (2 * (12288 + 24576) + 100 * 64)
    # attention: scores and values each 2 * heads * head_dim * keys seen (10 + 1)
    attn = 2 * (2 * 2 * 4 * 16 * 11)
    mm = sum(o.flops for o in g.ops() if o.kind in ("matmul", "attn_scores", "attn_values"))
    assert mm == matmul + attn


@pytest.mark.parametrize("name", ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b"])
def test_flops_about_twice_active_params(name):
    m = load(f"workloads/{name}.yaml")
    g = build_decode_graph(m, GraphParams(context=1))
    # 2 FLOPs per active weight, except the embedding (a lookup); norms/softmax add a little
    ratio = g.total("flops") / (2 * (m.active_params - m.embedding_params))
    assert 1.0 <= ratio < 1.01


@pytest.mark.parametrize("name", ["llama-3.1-8b", "mixtral-8x7b", "llama-3.1-70b-medusa"])
def test_acyclic_and_shapes_consistent(name):
    m = load(f"workloads/{name}.yaml")
    g = build_decode_graph(m, GraphParams(positions=3, batch=2, context=64, with_heads=True))
    assert nx.is_directed_acyclic_graph(g.dag)
    for op in g.ops():
        for src, shape in zip(op.inputs, op.in_shapes, strict=True):
            assert g.op(src).out_shape == shape
        if op.kind == "matmul" and ".expert" not in op.name:   # experts take routed rows
            assert math.prod(op.in_shapes[0]) == op.m * op.k


def test_width_scales_activations_not_weights():
    m = load("workloads/llama-3.1-8b.yaml")
    one = build_decode_graph(m, GraphParams(positions=1, context=512))
    wide = build_decode_graph(m, GraphParams(positions=17, context=512))
    batch = build_decode_graph(m, GraphParams(batch=4, context=512))
    assert wide.total("weight_read_bytes") == one.total("weight_read_bytes") + \
        16 * m.hidden_size   # only the embedding rows looked up grow
    assert wide.total("weight_bytes") == one.total("weight_bytes")
    assert batch.total("weight_bytes") == one.total("weight_bytes")
    assert wide.total("act_out_bytes") > 10 * one.total("act_out_bytes")
    assert batch.total("kv_read_bytes") == 4 * one.total("kv_read_bytes")


def test_causal_mask_among_new_positions():
    m = tiny()
    g = build_decode_graph(m, GraphParams(positions=3, context=10))
    s = g.op("L0.attn_scores")
    # positions see 11, 12, 13 keys
    assert s.flops == 2 * 4 * 16 * (11 + 12 + 13)


def test_medusa_heads_add_parameters():
    m = load("workloads/llama-3.1-70b-medusa.yaml")
    h = m.hidden_size
    assert m.heads_params == 4 * (h * h + h)
    g = build_decode_graph(m, GraphParams(with_heads=True))
    assert sum(1 for o in g.ops() if o.name.startswith("medusa")) == 4 * 4


def test_moe_reads_only_active_experts():
    m = load("workloads/mixtral-8x7b.yaml")
    g = build_decode_graph(m, GraphParams(context=1))
    assert g.total("weight_bytes") == pytest.approx(m.total_params, rel=1e-3)
    assert g.total("weight_read_bytes") < 0.3 * g.total("weight_bytes")


def test_context_window_reserves_sram_but_attention_follows_the_context():
    from lpusim import api
    from lpusim.errors import ConfigError
    base = "llama-3.1-70b-groqrack-576"
    short = api.run(api.load_scenario(base, {"context": 1024, "context_window": 8192}))
    full = api.run(api.load_scenario(base, {"context": 8192, "context_window": 8192}))
    short_reserved_small = api.run(api.load_scenario(base, {"context": 1024,
                                                            "context_window": 1024}))
    # SRAM is set by the window (8,192 reserved vs 8,193 = a full window + the new token)
    kv = full.sram_bytes_by_category["kv_cache"]
    assert short.sram_bytes_by_category["kv_cache"] * 8193 == kv * 8192
    assert short.interleaved_steps == full.interleaved_steps
    # attention compiled for the window (the shipped hypothesis) costs the same whatever is
    # in the cache; compiled for the context, the step follows the tokens actually there
    assert api.load_scenario(base).system.compiler.attention_span == "window"
    assert short.step_latency_us == pytest.approx(full.step_latency_us, rel=1e-3)
    span = {"system.compiler.attention_span": "context"}
    s_ctx = api.run(api.load_scenario(base, {"context": 1024, "context_window": 8192, **span}))
    f_ctx = api.run(api.load_scenario(base, {"context": 8192, "context_window": 8192, **span}))
    small = api.run(api.load_scenario(base, {"context": 1024, "context_window": 1024, **span}))
    assert s_ctx.step_latency_us < f_ctx.step_latency_us
    assert s_ctx.step_latency_us == small.step_latency_us
    assert short_reserved_small.interleaved_steps > short.interleaved_steps
    with pytest.raises(ConfigError, match="context 9000 exceeds the context_window 8192"):
        api.load_scenario(base, {"context": 9000, "context_window": 8192})


@pytest.mark.parametrize("name", ["llama-3.1-70b", "gemma-2-9b", "mixtral-8x7b",
                                  "llama-3.1-70b-medusa"])
@pytest.mark.parametrize("params", [
    GraphParams(), GraphParams(positions=5, batch=2, context=3000, context_window=4096,
                               window_attention=True, with_heads=True),
    GraphParams(positions=3, context=1000, expert_parallel=True)])
def test_copied_layers_are_the_layers_built_one_by_one(name, params):
    """build_decode_graph builds one layer of each kind and copies it for the others: the
    same ops, in the same order and blocks, as building every layer."""
    from lpusim.graph.build import DecodeGraph, _Builder
    model = load(f"workloads/{name}.yaml")
    b = _Builder(model, params)
    x = b.embed()
    for i in range(model.layers):
        x = b.layer(i, x)
    b.head(x)
    each = DecodeGraph(model, params, b.ops, b.blocks, b.block_ops)
    copied = build_decode_graph(model, params)
    assert list(copied.op_table.items()) == list(each.op_table.items())
    assert (copied.blocks, copied.block_ops) == (each.blocks, each.block_ops)
    assert all(type(op) is type(each.op_table["tokens"]) for op in copied.op_table.values())


@pytest.mark.parametrize("name", ["llama-3.1-70b", "gemma-2-9b", "mixtral-8x7b"])
@pytest.mark.parametrize("positions,batch", [(1, 1), (5, 2)])
def test_a_window_compiled_graph_is_the_same_for_every_context_the_window_holds(name,
                                                                             positions,
                                                                             batch):
    """With attention compiled for the window, the graph reads the context only through the
    attended and reserved counts, both the window's while the context and the new positions
    fit it: every such context builds the graph its canonical params (context 0) build, so
    a context what-if may share that graph (`GraphParams.canonical`). A context the window
    does not hold is left alone, and so are params without window attention."""
    m = load(f"workloads/{name}.yaml")
    window = 4096

    def params(ctx: int, win: bool = True) -> GraphParams:
        return GraphParams(positions=positions, batch=batch, context=ctx, context_window=window,
                           window_attention=win)

    canon = params(1000).canonical()
    assert canon == params(0) and canon.attended == window - positions
    ref = build_decode_graph(m, canon)
    for ctx in (1, 1000, window - positions):
        g = build_decode_graph(m, params(ctx))
        assert params(ctx).canonical() == canon
        assert g.blocks == ref.blocks and g.op_table == ref.op_table
    beyond = params(window - positions + 1)
    assert beyond.canonical() is beyond
    assert build_decode_graph(m, beyond).op_table != ref.op_table
    plain = params(1000, win=False)
    assert plain.canonical() is plain
