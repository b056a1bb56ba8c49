import dataclasses

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from lpusim.compiler import compile_pipeline, compile_program, minimum_chips, verify_program
from lpusim.compiler.lower import Cost, mxm_cost
from lpusim.compiler.place import place
from lpusim.compiler.schedule import Lowerer, schedule
from lpusim.compiler.topology import build_link_graph
from lpusim.config import load
from lpusim.config.specs import ModelSpec
from lpusim.errors import CapacityError, CompileError
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.program import Handoff, Instr, Link, PipelineProgram, Program, Transfer
from tests.helpers import chip, system


def test_one_mxm_tile_hand_computed():
    c = chip()
    cost = mxm_cost(c, 1, 1, 320, 320, "int8")
    # load: 320*320 B over 8 streams of 320 B = 40 cycles; one tile: max(40, 16 + 1)
    assert cost.duration == 40 + 40
    # transit: SRAM read 5 + 24 slices; fill: MXM pipeline 40 + ripple 20
    assert (cost.transit, cost.fill) == (5 + 24, 40 + 20)
    fp16 = mxm_cost(c, 1, 17, 320, 320, "fp16")
    # FP16 tile is 2x the bytes (80-cycle load) and 4x slower per row: max(80, 16 + 68)
    assert fp16.duration == 80 + 84


def test_width_adds_cycles_per_tile():
    c = chip()
    one = mxm_cost(c, 1, 1, 8192, 1024, "int8").duration
    wide = mxm_cost(c, 1, 17, 8192, 1024, "int8").duration
    wider = mxm_cost(c, 1, 64, 8192, 1024, "int8").duration
    assert one == wide          # 17 rows hide under the 40-cycle weight load
    assert wider > one


def _transfer_program(sys_, nbytes):
    links = build_link_graph(sys_)
    lw = Lowerer.collectives_only(sys_, links, "fp8")    # primitives only, no graph
    lw.transfer(0, 1, [links.between[(0, 1)]], nbytes, "send", 0, ())
    return schedule(lw.tasks, name="t", system=sys_, links=links, chips=(0, 1), pl=None, meta={})


def test_two_chip_transfer_hand_computed():
    s = system()
    prog = _transfer_program(s, 16384)
    (t,) = prog.transfers
    # 16384 B at 4 lanes x 30 Gb/s x 0.97 = 14.55 GB/s, 900 MHz: ceil(16384*9e8/14.55e9)
    assert t.serialisation == 1014
    assert sum(t.hop_latency) == 216         # 240 ns at 900 MHz
    assert t.ready == 1014 + 216


def test_eight_chip_all_reduce_hand_computed():
    s = system()
    m = ModelSpec(name="t", layers=1, hidden_size=8192, ffn_size=8192, heads=64, kv_heads=8,
                  head_dim=128, vocab_size=1000, max_context=16)
    g = build_decode_graph(m, GraphParams(context=1))
    pl = place(g, s.chip, 8, 8)
    links = build_link_graph(s)
    lw = Lowerer(g, s, pl, links)
    for c in range(8):      # a 1-cycle producer of the partial sum on every chip
        lw.instr(c, "p", 0, Cost("mxm", 1, 0, 0, "compute_mxm"), ())
    out = lw.all_reduce(tuple(range(8)), {c: c for c in range(8)}, 16384, "ar", 0)
    prog = schedule(lw.tasks, name="ar", system=s, links=links, chips=tuple(range(8)),
                    pl=None, meta={})
    verify_program(prog)
    ready_at = {i.id: i.ready for i in prog.instructions}
    # chunk 2048 B: ser ceil(2048*9e8/14.55e9) = 127; hop 216. Producers run 0..1.
    # reduce-scatter (streams the producer): issue 0, first vector lands at 216, last at 343.
    # reduce (streams its inputs): 7 x 1024 fp16 = 7168 elements / 320 lanes = 23 vectors
    # / 16 ALUs = 2 cycles, but it issues at 216 and lasts until the last vector, 127 cycles;
    # ready 343 + transit 27 + fill (4 + ripple 20) = 394. all-gather (streams the reduce):
    # issue 394 - 127 = 267, ready 267 + 127 + 216 = 610; assemble 1 cycle -> 611 (742
    # without streaming)
    assert all(ready_at[out[c]] == 611 for c in range(8))


def test_70b_on_576_chips_compiles_and_verifies():
    s = system("groqrack-576")
    g = build_decode_graph(load("workloads/llama-3.1-70b.yaml"), GraphParams(context=8192))
    prog = compile_program(g, s)
    verify_program(prog)
    assert len(prog.chips) == 576
    assert max(sum(v.values()) for v in prog.sram_bytes.values()) <= prog.sram_capacity_bytes


def test_plan_minimum_chips_consistent_with_sram():
    g = build_decode_graph(load("workloads/llama-3.1-70b.yaml"), GraphParams(context=8192))
    n = minimum_chips(g, chip(), 8)
    assert n > 306            # 70.55 GB of 8-bit weights over 230.7 MB chips
    assert n % 8 == 0
    with pytest.raises(CapacityError) as e:
        place(g, chip(), n - 8, 8)
    assert e.value.min_chips == n
    assert "over by" in str(e.value)


def test_model_too_big_names_chip_and_minimum():
    s = system()
    g = build_decode_graph(load("workloads/llama-3.1-70b.yaml"), GraphParams(context=8192))
    with pytest.raises(CapacityError, match=r"chip 0 .* over by [\d,.]+ MB .* at least \d+ chips"):
        compile_program(g, s)


def test_program_hash_is_deterministic():
    s = system()
    m = load("workloads/llama-3.2-1b.yaml")
    g1 = build_decode_graph(m, GraphParams(context=512))
    g2 = build_decode_graph(m, GraphParams(context=512))
    assert compile_program(g1, s).content_hash() == compile_program(g2, s).content_hash()
    assert compile_pipeline(g1, s).content_hash() == compile_pipeline(g2, s).content_hash()


def _tiny_pipeline(issue: int = 3) -> PipelineProgram:
    prog = Program(name="t", clock_hz=10**9, chips=(0, 1),
                   instructions=(Instr(0, 0, "mxm", "a", 0, 0, 3, 1, 2, "compute_mxm", ()),
                                 Instr(2, 1, "vxm", "c", 0, issue + 9, 4, 0, 1, "compute_vxm",
                                       (1,))),
                   transfers=(Transfer(1, 0, 1, (0,), (5,), 100, "b", 0, issue, 4, (0,)),),
                   links=(Link(0, 0, 1, "local"),), sram_capacity_bytes=1000,
                   sram_bytes={0: {"weights": 10}, 1: {"weights": 20}},
                   meta={"stage": 0, "blocks": ["embed"]})
    return PipelineProgram(name="step", clock_hz=10**9, chips=2, templates={"k": prog},
                           stages=("k",), stage_of=(0,), handoffs=(Handoff(1, 0, 4, 1, ()),),
                           sram_capacity_bytes=1000, sram_bytes=prog.sram_bytes,
                           meta={"tp": 2})


def test_pipeline_hash_is_pinned_and_sees_every_cycle():
    # the canonical bytes (marshal version 2 of plain values) must not drift between Python
    # versions or processes: a change here changes every printed program_hash
    assert _tiny_pipeline().content_hash() == (
        "f8cb60fe5f7d60d302aa4dc149c90d5503724a402462a35363ee25b3716769ab")
    assert _tiny_pipeline(4).content_hash() != _tiny_pipeline().content_hash()


def test_canonical_bytes_compose_the_marshal_of_the_whole_program():
    # a program's bytes are composed from those kept for its item tuples: the same bytes as
    # marshalling the whole, first time and again, and for equal items that are other objects
    import json
    import marshal

    from lpusim.program import _plain_sram
    prog = _tiny_pipeline().templates["k"]
    whole = marshal.dumps((prog.name, prog.clock_hz, tuple(prog.chips),
                           tuple(map(tuple, prog.instructions)),
                           tuple(map(tuple, prog.transfers)), tuple(map(tuple, prog.links)),
                           prog.sram_capacity_bytes, _plain_sram(prog.sram_bytes),
                           json.dumps(prog.meta, sort_keys=True)), 2)
    assert prog.canonical_bytes() == whole == prog.canonical_bytes()
    assert _tiny_pipeline().templates["k"].canonical_bytes() == whole
    assert _tiny_pipeline(4).templates["k"].canonical_bytes() != whole


def random_model(draw):
    kv = draw(st.sampled_from([1, 2, 4, 8]))
    heads = kv * draw(st.sampled_from([1, 2, 4]))
    hd = draw(st.sampled_from([16, 64, 128]))
    return ModelSpec(name="r", layers=draw(st.integers(1, 6)),
                     hidden_size=draw(st.sampled_from([64, 320, 1000, 2048])),
                     ffn_size=draw(st.sampled_from([128, 700, 4096])), heads=heads, kv_heads=kv,
                     head_dim=hd, vocab_size=draw(st.sampled_from([100, 32000])),
                     max_context=4096)


@st.composite
def programs(draw):
    m = random_model(draw)
    tp = draw(st.sampled_from([1, 2, 4, 8]))
    blocks = m.layers + 2
    stages = draw(st.integers(1, min(blocks, 4)))
    s = system("groqrack-576")
    g = build_decode_graph(m, GraphParams(positions=draw(st.integers(1, 5)),
                                          batch=draw(st.integers(1, 2)),
                                          context=draw(st.integers(1, 2048))))
    try:
        return compile_program(g, s, chips=stages * tp, tp=tp)
    except CapacityError:
        reject()      # too big for so few chips: not a scheduling case


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.data())
def test_verifier_accepts_scheduled_and_rejects_corrupted(prog, data):
    verify_program(prog)
    # shift one instruction that has a dependency earlier by one cycle: must be rejected
    cands = [i for i in prog.instructions if i.deps]
    victim = data.draw(st.sampled_from(cands))
    bad = victim._replace(issue=victim.issue - 1)
    ins = tuple(bad if i.id == victim.id else i for i in prog.instructions)
    with pytest.raises(CompileError, match="verify"):
        verify_program(dataclasses.replace(prog, instructions=ins))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.data())
def test_verifier_rejects_overlapping_transfer(prog, data):
    by_link: dict[int, list] = {}
    for t in prog.transfers:
        for lid in t.route:
            by_link.setdefault(lid, []).append(t)
    shared = [v for v in by_link.values() if len(v) >= 2]
    if not shared:
        return
    a, b = sorted(data.draw(st.sampled_from(shared)), key=lambda t: t.issue)[:2]
    moved = b._replace(issue=a.issue, deps=())
    trs = tuple(moved if t.id == b.id else t for t in prog.transfers)
    with pytest.raises(CompileError, match="oversubscribed|before operand"):
        verify_program(dataclasses.replace(prog, transfers=trs))


def test_program_json_round_trip():
    import json

    from lpusim.program import Program
    g = build_decode_graph(load("workloads/llama-3.2-1b.yaml"), GraphParams(context=256,
                                                                             positions=3))
    prog = compile_program(g, system())
    back = Program.from_dict(json.loads(prog.to_json()))
    assert back == prog
    assert back.content_hash() == prog.content_hash()
    assert any(i.stream for i in back.instructions)     # streamed operands survive


def test_plan_grows_tensor_parallelism_for_405b():
    from lpusim import api
    p = api.plan(api.load_model("llama-3.1-405b"), chip())
    # one 405B layer is 3.19 GB at 8 bits: 399 MB per chip at TP 8 does not fit 226 MB
    assert p["tensor_parallel"] == 16
    assert p["min_chips"] == 2048 and p["min_chips"] % 16 == 0
    assert p["sram_bytes_per_chip_max"] <= p["usable_sram_bytes_per_chip"]


def test_bigger_sram_halves_the_70b_chip_count():
    from lpusim import api
    p1 = api.plan(api.load_model("llama-3.1-70b"), chip())
    p2 = api.plan(api.load_model("llama-3.1-70b"), api.load_chip("groq3-lp30"))
    assert p1["min_chips"] == 336 and p2["min_chips"] == 168


def test_all_reduce_across_two_nodes_is_hierarchical():
    s = system("groqrack-576")
    m = ModelSpec(name="t", layers=1, hidden_size=8192, ffn_size=8192, heads=64, kv_heads=8,
                  head_dim=128, vocab_size=1000, max_context=16)
    g = build_decode_graph(m, GraphParams(context=1))
    pl = place(g, s.chip, 16, 16)
    links = build_link_graph(s, 16)
    lw = Lowerer(g, s, pl, links)
    for c in range(16):
        lw.instr(c, "p", 0, Cost("mxm", 1, 0, 0, "compute_mxm"), ())
    nbytes = 16384
    out = lw.all_reduce(tuple(range(16)), {c: c for c in range(16)}, nbytes, "ar", 0)
    prog = schedule(lw.tasks, name="ar", system=s, links=links, chips=tuple(range(16)),
                    pl=None, meta={})
    verify_program(prog)
    # only the exchange crosses between the nodes: each chip's reduced eighth, once each way
    glob = {lk.id for lk in links.links if lk.kind == "global"}
    crossing = [t for t in prog.transfers if glob & set(t.route)]
    assert {t.op for t in crossing} == {"ar.exchange"}
    assert sum(t.nbytes for t in crossing) == 16 * (nbytes // 8)
    # every chip's result depends on every chip's partial sum
    deps = {t.id: set(t.deps) for t in (*prog.instructions, *prog.transfers)}

    def ancestors(i, seen=None):
        seen = set() if seen is None else seen
        for d in deps[i]:
            if d not in seen:
                seen.add(d)
                ancestors(d, seen)
        return seen

    for c in range(16):
        assert set(range(16)) <= ancestors(out[c]) | {out[c]}


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.fixed_dictionaries({"weights": st.integers(0, 10**9),
                                             "kv_cache": st.integers(0, 10**8),
                                             "activations": st.integers(0, 10**8)}),
                      min_size=1, max_size=40), data=st.data())
def test_partition_finds_the_cap_plain_bisection_finds(sizes, data):
    """`partition`'s jumping bisection ends at the least cap whose greedy cut fits, as plain
    bisection over every byte count does, so it cuts alike (the first cut, before groups are
    split to make up the count, is the greedy cut at that cap)."""
    from lpusim.compiler.place import _greedy, _Sizes, partition
    n = data.draw(st.integers(1, len(sizes)))
    sz = _Sizes(sizes)
    lo, hi = max(sz.total(i, i + 1) for i in range(sz.n)), sz.total(0, sz.n)
    while lo < hi:
        mid = (lo + hi) // 2
        g = _greedy(sz, mid)
        if g is not None and len(g) <= n:
            hi = mid
        else:
            lo = mid + 1
    first = _greedy(sz, lo)
    assert first is not None and len(first) <= n
    assert lo == 0 or len(_greedy(sz, lo - 1) or range(n + 1)) > n     # the least such cap
    got = partition(sizes, n)
    assert len(got) == n
    assert max(sz.total(a, b) for a, b in got) == lo
    assert {b for _a, b in first} <= {b for _a, b in got}       # later splits only add cuts


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_plan_fits_whenever_a_fine_or_coarse_partition_fits(data):
    from lpusim.compiler.place import _merge, _plan, atoms, partition
    layers = data.draw(st.integers(1, 8))
    blocks = ["embed"] + [f"layer{i}.{k}" for i in range(layers)
                          for k in ("attn", "mlp", "down")] + ["head"]
    sizes = [{"weights": data.draw(st.integers(1, 100)),
              "kv_cache": data.draw(st.integers(0, 30)),
              "activations": data.draw(st.integers(0, 50))} for _ in blocks]
    n = data.draw(st.integers(1, len(blocks)))
    cap = data.draw(st.integers(50, 1500))
    groups, sram = _plan(sizes, blocks, n, cap)
    assert len(groups) == n and groups[0][0] == 0 and groups[-1][1] == len(blocks)
    assert all(a < b for a, b in groups)
    assert all(x[1] == y[0] for x, y in zip(groups, groups[1:], strict=False))
    fits = max(sum(t.values()) for t in sram) <= cap
    for fine in (False, True):
        at = atoms(blocks, fine)
        if n <= len(at):
            best = _merge(sizes, [(at[a][0], at[b - 1][1]) for a, b in
                                  partition(_merge(sizes, at), n)])
            if max(sum(t.values()) for t in best) <= cap:
                assert fits                      # a fitting cut exists: the plan fits
                if not fine:
                    assert all(not blocks[a].endswith(".down") or a == 0 for a, _b in groups)
                break


def _route_facts(g, a):
    """(latency, hops) of the cheapest path from chip a to every chip (networkx Dijkstra on
    latency x 2**20 + 1 per link: latency first, then hops), and those distances."""
    import networkx as nx
    dg = nx.DiGraph()
    for lk in g.links:
        dg.add_edge(lk.src, lk.dst, w=g.latency[lk.id] * (1 << 20) + 1, lid=lk.id)
    return dg, nx.single_source_dijkstra_path_length(dg, a, weight="w")


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(["groqrack-576", "groqrack-2304"]),
       local_ns=st.sampled_from([100, 240, 500]), global_ns=st.sampled_from([100, 240, 420]),
       seed=st.integers(0, 10**6))
def test_routes_are_cheapest_and_take_the_lowest_link_id_among_ties(name, local_ns, global_ns,
                                                                    seed):
    """A route minimises total hop latency, then hops, and each hop is the lowest-numbered
    link into its chip among those on a cheapest path (how `route` breaks ties), also for
    the later targets of a search resumed from the same chip."""
    import random
    s = system(name)
    s = dataclasses.replace(s, links=dataclasses.replace(
        s.links, local_hop_latency_ps=local_ns * 1000, global_hop_latency_ps=global_ns * 1000))
    n = s.chips // 2 + 5
    g = build_link_graph(s, n)
    rng = random.Random(seed)
    a = rng.randrange(n)
    dg, dist = _route_facts(g, a)
    for b in rng.sample(range(n), 6):
        src, dst, route = g.route([a], [b])
        assert (src, dst) == (a, b)
        assert sum(dg.edges[g.links[lid].src, g.links[lid].dst]["w"] for lid in route) == \
            dist[b]
        for lid in route:
            v = g.links[lid].dst
            best = min(d["lid"] for u, _v, d in dg.in_edges(v, data=True)
                       if u in dist and dist[u] + d["w"] == dist[v])
            assert lid == best


@pytest.mark.parametrize("local_ns,global_ns", [(240, 420), (500, 100), (100, 100)])
def test_short_routes_and_a_star_routes_are_the_cheapest_with_the_tie_rule(local_ns,
                                                                          global_ns):
    """A route of at most three hops is read off the cheapest short paths (`_short`), a longer
    one comes from A* (`_astar`); both are the cheapest path with the lowest link into each
    chip among ties (networkx Dijkstra, as above), across nodes and racks."""
    s = system("groqrack-2304")
    s = dataclasses.replace(s, links=dataclasses.replace(
        s.links, local_hop_latency_ps=local_ns * 1000, global_hop_latency_ps=global_ns * 1000))
    g = build_link_graph(s, 300)
    used = {"short": 0, "astar": 0}
    for a in (0, 13, 71, 150, 299):
        dg, dist = _route_facts(g, a)
        for b in range(0, 300, 7):
            if a == b:
                continue
            short = g._short(a, b)
            used["short" if short is not None else "astar"] += 1
            route = short if short is not None else g._astar(a, b)
            assert g.route([a], [b])[2] == route
            assert g.pair_route(a, b) == tuple(route)
            assert sum(dg.edges[g.links[lid].src, g.links[lid].dst]["w"] for lid in route) \
                == dist[b]
            for lid in route:
                v = g.links[lid].dst
                assert lid == min(d["lid"] for u, _v, d in dg.in_edges(v, data=True)
                                  if u in dist and dist[u] + d["w"] == dist[v])
    assert used["short"] > 0 and used["astar"] > 0


def test_a_kept_pair_route_is_dropped_when_a_link_is_added():
    """`pair_route` keeps each pair's route; a link added afterwards can make a cheaper one,
    so adding a link drops what was kept."""
    s = system("groqrack-2304")
    g = build_link_graph(s, 300)
    a, b = 0, 299
    before = g.pair_route(a, b)
    assert len(before) > 1 and g.pair_route(a, b) is before
    g.add(a, b, "global", 1)
    assert g.pair_route(a, b) == (g.between[(a, b)],) == tuple(g.route([a], [b])[2])


def test_the_lowerer_makes_the_tasks_its_fields_name():
    """The lowerer builds tasks from their fields in order (no constructor call per task):
    each is the task its keyword form names."""
    from lpusim.compiler.lower import Task
    s = system("groqnode-8")
    links = build_link_graph(s)
    lw = Lowerer.collectives_only(s, links, "fp8")
    cost = Cost("mxm", 7, 2, 3, "mxm_compute")
    a = lw.instr(0, "x", 1, cost, ())
    b = lw.instr(1, "y", 1, cost, (a,), stream=(a,))
    t = lw.transfer(0, 1, [links.between[(0, 1)]], 4096, "t", 2, (a, b), stream=(b,),
                    not_before=5)
    assert lw.tasks[a] == Task("instr", 0, "x", 1, (), cost=cost)
    assert lw.tasks[b] == Task("instr", 1, "y", 1, (a,), cost=cost, stream=(a,))
    lid = links.between[(0, 1)]
    assert lw.tasks[t] == Task("transfer", 0, "t", 2, (a, b), dst=1, route=(lid,), nbytes=4096,
                               serialisation=lw.tasks[t].serialisation,
                               hop_latency=(links.latency[lid],), stream=(b,), not_before=5)
    assert lw.tasks[t].serialisation > 0
    prog = schedule(lw.tasks, name="t", system=s, links=links, chips=(0, 1), pl=None, meta={})
    i0, i1 = prog.instructions
    assert (i0.id, i0.chip, i0.unit, i0.op, i0.block, i0.issue, i0.duration, i0.transit,
            i0.fill, i0.category) == (0, 0, "mxm", "x", 1, 0, 7, 2, 3, "mxm_compute")
    assert (i1.issue, i1.stream) == (2 + 3, (a,))   # a's first vector: transit + fill
    (tr,) = prog.transfers
    assert (tr.src, tr.dst, tr.route, tr.nbytes, tr.op, tr.deps, tr.stream) == \
        (0, 1, (lid,), 4096, "t", (a, b), (b,))
