"""Decode-graph features of the model library, on a tiny model with hand-computed answers:
GeGLU and plain GELU, head_dim not hidden/heads, tied embeddings, sliding-window layers (their
attention and KV bytes), attention and final-logit soft-capping, QKV bias, post-norms and the
embedding scale; and fast fidelity still equal to full with alternating layer kinds."""

import pytest
from helpers import chip, system

from lpusim.compiler import compile_pipeline, compile_program, place
from lpusim.compiler.lower import op_costs
from lpusim.compiler.place import op_sram
from lpusim.config.specs import ModelSpec
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.sim import metrics_full, metrics_pipeline


def tiny(**kw) -> ModelSpec:
    base = dict(name="tiny", layers=2, hidden_size=64, ffn_size=128, heads=4, kv_heads=2,
                head_dim=16, vocab_size=100, max_context=1024)
    base.update(kw)
    return ModelSpec(**base)


def test_head_dim_not_hidden_over_heads():
    m = tiny(head_dim=32)                      # 4 heads x 32 = 128 features, hidden 64
    # q 64x128, k 64x64, v 64x64, o 128x64
    assert m.attention_params == 8192 + 4096 + 4096 + 8192
    g = build_decode_graph(m, GraphParams(context=10))
    q, o = g.op("L0.q_proj"), g.op("L0.o_proj")
    assert (q.k, q.n) == (64, 128) and (o.k, o.n) == (128, 64)
    # scores: 2 * heads * head_dim * keys seen (11)
    assert g.op("L0.attn_scores").flops == 2 * 4 * 32 * 11


def test_qkv_bias_parameters_and_flops():
    m = tiny(qkv_bias=True)
    # biases: q 4x16, k 2x16, v 2x16 = 128 on top of 12,288 weights
    assert m.attention_params == 12288 + 128
    assert m.total_params == tiny().total_params + 2 * 128
    g = build_decode_graph(m, GraphParams(context=10))
    q, k = g.op("L0.q_proj"), g.op("L0.k_proj")
    assert q.weight_bytes == 64 * 64 + 64        # int8 weights and bias
    assert q.flops == 2 * 64 * 64 + 64           # one add per output feature
    assert k.flops == 2 * 64 * 32 + 32
    assert g.op("L0.o_proj").flops == 2 * 64 * 64   # no bias on o_proj


def test_geglu_and_plain_gelu():
    geglu = tiny(activation="geglu")
    assert geglu.total_params == tiny().total_params   # three matrices, like SwiGLU
    g = build_decode_graph(geglu, GraphParams(context=10))
    act = g.op("L0.act")
    # GELU (tanh) 7 ALU ops + the gating multiply, one tanh per element
    assert (act.ops_per_element, act.flops, act.transcendentals) == (8, 8 * 128, 128)
    gelu = tiny(activation="gelu")
    assert gelu.ffn_params_per_expert == 2 * 64 * 128
    assert gelu.total_params == tiny().total_params - 2 * 64 * 128
    g = build_decode_graph(gelu, GraphParams(context=10))
    assert "L0.gate_proj" not in g.dag
    assert g.op("L0.act").inputs == ("L0.up_proj",)
    assert g.op("L0.act").flops == 7 * 128
    mm = sum(o.flops for o in g.ops() if o.kind == "matmul")
    assert mm == 2 * (2 * (12288 + 2 * 64 * 128) + 100 * 64)


def test_softcap_vxm_work_hand_computed():
    m = tiny(attn_logit_softcap=50.0, final_logit_softcap=30.0)
    g = build_decode_graph(m, GraphParams(context=10))
    cap = g.op("L0.attn_softcap")
    # every score of 4 heads over 11 keys: 2 multiplies and one tanh
    assert (cap.elements, cap.flops, cap.transcendentals) == (44, 88, 44)
    assert g.op("L0.softmax").inputs == ("L0.attn_softcap",)
    out = g.op("logit_softcap")
    assert (out.elements, out.flops, out.transcendentals) == (100, 200, 100)
    assert g.op("argmax").inputs == ("logit_softcap",)
    assert g.total("flops") == build_decode_graph(tiny(), GraphParams(context=10)).total(
        "flops") + 2 * 88 + 200
    # lowered on one chip: ceil(44 / 320 lanes) = 1 vector, 2 ALU ops over 16 ALUs (1 cycle)
    # plus a tanh at 8 cycles per vector over 16 ALUs (1 cycle)
    c = chip()
    [(_, cost)] = op_costs(cap, c, 1, g)
    assert cost.unit == "vxm" and cost.duration == 1 + 1
    # 4,000 scores (context 999): 13 vectors -> ceil(26 / 16) + ceil(104 / 16) = 2 + 7
    g2 = build_decode_graph(m, GraphParams(context=999))
    [(_, cost)] = op_costs(g2.op("L0.attn_softcap"), c, 1, g2)
    assert cost.duration == 2 + 7


def test_sliding_window_attention_and_kv_bytes():
    m = tiny(sliding_window=4, attention_pattern="LG")
    g = build_decode_graph(m, GraphParams(context=10))
    local, glob = g.op("L0.attn_scores"), g.op("L1.attn_scores")
    # the local layer sees its window (4 keys, its own included), the global one 11
    assert local.flops == 2 * 4 * 16 * 4 and glob.flops == 2 * 4 * 16 * 11
    assert local.n == 4 and glob.n == 11
    assert local.kv_read_bytes == 2 * 16 * 4            # fp8 K of 2 KV heads x 4 keys
    assert g.op("L0.softmax").elements == 4 * 4
    # KV cache per layer: batch x tokens x (K and V) x kv heads x head_dim, fp8
    assert g.op("L0.kv_append").kv_tokens == 4 and g.op("L1.kv_append").kv_tokens == 11
    assert op_sram(g.op("L0.kv_append"), g, 1)["kv_cache"] == 4 * 2 * 2 * 16
    assert op_sram(g.op("L1.kv_append"), g, 1)["kv_cache"] == 11 * 2 * 2 * 16
    assert m.kv_cache_bytes(11, "fp8") == (4 + 11) * 2 * 2 * 16
    # three new positions after 10 tokens see min(4, 11), min(4, 12), min(4, 13) keys; the
    # rolling buffer holds the window plus the 2 keys the first position still needs
    g3 = build_decode_graph(m, GraphParams(context=10, positions=3))
    assert g3.op("L0.attn_scores").flops == 2 * 4 * 16 * 12
    assert g3.op("L0.kv_append").kv_tokens == 6
    # a reserved window longer than the sliding window does not grow a local layer's cache
    gw = build_decode_graph(m, GraphParams(context=10, context_window=512))
    assert gw.op("L0.kv_append").kv_tokens == 4 and gw.op("L1.kv_append").kv_tokens == 512
    pl = place(gw, chip(), 1, 1)
    assert pl.sram[0]["kv_cache"] == (4 + 512) * 2 * 2 * 16
    # below the window a local layer is a global one
    short = build_decode_graph(m, GraphParams(context=2))
    assert short.op("L0.attn_scores").flops == short.op("L1.attn_scores").flops


def test_post_norms_and_embedding_scale():
    m = tiny(post_norms=True, scale_embeddings=True)
    assert m.norm_params_per_layer == 4 * 64
    assert m.total_params == tiny().total_params + 2 * 2 * 64
    g = build_decode_graph(m, GraphParams(context=10))
    assert g.op("L0.attn_residual").inputs == ("embed_scale", "L0.post_attn_norm")
    assert g.op("L0.ffn_residual").inputs[1] == "L0.post_ffn_norm"
    sc = g.op("embed_scale")
    assert (sc.elements, sc.flops, sc.parallel) == (64, 64, "replicated")
    norms = [o for o in g.ops() if o.kind == "norm"]
    assert len(norms) == 2 * 4 + 1
    assert sum(o.weight_bytes for o in norms) == (2 * 4 + 1) * 64     # fp8 norm weights


def test_tied_embeddings_one_table_read_by_the_lm_head():
    m = tiny(tied_embeddings=True)
    assert m.total_params == 100 * 64 + 2 * m.layer_params + 64   # the table counted once
    g = build_decode_graph(m, GraphParams(context=10))
    lm, emb = g.op("lm_head"), g.op("embed")
    # the LM head multiplies by the whole table every step, which is resident once
    assert lm.weight_read_bytes == 100 * 64 and lm.weight_bytes == 0
    assert emb.weight_bytes == 100 * 64
    untied = build_decode_graph(tiny(), GraphParams(context=10))
    assert g.total("weight_bytes") == untied.total("weight_bytes") - 100 * 64
    assert g.total("flops") == untied.total("flops")


@pytest.mark.parametrize("context,window", [(256, None), (32, 512)])
def test_fast_and_full_agree_with_alternating_local_layers(context, window):
    kw = dict(layers=6, hidden_size=320, ffn_size=640, heads=4, kv_heads=2, head_dim=80,
              vocab_size=1000)
    m = tiny(**kw, sliding_window=64, attention_pattern="LG", attn_logit_softcap=50.0,
             final_logit_softcap=30.0, post_norms=True, scale_embeddings=True,
             tied_embeddings=True, activation="geglu")
    s = system("groqrack-576")
    # (32, 512): the window is not reached, so local and global layers cost the same, but a
    # local layer reserves 65 tokens of KV and a global one 512
    g = build_decode_graph(m, GraphParams(context=context, positions=2, context_window=window))
    full = metrics_full(compile_program(g, s, chips=64))
    pp = compile_pipeline(g, s, chips=64)
    fast = metrics_pipeline(pp)
    assert fast.latency_cycles == full.latency_cycles
    assert fast.breakdown_cycles == full.breakdown_cycles
    assert fast.sram_bytes_by_category == full.sram_bytes_by_category
    assert fast.kv_slots == full.kv_slots
    # one stage per block at tp 1: a local layer's attention is its own template, not the
    # global one's (6 layers x 3 blocks + embedding + head = 20 stages)
    one = dict(chips=20, tp=1)
    glob = compile_pipeline(build_decode_graph(tiny(**kw), GraphParams(context=256)), s, **one)
    loc = compile_pipeline(build_decode_graph(tiny(**kw, sliding_window=64,
                                                   attention_pattern="LG"),
                                              GraphParams(context=256)), s, **one)
    assert len(loc.templates) == len(glob.templates) + 1
