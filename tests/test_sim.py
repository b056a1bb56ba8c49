import dataclasses
import gzip
import json
import subprocess
import sys

import pytest

from lpusim.compiler import compile_pipeline, compile_program
from lpusim.config import load
from lpusim.errors import ScheduleViolation
from lpusim.graph import GraphParams, build_decode_graph
from lpusim.program import Instr, Program, Transfer
from lpusim.sim import critical_path, metrics_full, metrics_pipeline, simulate
from tests.helpers import system


def hand_program() -> Program:
    # chip 0: MXM op (issue 0, busy 10, transit 2, fill 3) -> ready 15
    # link 0: transfer 0->1 issues at 15, 20 cycles + 5 latency -> ready 40
    # chip 1: VXM op issues at 40, busy 4, fill 1 -> ready 45
    from lpusim.program import Link
    return Program(
        name="hand", clock_hz=1_000_000_000, chips=(0, 1),
        instructions=(Instr(0, 0, "mxm", "a", 0, 0, 10, 2, 3, "compute_mxm", ()),
                      Instr(2, 1, "vxm", "c", 0, 40, 4, 0, 1, "compute_vxm", (1,))),
        transfers=(Transfer(1, 0, 1, (0,), (5,), 100, "b", 0, 15, 20, (0,)),),
        links=(Link(0, 0, 1, "local"),), sram_capacity_bytes=0)


def test_hand_program_exact_cycles():
    res = simulate(hand_program())
    assert res.latency_cycles == 45
    assert res.start == {0: 0, 1: 15, 2: 40}
    bd = critical_path(res)
    assert bd["compute_mxm"] == 10 and bd["data_movement"] == 2
    assert bd["link_serialisation"] == 20 and bd["link_latency"] == 5
    assert bd["compute_vxm"] == 4 and bd["pipeline_fill"] == 3 + 1
    assert sum(bd.values()) == 45 and bd["idle"] == 0


def test_early_consumer_raises_violation_naming_chip_unit_cycle():
    p = hand_program()
    bad = p.instructions[1]._replace(issue=39)
    p2 = dataclasses.replace(p, instructions=(p.instructions[0], bad))
    with pytest.raises(ScheduleViolation) as e:
        simulate(p2)
    assert (e.value.chip, e.value.unit, e.value.cycle) == (1, "vxm", 39)
    assert "operand 1 arrives at cycle 40" in str(e.value)


def test_double_booked_unit_raises():
    p = hand_program()
    extra = Instr(3, 0, "mxm", "d", 0, 5, 3, 0, 0, "compute_mxm", ())
    p2 = dataclasses.replace(p, instructions=(*p.instructions, extra))
    with pytest.raises(ScheduleViolation) as e:
        simulate(p2)
    assert (e.value.chip, e.value.unit, e.value.cycle) == (0, "mxm", 5)


def test_compiled_program_shifted_instruction_is_caught():
    s = system()
    g = build_decode_graph(load("workloads/llama-3.2-1b.yaml"), GraphParams(context=256))
    prog = compile_program(g, s)
    victim = next(i for i in prog.instructions if i.unit == "vxm" and i.deps and i.chip == 3)
    ins = tuple(i._replace(issue=i.issue - 1) if i.id == victim.id else i
                for i in prog.instructions)
    with pytest.raises(ScheduleViolation) as e:
        simulate(dataclasses.replace(prog, instructions=ins))
    assert e.value.chip == 3 and e.value.unit == "vxm" and e.value.cycle == victim.issue - 1


@pytest.mark.parametrize("model,sysname,chips,positions,tp", [
    ("llama-3.2-1b", "groqnode-8", 8, 1, None),
    ("llama-3.2-1b", "groqrack-576", 32, 5, None),
    ("llama-3.1-8b", "groqrack-576", 64, 1, None),
    ("mixtral-8x7b", "groqrack-576", 272, 2, None),
    ("llama-3.1-70b", "groqrack-576", 576, 17, None),
    # tensor parallelism 16 across two nodes; with 9 nodes a rack, some groups span racks
    ("llama-3.1-8b", "groqrack-2304", 480, 3, 16),
])
def test_fast_and_full_fidelity_agree_exactly(model, sysname, chips, positions, tp):
    s = system(sysname)
    g = build_decode_graph(load(f"workloads/{model}.yaml"),
                           GraphParams(positions=positions, context=2048))
    full = metrics_full(compile_program(g, s, chips=chips, tp=tp))
    pp = compile_pipeline(g, s, chips=chips, tp=tp)
    fast = metrics_pipeline(pp)
    assert tp is None or len(pp.templates) < len(pp.stages)     # templates are shared
    assert fast.latency_cycles == full.latency_cycles
    assert fast.breakdown_cycles == full.breakdown_cycles
    assert sum(full.breakdown_cycles.values()) == full.latency_cycles
    assert fast.initiation_interval_cycles == full.initiation_interval_cycles > 0
    assert fast.kv_slots == full.kv_slots >= 1


def test_more_link_bandwidth_never_slower():
    from lpusim.config import load_scenario
    base = "workloads/scenarios/llama-3.1-70b-groqrack-576.yaml"
    from lpusim.api import run
    a = run(load_scenario(base, {"system.links.bandwidth_bytes_per_s": "10GB/s"}))
    b = run(load_scenario(base, {"system.links.bandwidth_bytes_per_s": "40GB/s"}))
    assert b.step_latency_cycles < a.step_latency_cycles


def test_cli_run_json_contract():
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "run", "--format", "json"],
                       capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    for key in ("scenario", "model", "chip", "chips", "tokens_per_second", "token_latency_us",
                "sram_bytes_per_chip_max", "breakdown_us", "fidelity"):
        assert key in d
    assert d["chips"] == d["deployment"]["chips_active"] and d["model"] == "Llama 3.1 70B"
    assert d["deployment"]["chips_installed"] == 576 and 0 <= d["fitted_share"] <= 1
    assert d["tokens_per_second"] == pytest.approx(1e6 / d["token_latency_us"])
    assert sum(d["breakdown_us"].values()) == pytest.approx(d["step_latency_us"])


def test_cli_trace_loads_with_named_chips_and_units(tmp_path):
    out = tmp_path / "step.json.gz"
    subprocess.run([sys.executable, "-m", "lpusim.cli", "trace", "--model", "llama-3.2-1b",
                    "--system", "groqnode-8", "--context", "512", "-o", str(out),
                    "--chip-range", "0:4"], capture_output=True, text=True, check=True)
    d = json.loads(gzip.decompress(out.read_bytes()))
    names = {(e["pid"], e["args"]["name"]) for e in d["traceEvents"]
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {(c, f"chip {c}") for c in range(4)}
    threads = {e["args"]["name"] for e in d["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"MXM", "VXM", "MEM"} <= threads
    assert any(t.startswith("link ") for t in threads)
    assert any(e["ph"] == "X" and e["name"] == "L0.q_proj" for e in d["traceEvents"])


def test_cli_bad_input_exit_2_no_traceback_no_file(tmp_path):
    out = tmp_path / "x.json"
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "trace", "--model", "nope",
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("lpusim: error: ") and "Traceback" not in r.stderr
    assert r.stderr.startswith("lpusim: error: command line: --model: no model file or name "
                               "'nope'")
    assert not out.exists()


def stream_program(issue: int, duration: int) -> Program:
    # transfer 0->1 of 20 cycles + 5 hop latency (ready 25, first vector at 5); chip 1's VXM
    # consumes it as a stream
    from lpusim.program import Link
    return Program(
        name="stream", clock_hz=1_000_000_000, chips=(0, 1),
        instructions=(Instr(1, 1, "vxm", "r", 0, issue, duration, 0, 1, "compute_vxm", (0,),
                            (0,)),),
        transfers=(Transfer(0, 0, 1, (0,), (5,), 100, "t", 0, 0, 20, ()),),
        links=(Link(0, 0, 1, "local"),), sram_capacity_bytes=0)


def test_streamed_operand_may_start_at_its_first_vector():
    res = simulate(stream_program(5, 20))
    assert res.latency_cycles == 5 + 20 + 1
    bd = critical_path(res)
    # the consumer ends with its operand, so the path is the whole transfer, then the
    # consumer's fill after the last vector
    assert bd["link_serialisation"] == 20 and bd["link_latency"] == 5
    assert bd["pipeline_fill"] == 1 and bd["compute_vxm"] == 0
    assert sum(bd.values()) == res.latency_cycles


@pytest.mark.parametrize("issue,duration,why", [
    (4, 21, "operand 0 arrives at cycle 5"),
    (5, 19, "ends at cycle 24 before streamed operand 0 ends at 25"),
])
def test_streamed_operand_violations(issue, duration, why):
    with pytest.raises(ScheduleViolation) as e:
        simulate(stream_program(issue, duration))
    assert why in str(e.value)


def _simpy_events(prog: Program) -> int:
    """The simpy events `simulate(prog)` schedules."""
    import simpy
    count = 0
    schedule = simpy.Environment.schedule

    def counted(env, *args, **kw):
        nonlocal count
        count += 1
        schedule(env, *args, **kw)
    simpy.Environment.schedule = counted
    try:
        simulate(prog)
    finally:
        simpy.Environment.schedule = schedule
    return count


def test_one_event_per_cycle_at_which_anything_issues():
    # the hand program issues at cycles 0, 15 and 40; a second chip working in step with
    # chip 0 adds items, not events
    from lpusim.program import Link
    p = hand_program()
    assert _simpy_events(p) == 3
    twin = Instr(3, 1, "mxm", "a2", 0, 0, 10, 2, 3, "compute_mxm", ())
    p2 = dataclasses.replace(p, instructions=(*p.instructions, twin),
                             links=(*p.links, Link(1, 1, 0, "local")))
    res = simulate(p2)
    assert _simpy_events(p2) == 3 and res.events == 4 and res.start[3] == 0


def test_a_chip_local_transfer_may_feed_a_stream_in_its_own_cycle():
    # a transfer inside one chip has its first vector out as it issues: a consumer streaming
    # it from that very cycle is valid (the verifier agrees) and runs
    from lpusim.compiler.verify import verify_schedule
    p = Program(
        name="local", clock_hz=1_000_000_000, chips=(0,),
        instructions=(Instr(1, 0, "vxm", "r", 0, 0, 12, 0, 1, "compute_vxm", (0,), (0,)),),
        transfers=(Transfer(0, 0, 0, (), (), 100, "t", 0, 0, 10, ()),),
        links=(), sram_capacity_bytes=0)
    verify_schedule(p)
    res = simulate(p)
    assert res.start == {0: 0, 1: 0} and res.latency_cycles == 13


def test_a_stream_from_an_instruction_without_transit_or_fill_starts_in_its_cycle():
    # an ICU instruction with no transit or fill has its first vector out as it issues; the
    # transfer streaming it leaves in that cycle (as every all-reduce's partials do)
    from lpusim.compiler.verify import verify_schedule
    from lpusim.program import Link
    p = Program(
        name="icu", clock_hz=1_000_000_000, chips=(0, 1),
        instructions=(Instr(0, 0, "icu", "partial", 0, 0, 1, 0, 0, "synchronisation", ()),),
        transfers=(Transfer(1, 0, 1, (0,), (5,), 100, "t", 0, 0, 20, (0,), (0,)),),
        links=(Link(0, 0, 1, "local"),), sram_capacity_bytes=0)
    verify_schedule(p)
    assert simulate(p).start == {0: 0, 1: 0}


def test_of_several_violations_the_earliest_cycle_is_reported():
    # an early consumer at cycle 39 and a double-booked unit at cycle 41 (busy until 44)
    p = hand_program()
    early = p.instructions[1]._replace(issue=39)
    clash = Instr(3, 1, "vxm", "d", 0, 41, 3, 0, 0, "compute_vxm", ())
    with pytest.raises(ScheduleViolation) as e:
        simulate(dataclasses.replace(p, instructions=(p.instructions[0], early, clash)))
    assert (e.value.chip, e.value.unit, e.value.cycle) == (1, "vxm", 39)
    late = p.instructions[1]._replace(issue=40)
    clash = Instr(3, 1, "vxm", "d", 0, 41, 3, 0, 0, "compute_vxm", ())
    with pytest.raises(ScheduleViolation) as e:
        simulate(dataclasses.replace(p, instructions=(p.instructions[0], late, clash)))
    assert (e.value.chip, e.value.unit, e.value.cycle) == (1, "vxm", 41)
    assert "unit busy until cycle 44" in str(e.value)


def test_kv_slots_hand_computed():
    from lpusim.sim.metrics import kv_slots
    cap = 100
    sram = {0: {"weights": 60, "kv_cache": 10, "activations": 5},   # (100 - 65) // 10 = 3
            1: {"weights": 40, "kv_cache": 20, "activations": 5},   # (100 - 45) // 20 = 2
            2: {"weights": 90, "kv_cache": 0, "activations": 5}}    # no KV: no limit
    assert kv_slots(sram, cap) == 2
    assert kv_slots({0: {"weights": 1}}, cap) == 0


def test_interleaved_serving_is_limited_by_pipeline_or_sram():
    from lpusim import api
    # an 8k window leaves room for few KV caches; a 1k window for more than the pipeline holds
    short = api.run(api.load_scenario("llama-3.1-70b-groqrack-576", {"context": 1024,
                                                                     "context_window": 8192}))
    big = api.run(api.load_scenario("llama-3.1-70b-groqrack-576", {
        "context": 1024, "context_window": 1024}))
    assert short.interleaved_limit == "sram" and big.interleaved_limit == "pipeline"
    assert short.interleaved_steps < big.interleaved_steps
    # every interleaved step keeps the single-user step time
    for r in (short, big):
        assert r.system_tokens_per_second == pytest.approx(
            r.interleaved_steps * r.baseline_tokens_per_second)
    # the pipeline bound: steps spaced by the widest per-stage resource span
    from lpusim.deploy import resolve
    from lpusim.runner import baseline_step
    sc, _ = resolve(api.load_scenario("llama-3.1-70b-groqrack-576", {"context": 1024,
                                                                     "context_window": 1024}))
    m = baseline_step(sc)
    assert big.interleaved_steps == m.latency_cycles // m.initiation_interval_cycles


def test_streaming_consumer_longer_than_its_operand_keeps_its_own_work():
    # the consumer's own 30 cycles outlast the 20-cycle transfer: the path is the hop latency
    # to the first vector, then the consumer's work and fill
    res = simulate(stream_program(5, 30))
    bd = critical_path(res)
    assert res.latency_cycles == 5 + 30 + 1
    assert bd["link_latency"] == 5 and bd["compute_vxm"] == 30 and bd["pipeline_fill"] == 1
    assert bd["link_serialisation"] == 0


def test_simulating_leaves_no_cycles_per_item():
    # entry points pause the cyclic collector: a reference cycle per queue or item would keep
    # every simulated program alive (simpy's Environment itself has a few, once per run)
    import gc
    g = build_decode_graph(load("workloads/llama-3.2-1b.yaml"), GraphParams(context=256))
    prog = compile_program(g, system())
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        simulate(prog)
        found = gc.collect()
    finally:
        if was:
            gc.enable()
    assert len(prog.instructions) > 1000 and found < 100
