"""Stage parts (lpusim.compiler.parts): a stage compiled as one template per block composes to
exactly the whole stage, and the checks refuse every case where it would not."""

from __future__ import annotations

import dataclasses

import pytest

from lpusim.compiler import compile_pipeline, compile_program
from lpusim.compiler.parts import Part, join_parts
from lpusim.config import load
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.program import Instr, Program
from lpusim.sim import metrics_full, metrics_pipeline
from tests.helpers import system


def _prog(*instrs: Instr) -> Program:
    return Program(name="p", clock_hz=10**9, chips=(0,), instructions=instrs, transfers=(),
                   links=(), sram_capacity_bytes=0)


def _ins(i: int, issue: int, duration: int, deps: tuple[int, ...] = (),
         stream: tuple[int, ...] = ()) -> Instr:
    return Instr(i, 0, "vxm", f"op{i}", 0, issue, duration, 0, 0, "compute_vxm", deps, stream)


def _part(prog: Program, imports: dict, exports: dict) -> Part:
    ready = {x.id: x.ready for x in prog.instructions}
    return Part(prog, imports, exports, ready, {x.id: x.busy for x in prog.instructions})


# part 0: op 0 ready at 10 (exported as op position 0) and op 1 ready at 12 (position 1)
FIRST = _part(_prog(_ins(0, 0, 10), _ins(1, 2, 10)), {}, {(0, 0): 0, (1, 0): 1})


def test_a_task_waiting_for_the_previous_parts_last_result_joins_there():
    # reads op 1 (ready at 12 = the first part's makespan): it starts at T in the whole stage
    later = _part(_prog(_ins(0, 0, 5)), {0: (((1, 1), 0, False),)}, {})
    assert join_parts([FIRST, later]) == [{0: 1}]


def test_a_task_that_could_start_before_the_part_is_refused():
    # reads only op 0 (ready at 10, two cycles before T): the whole stage starts it at 10
    later = _part(_prog(_ins(0, 0, 5)), {0: (((1, 0), 0, False),)}, {})
    assert join_parts([FIRST, later]) is None


def test_a_task_with_nothing_holding_it_back_is_refused():
    later = _part(_prog(_ins(0, 0, 5), _ins(1, 0, 5)), {0: (((1, 1), 0, False),)}, {})
    assert join_parts([FIRST, later]) is None


def test_a_tie_in_the_walk_is_refused():
    # task 1 streams task 0 (released at cycle 0 of the part) and reads op 1 (ready at T):
    # the whole stage's walk would pick the earlier task, the part's its own: refused
    later = _part(_prog(_ins(0, 0, 5), _ins(1, 0, 6, (0,), (0,))),
                  {0: (((1, 1), 0, False),), 1: (((1, 1), 0, False),)}, {})
    assert join_parts([FIRST, later]) is None


def test_a_streamed_value_at_the_cut_is_refused():
    later = _part(_prog(_ins(0, 0, 5)), {0: (((1, 1), 0, True),)}, {})
    # streamed: released at its first vector (cycle 2), before T, with the task at cycle 0
    assert join_parts([FIRST, later]) is None


def _mechanisms(name: str, collective_ps: int, barrier_ps: int, deskew_ps: int):
    s = system(name)
    return dataclasses.replace(s, sync=dataclasses.replace(
        s.sync, collective_latency_ps=collective_ps, layer_barrier_ps=barrier_ps,
        deskew_per_stage_ps=deskew_ps))


@pytest.mark.parametrize("model,sysname,chips,positions,tp", [
    ("llama-3.2-1b", "groqnode-8", 8, 1, None),        # one stage: embedding to head
    ("llama-3.2-1b", "groqnode-8", 8, 4, 4),
    ("mistral-7b", "groqrack-576", 40, 2, None),
    ("gemma-2-9b", "groqrack-576", 64, 3, None),       # local and global layers, soft-capping
    ("mixtral-8x7b", "groqrack-576", 272, 1, None),    # experts: their outputs do not cross
])
@pytest.mark.parametrize("collective_ps,barrier_ps,deskew_ps", [
    (0, 0, 1_000_000), (7_342_000, 0, 1_000_000), (0, 500_000, 0)])
def test_parts_compose_to_the_whole_program_exactly(model, sysname, chips, positions, tp,
                                                     collective_ps, barrier_ps, deskew_ps):
    s = _mechanisms(sysname, collective_ps, barrier_ps, deskew_ps)
    g = build_decode_graph(load(f"workloads/{model}.yaml"),
                           GraphParams(positions=positions, context=2048))
    pp = compile_pipeline(g, s, chips=chips, tp=tp)
    assert any(k.startswith("part:") for k in pp.stages)           # parts are in use
    assert len(pp.stage_of) == len(pp.stages) and pp.stage_of[-1] == chips // (tp or 8) - 1
    fast = metrics_pipeline(pp)
    full = metrics_full(compile_program(g, s, chips=chips, tp=tp))
    for f in ("latency_cycles", "breakdown_cycles", "initiation_interval_cycles",
              "unit_busy_cycles", "link_busy_cycles", "instructions", "kv_slots"):
        assert getattr(fast, f) == getattr(full, f), f


def _fresh(g, s, chips):
    from lpusim import caches
    caches.clear()
    return compile_pipeline(g, s, chips=chips)


def test_a_template_with_the_tasks_of_an_earlier_one_reuses_its_schedule_and_run():
    """A context what-if changes attention's tasks, not the FFN's: those templates reuse the
    schedule (the same item objects) and the simulation of the first compile, and the step
    is what a compile with nothing cached gives."""
    s = system("groqrack-576")
    model = load("workloads/llama-3.1-70b.yaml")
    g1, g2 = (build_decode_graph(model, GraphParams(context=c)) for c in (2048, 3000))
    first = _fresh(g1, s, 576)
    items = {id(p.instructions): p.instructions for p in first.templates.values()}
    second = compile_pipeline(g2, s, chips=576)
    shared = [k for k, p in second.templates.items() if id(p.instructions) in items]
    assert 0 < len(shared) < len(second.templates)      # attention changed, the FFN did not
    assert all(second.templates[k].name.startswith("step:") for k in shared)
    reused = metrics_pipeline(second)
    again = _fresh(g2, s, 576)
    assert not any(id(p.instructions) in items for p in again.templates.values())
    assert again.content_hash() == second.content_hash()
    assert metrics_pipeline(again) == reused


@pytest.mark.parametrize("model,chips", [("llama-3.1-70b", 576), ("mixtral-8x7b", 272)])
def test_a_link_what_if_re_times_the_lowered_transfers_and_nothing_else(model, chips,
                                                                      monkeypatch):
    """A what-if on link bandwidth or hop latency reuses the lowering of the same graph and
    placement with each transfer's serialisation (from its bytes) and hop latencies derived
    again; a stage with a route of several hops (chosen by latency) is lowered again. The
    program and the step are what a compile with nothing cached gives, there and back."""
    import dataclasses

    import lpusim.compiler as comp
    s = system("groqrack-576")
    g = build_decode_graph(load(f"workloads/{model}.yaml"), GraphParams(context=2048))

    def links(**kw):
        return dataclasses.replace(s, links=dataclasses.replace(s.links, **kw))
    fast = links(bandwidth_bytes_per_s=3 * s.link_bandwidth_bytes_per_s)
    far = links(global_hop_latency_ps=2 * s.links.global_hop_latency_ps,
                local_hop_latency_ps=s.links.local_hop_latency_ps // 2)
    first = _fresh(g, s, chips)
    entries = [v for v in comp._LOWERINGS.values() if v[0] is g]
    assert len(entries) >= len(first.templates)
    direct = sum(1 for e in entries if e[5])
    assert direct > 0                   # stages whose transfers take direct links only
    calls = []
    real = comp.lower_stage_template
    monkeypatch.setattr(comp, "lower_stage_template",
                        lambda *a, **kw: calls.append(a[5]) or real(*a, **kw))
    for sysv, again in ((fast, 0), (s, 0), (far, len(entries) - direct), (fast, None)):
        calls.clear()
        warm = compile_pipeline(g, sysv, chips=chips)
        if again is not None:
            assert len(calls) == again      # only the stages with routes of several hops
        cold = _fresh(g, sysv, chips)
        assert cold.content_hash() == warm.content_hash()
        assert metrics_pipeline(cold) == metrics_pipeline(warm)
    assert warm.content_hash() != first.content_hash()


@pytest.mark.parametrize("model,chips", [("llama-3.1-70b", 576), ("mixtral-8x7b", 272)])
def test_a_sync_what_if_re_derives_the_fixed_latencies_and_lowers_nothing_again(model, chips,
                                                                               monkeypatch):
    """A what-if on a fixed sync latency (deskew, collective latency, layer barrier) that
    stays above 0 reuses the lowering with the fill of its instructions derived again; one
    that crosses 0 makes or drops instructions, so the stages are lowered again. The program
    and the step are what a compile with nothing cached gives, also with a link what-if at
    once."""
    import dataclasses

    import lpusim.compiler as comp
    g = build_decode_graph(load(f"workloads/{model}.yaml"), GraphParams(context=2048))

    def sync(base, **kw):
        return dataclasses.replace(base, sync=dataclasses.replace(base.sync, **kw))
    s = sync(system("groqrack-576"), collective_latency_ps=7_000_000)
    assert s.sync.deskew_per_stage_ps > 0 and s.sync.layer_barrier_ps == 0
    calls = []
    real = comp.lower_stage_template
    monkeypatch.setattr(comp, "lower_stage_template",
                        lambda *a, **kw: calls.append(a[5]) or real(*a, **kw))
    first = _fresh(g, s, chips)
    lowered = len(calls)
    assert lowered >= len(first.templates)
    wide = dataclasses.replace(s, links=dataclasses.replace(
        s.links, bandwidth_bytes_per_s=2 * s.link_bandwidth_bytes_per_s))
    for sysv, again in ((sync(s, collective_latency_ps=3_000_000), 0),
                        (sync(s, deskew_per_stage_ps=2 * s.sync.deskew_per_stage_ps), 0),
                        (sync(wide, collective_latency_ps=1_000_000), 0),
                        (sync(s, layer_barrier_ps=500_000), lowered),   # crosses 0
                        (s, 0)):
        calls.clear()
        warm = compile_pipeline(g, sysv, chips=chips)
        assert len(calls) == again
        cold = _fresh(g, sysv, chips)
        assert cold.content_hash() == warm.content_hash()
        assert metrics_pipeline(cold) == metrics_pipeline(warm)
        _fresh(g, s, chips)                     # the first system's lowering, kept again
        calls.clear()
    assert warm.content_hash() == first.content_hash()


@pytest.mark.parametrize("model,chips", [("llama-3.1-70b", 576), ("gemma-2-27b", 576),
                                         ("mixtral-8x7b", 272)])
def test_stages_of_copied_layers_have_the_parts_of_their_forms(model, chips):
    """Stage parts are kept by the forms of the stage's blocks (the layer each copies): for
    every stage they are what the stage's own blocks give."""
    from lpusim.compiler import _part_keys, _parts, placement
    s = system("groqrack-576")
    g = build_decode_graph(load(f"workloads/{model}.yaml"), GraphParams(context=2048))
    pl = placement(g, s.chip, chips, 8)
    shared: dict = {}
    assert len({g.block_form[b] for b in g.blocks}) < len(g.blocks) / 10
    for st in range(len(pl.stages)):
        _part_keys(g, pl, st, False, False, False, "", "", shared, 0)
    for st in range(len(pl.stages)):
        forms = tuple(g.block_form[b] for b in pl.stages[st])
        assert g.derived[("parts", pl.tp, forms)] == _parts(g, pl, st, {})
