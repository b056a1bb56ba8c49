"""Deployments: the policy, placement cuts inside layers, live-in hand-offs, chip budgets."""

from __future__ import annotations

import dataclasses

import pytest

from lpusim import api
from lpusim.compiler.place import atoms, block_sram, place
from lpusim.compiler.schedule import Lowerer
from lpusim.compiler.topology import build_link_graph
from lpusim.config.specs import ModelSpec
from lpusim.deploy import blocks_of, resolve
from lpusim.errors import CapacityError, ConfigError
from lpusim.graph import GraphParams, build_decode_graph
from tests.helpers import chip, system

TINY = ModelSpec(name="tiny", layers=2, hidden_size=640, ffn_size=2560, heads=4, kv_heads=2,
                 head_dim=160, vocab_size=3200, max_context=4096)


def test_blocks_are_attention_ffn_and_down_projection_per_layer():
    g = build_decode_graph(TINY, GraphParams(context=16))
    assert g.blocks == ["embed", "layer0.attn", "layer0.mlp", "layer0.down",
                        "layer1.attn", "layer1.mlp", "layer1.down", "head"]
    assert blocks_of(TINY) == len(g.blocks)
    # coarse atoms keep each FFN whole; fine atoms may cut before the down projection
    assert atoms(g.blocks, fine=False) == [(0, 1), (1, 2), (2, 4), (4, 5), (5, 7), (7, 8)]
    assert len(atoms(g.blocks, fine=True)) == 8


def test_block_sram_hand_computed():
    g = build_decode_graph(TINY, GraphParams(context=16, context_window=1024))
    # embedding: 3,200 x 640 int8 over 2 chips; attention: q,k,v,o = 640*(4*160*2 + 2*160*2)
    # = 1,228,800 B plus the attention norm's 640 FP8 weights, over 2 chips; its KV cache:
    # 1,024 tokens x K and V x 1 KV head per chip x 160 x 1 B
    emb = block_sram(g, "embed", 2)
    assert emb["weights"] == 3200 * 640 // 2
    attn = block_sram(g, "layer0.attn", 2)
    assert attn["weights"] == 1_228_800 // 2 + 640
    assert attn["kv_cache"] == 1024 * 2 * 1 * 160
    mlp, down = block_sram(g, "layer0.mlp", 2), block_sram(g, "layer0.down", 2)
    assert mlp["weights"] == 2 * 640 * 2560 // 2 + 640      # gate, up and the FFN norm
    assert down["weights"] == 640 * 2560 // 2


def test_a_stage_ends_inside_a_layer_when_whole_layers_cannot_balance():
    # 3 stages for 2 layers: a stage boundary must fall between attention and FFN
    g = build_decode_graph(TINY, GraphParams(context=16))
    pl = place(g, chip(), 6, 2)
    assert len(pl.stages) == 3
    cuts = [s[-1] for s in pl.stages[:-1]]
    assert any(c.endswith(".attn") for c in cuts)
    # every block placed exactly once, in order
    assert [b for s in pl.stages for b in s] == g.blocks


def test_cut_before_a_down_projection_only_when_needed():
    # with room to spare the FFN stays whole; with too little, a cut falls before `down`
    g = build_decode_graph(TINY, GraphParams(context=16))
    roomy = place(g, chip(), 6, 2)
    assert not any(s[0].endswith(".down") for s in roomy.stages)
    sizes = [sum(block_sram(g, b, 2).values()) for b in g.blocks]
    tight = dataclasses.replace(chip(), mem=dataclasses.replace(
        chip().mem, slices=1, slice_capacity_bytes=max(sizes) + 4 * 2**20,
        reserved_bytes=4 * 2**20))
    n = len(g.blocks)
    pl = place(g, tight, 2 * n, 2)
    assert any(s[0].endswith(".down") for s in pl.stages)


def test_hand_off_carries_every_live_tensor():
    g = build_decode_graph(TINY, GraphParams(context=16))
    s = system("groqrack-576")
    pl = place(g, s.chip, 16, 2)         # one block per stage
    lw = Lowerer(g, s, pl, build_link_graph(s, 16))
    by_first = {st[0]: i for i, st in enumerate(pl.stages)}
    # a stage starting at an attention block gets the residual stream: 640 FP8 bytes
    assert lw.live_in_bytes(by_first["layer1.attn"]) == 640
    # at an FFN: the attention residual (640 B); at a down projection: the FFN activation
    # (2,560 B) and the attention residual (640 B)
    assert lw.live_in_bytes(by_first["layer0.mlp"]) == 640
    assert lw.live_in_bytes(by_first["layer0.down"]) == 2560 + 640
    assert lw.live_in_bytes(0) == 4         # the token id


def _resolved(**ov):
    return resolve(api.load_scenario("llama-3.1-70b-groqrack-576", ov))


def test_the_70b_takes_the_systems_active_chips_at_a_128k_window():
    sc, dep = _resolved()
    # 576 installed; the shipped calibration keeps one node per rack spare
    assert dep.chips_installed == 576
    assert (dep.chips, dep.tensor_parallel, dep.stages) == (dep.chips_active, 8,
                                                             dep.chips_active // 8)
    assert dep.context_window == 131072 and dep.policy == "fewest-nodes"
    assert "suit" in dep.reason


def test_a_small_model_gets_the_fewest_whole_nodes():
    sc, dep = _resolved(model="llama-3.2-1b", context_window=8192)
    assert (dep.chips, dep.tensor_parallel, dep.stages) == (8, 8, 1)
    assert "more than the model's 16 layers" in dep.reason


def test_405b_moves_to_the_smallest_shipped_system_that_holds_it():
    sc, dep = _resolved(model="llama-3.1-405b", context_window=8192)
    assert dep.chips_installed == 2304 and dep.tensor_parallel == 16
    assert "groqrack-2304" in dep.reason


def test_window_is_capped_by_the_models_maximum_context():
    sc, dep = _resolved(model="llama-2-70b")
    assert dep.context_window == 4096 and sc.context == 1500
    assert "capped" in dep.reason


def test_chips_given_are_all_used_with_the_fastest_split():
    sc, dep = _resolved(model="llama-3.1-8b", context_window=8192, chips=64)
    assert dep.chips == 64
    plan = api.plan_chips(api.load_scenario("llama-3.1-70b-groqrack-576", {
        "model": "llama-3.1-8b", "context_window": 8192, "chips": 64}), 64)
    best = plan["candidates"][0]
    assert (best["chips"], best["tensor_parallel"]) == (dep.chips, dep.tensor_parallel)
    lat = [c["step_latency_us"] for c in plan["candidates"]]
    assert lat == sorted(lat)


def test_pinned_tensor_parallelism_is_kept():
    sc, dep = _resolved(model="llama-3.1-8b", context_window=8192, chips=64,
                        tensor_parallel=4)
    assert (dep.tensor_parallel, dep.stages) == (4, 16)


def test_the_drafter_comes_out_of_the_system():
    r = api.run(api.load_scenario("llama-3.1-70b-specdec"))
    assert r.deployment["draft_chips"] == 8
    assert r.chips + r.deployment["draft_chips"] <= r.deployment["chips_installed"]
    assert r.speculation["total_chips"] <= 576


def test_spare_nodes_are_installed_but_not_used():
    sc, dep = _resolved(**{"system.topology.spare_nodes_per_rack": 1})
    assert (dep.chips_installed, dep.chips_active, dep.chips) == (576, 512, 512)


def test_too_many_chips_asked_for_is_a_config_error():
    with pytest.raises(ConfigError, match="exceed the 568 the system"):
        resolve(api.load_scenario("llama-3.1-70b-specdec", {"chips": 576}))


def test_chips_asked_for_may_use_the_spare_nodes():
    sc, dep = _resolved(chips=576)
    assert (dep.chips, dep.chips_active, dep.stages) == (576, 512, 72)


def test_mixtral_runs_on_576_chips_with_node_spanning_tensor_parallelism():
    sc, dep = _resolved(model="mixtral-8x7b", context_window=8192, chips=576)
    assert dep.chips == 576 and dep.tensor_parallel == 16 and dep.stages == 36


def test_no_feasible_split_names_one_that_fits():
    with pytest.raises(CapacityError, match="would fit"):
        _resolved(chips=64)


MOE = ModelSpec(name="tiny-moe", layers=1, hidden_size=640, ffn_size=1280, heads=4,
                kv_heads=2, head_dim=160, vocab_size=3200, max_context=4096, experts=8,
                experts_per_token=2)


def test_expert_parallel_all_to_all_bytes_and_hops_hand_computed():
    from lpusim.compiler import compile_program
    s = system("groqrack-576")
    g = build_decode_graph(MOE, GraphParams(context=16, expert_parallel=True))
    prog = compile_program(g, s, chips=8, tp=8)
    combine = [t for t in prog.transfers if t.op.endswith(".combine")]
    # batch 1, 2 experts per token: 2 active experts, each on its own chip (expert e on chip
    # e), whose 640-element FP8 output goes to the 7 other chips over one direct link each
    assert len(combine) == 2 * 7
    assert {t.nbytes for t in combine} == {640}
    assert {len(t.route) for t in combine} == {1}
    assert {t.src for t in combine} == {0, 1}
    # the experts run whole on their owners: no all-reduce of expert partial sums
    assert not any("expert" in t.op and "allreduce" in t.op for t in prog.transfers)
    owners = {i.chip for i in prog.instructions if ".expert" in i.op and "proj" in i.op}
    assert owners == {0, 1}


def test_expert_parallel_fast_equals_full():
    from lpusim.step import step_metrics
    s = system("groqrack-576")
    kw = dict(chips=16, tp=8, context=16, context_window=64, expert_parallel=True)
    fast = step_metrics(MOE, s, fidelity="fast", **kw)
    full = step_metrics(MOE, s, fidelity="full", **kw)
    assert fast.latency_cycles == full.latency_cycles


def test_moe_chips_given_compare_expert_parallel_and_sharded_experts():
    sc = api.load_scenario("llama-3.1-70b-groqrack-576", {
        "model": "mixtral-8x7b", "context_window": 8192, "chips": 256})
    plan = api.plan_chips(sc, 256)
    eps = {c["expert_parallel"] for c in plan["candidates"] if c["tensor_parallel"] == 8}
    assert eps == {False, True}
    sc2, dep = resolve(sc)
    best = plan["candidates"][0]
    assert dep.expert_parallel == (best["tensor_parallel"] if best["expert_parallel"] else 1)
