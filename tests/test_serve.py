"""Serving: load on a static pipeline, KV paging against reservation, speculation under load,
prefill TTFT, cost per point. Hand-computed on synthetic step metrics, then checked against
compiled steps of small models; the CLI contract last."""

import json
import math
import subprocess
import sys

import pytest

from lpusim import api
from lpusim.config.specs import HeadsSpec, ModelSpec, ScenarioSpec, SpeculationSpec
from lpusim.cost import system_power_watts, usd_per_million_tokens
from lpusim.errors import CapacityError
from lpusim.serve import (
    ServeOptions,
    _resolved,
    _Steps,
    at_load,
    charged_chips,
    frontier_points,
    idle_share,
    kv_pool_tokens,
    no_speculation,
    parse_contexts,
    plans,
    prefill,
    prefill_cycles,
    serve,
    user_grid,
    users_by_kv,
)
from lpusim.sim import StepMetrics
from lpusim.step import step_memory, step_metrics
from tests.helpers import system


def metrics(latency, interval, *, clock=1_000_000, kv=0, weights=0, act=0, capacity=0,
            kv_slots=0):
    return StepMetrics(latency_cycles=latency, clock_hz=clock, chips=2, breakdown_cycles={},
                       unit_busy_cycles={}, link_busy_cycles=0, links_used=0,
                       sram_bytes_per_chip_max=kv + weights + act,
                       sram_bytes_by_category={"weights": weights, "kv_cache": kv,
                                               "activations": act},
                       sram_capacity_bytes=capacity, instructions=0, transfers=0, events=0,
                       fidelity="fast", initiation_interval_cycles=interval,
                       kv_slots=kv_slots)


# ----------------------------------------------------------------------------- hand-computed


def test_two_interleaved_users_on_a_two_stage_pipeline():
    # two stages of 1,000 cycles each: a step takes 2,000 cycles, a second one can start
    # 1,000 cycles later; at 1 MHz one user gets 500 tokens/s
    dep = no_speculation(metrics(2000, 1000), batch=1, max_users=100, chips=2)
    one, two, three = at_load(dep, 1), at_load(dep, 2), at_load(dep, 3)
    assert one.tokens_per_second_per_user == pytest.approx(500.0)
    assert (one.limit, one.load_share) == ("none", 0.5)
    # two users: both keep 500 tokens/s, 1,000 tokens/s in all, and the pipeline is full
    assert two.tokens_per_second_per_user == pytest.approx(500.0)
    assert two.system_tokens_per_second == pytest.approx(1000.0)
    assert two.limit == "pipeline"
    # a third user stretches the schedule to 3 x 1,000 cycles: 333 tokens/s each, same total
    assert three.tokens_per_second_per_user == pytest.approx(1e6 / 3000)
    assert three.system_tokens_per_second == pytest.approx(1000.0)
    assert dep.pipeline_full_tokens_per_second == pytest.approx(1000.0)
    # the frontier stops where system tokens/s stops growing
    pts = frontier_points([dep])
    assert [p.users for _d, p in pts] == [1, 2]
    assert pts[-1][1].limit == "pipeline"


def test_batching_fills_rows_a_group_at_a_time():
    # batch 4: a step of 2,400 cycles serves four users; 10 users make 3 groups
    dep = no_speculation(metrics(2400, 1200), batch=4, max_users=100, chips=2)
    p = at_load(dep, 10)
    assert p.groups == 3 and p.slowdown == pytest.approx(1.5)
    assert p.tokens_per_second_per_user == pytest.approx(1e6 / 2400 / 1.5)


def test_kv_limit_with_paging_against_reservation():
    # per chip: 1,000,000 B usable; weights 500,000 B and activations 10,000 B leave 490,000 B
    # for KV at 100 B per token: 4,900 tokens. The step holds one 4,096-token window.
    m = metrics(1000, 500, kv=409_600, weights=500_000, act=10_000, capacity=1_000_000,
                kv_slots=1)
    pool = kv_pool_tokens(m, batch=1, reserved_tokens=4096)
    assert pool == 4900
    assert users_by_kv(pool, 4096) == 1                       # window reservation
    dist = parse_contexts(1000, window=4096)                  # paged: 1,000 tokens in
    per_user = dist.mean_paged_tokens(page_tokens=64)         # 16 pages of 64 = 1,024
    assert per_user == 1024
    assert users_by_kv(pool, per_user) == 4
    # the pool never leaves the bracket that the exact kv_slots (min over chips) implies
    assert kv_pool_tokens(metrics(1000, 500, kv=409_600, weights=500_000, act=10_000,
                                  capacity=1_000_000, kv_slots=0), 1, 4096) == 4095


def test_context_distributions():
    chat = parse_contexts("chat", 8192)
    assert (chat.mean_tokens, chat.max_tokens) == (1500.5, 2000)
    assert parse_contexts([100, 300], 8192).mean_tokens == 200
    assert parse_contexts("100,300", 8192).mean_tokens == 200
    u = parse_contexts("uniform:1:64", 8192)
    assert u.mean_paged_tokens(64) == 64 and u.mean_tokens == 32.5
    e = parse_contexts("exponential:500", 8192)
    assert e.mean_tokens == pytest.approx(500.5, rel=1e-3)
    for bad, msg in (("uniform:5:1", "LO <= HI"), ("weibull:3", "unknown context"),
                     (9000, "exceeds the deployment's window"), ("1,x", "cannot read"),
                     ("uniform:1:99999999999", "exceeds"), ("exponential:1e400", "finite")):
        with pytest.raises(ValueError, match=msg):
            parse_contexts(bad, 8192)


def test_ttft_of_a_one_stage_prefill():
    # one stage: a chunk's step takes 1,000 cycles and the next chunk can enter only when the
    # stage is free (II = latency): 4 chunks take 4,000 cycles
    assert prefill_cycles(1000, 1000, 4) == 4000
    # under load with half the pipeline idle each later chunk waits twice as long
    assert prefill_cycles(1000, 1000, 4, free_share=0.5) == 7000
    assert idle_share(2, 0.25) == 0.5
    assert idle_share(8, 0.25) == pytest.approx(1 / 9)      # none idle: one more tenant


def test_user_grid():
    assert user_grid(15) == [1, 2, 3, 4, 6, 8, 12, 15]
    assert user_grid(1) == [1]


# ----------------------------------------------------------------------------- compiled steps


def tiny(**kw) -> ModelSpec:
    base = dict(name="tiny", layers=2, hidden_size=640, ffn_size=1280, heads=4, kv_heads=2,
                head_dim=160, vocab_size=3200, max_context=4096,
                speculative_heads=HeadsSpec(count=3))
    base.update(kw)
    return ModelSpec(**base)


def tiny_scenario(chips=2, **kw):
    return ScenarioSpec(name="tiny", model=tiny(), system=system("groqnode-8"), chips=chips,
                        tensor_parallel=1, context=1024,
                        speculation=SpeculationSpec(strategy="heads", acceptance=0.9), **kw)


def test_compiled_two_stage_pipeline_carries_two_users_at_full_speed():
    sc = tiny_scenario()
    m = step_metrics(sc.model, sc.system, chips=2, tp=1, context=1000, context_window=1024)
    assert 2 * m.initiation_interval_cycles <= m.latency_cycles     # two steps fit in flight
    r = serve(sc, ServeOptions(contexts=1000, max_batch=1, ttft_prompts=(), prompt_tokens=64))
    two = next(p for p in r.frontier if p["users"] == 2)
    assert two["tokens_per_second_per_user"] == pytest.approx(m.clock_hz / m.latency_cycles)
    assert two["system_tokens_per_second"] == pytest.approx(2 * m.clock_hz / m.latency_cycles)


def test_compiled_one_stage_prefill_matches_its_steps():
    sc = tiny_scenario(chips=1)
    steps = _Steps(sc, parse_contexts(1000, sc.window), ServeOptions())
    f = prefill(steps, 100)
    cycles, chunk = f.cycles()
    m = step_metrics(sc.model, sc.system, chips=1, tp=1, positions=chunk, context=100 - chunk,
                     context_window=steps.window)
    assert cycles == m.latency_cycles + (math.ceil(100 / chunk) - 1) * \
        m.initiation_interval_cycles
    assert [c for c, _l, _i in f.chunks][:3] == [1, 2, 4]


def test_paging_changes_the_user_count_on_the_default_scenario():
    paged = api.serve(contexts="chat", paged=True, ttft_prompts=())
    window = api.serve(contexts="chat", paged=False, ttft_prompts=())
    top_p, top_w = paged.frontier[-1], window.frontier[-1]
    assert top_w["limit"] == "kv" and top_p["limit"] in ("kv", "pipeline")
    assert top_p["users"] > top_w["users"] >= 1
    assert window.kv_tokens_per_user == window.context_window
    # the window-reserved count is what the compiled step's exact KV slots imply: whole
    # windows of `batch` sequences, plus at most a partly filled batch
    sc, _dep = _resolved(api.load_scenario(), "none")
    steps = _Steps(sc, parse_contexts("chat", sc.window), ServeOptions(paged=False))
    b = top_w["batch"]
    slots = steps.target(b).kv_slots
    assert slots * b <= top_w["users"] < (slots + 1) * b
    assert len(paged.frontier) >= 5 and paged.frontier[0]["users"] == 1
    # cost and energy at every point follow from lpusim.cost, with the deployment's chips and
    # the system's spare nodes pro rata
    chips = paged.deployments["none"]["chips"]
    charged = charged_chips(sc.system, chips)
    assert charged == math.ceil(chips * sc.system.chips / sc.system.active_chips)
    for p in paged.frontier:
        assert p["joules_per_token"] == pytest.approx(
            system_power_watts(sc.system, charged) / p["system_tokens_per_second"])
        assert p["usd_per_million_output_tokens"] == pytest.approx(
            usd_per_million_tokens(sc.system, charged, p["system_tokens_per_second"]))
        assert p["tokens_per_second_per_chip"] == pytest.approx(
            p["system_tokens_per_second"] / chips)


def test_speculation_and_the_pipeline_full_limit():
    """Speculation never commits more tokens per pipeline slot than its verify step has rows,
    so with the pipeline full it cannot beat a no-speculation step of the same rows and the
    same interval. Where it does beat the no-speculation limit, this test checks it is for
    one of two reasons: the no-speculation batch of that many rows does not fit (KV and
    activation buffers grow per sequence; extra verify positions add no KV), or the batch step
    has the longer interval (each sequence of a batch reads its own KV cache; the positions of
    one sequence share it)."""
    sc = tiny_scenario()
    steps = _Steps(sc, parse_contexts(1000, sc.window), ServeOptions(max_batch=16))
    none, _ = plans(steps, "none")
    heads, _ = plans(steps, "heads")
    by_batch = {d.batch: d for d in none}
    assert heads
    explained = 0
    for d in heads:
        w = d.details["verify_width"]
        rows = d.batch * w
        assert d.details["expected_tokens_per_pass"] <= w
        assert d.pipeline_full_tokens_per_second <= rows * d.clock_hz / d.target_interval_cycles
        same_batch = by_batch[d.batch]
        assert d.user_tokens_per_second > same_batch.user_tokens_per_second
        limit = max(x.pipeline_full_tokens_per_second for x in none)
        if d.pipeline_full_tokens_per_second > limit:
            ref = by_batch.get(rows)
            assert ref is None or d.target_interval_cycles < ref.target_interval_cycles
            explained += 1
    assert explained        # on this machine speculation does raise the limit: explained


def test_speculation_under_load_reports_speedup_per_user():
    r = serve(tiny_scenario(), ServeOptions(contexts=1000, max_batch=8, ttft_prompts=(),
                                            prompt_tokens=64, strategies=("heads",)))
    pts = r.speculation["heads"]
    assert pts[0]["users"] == 1 and pts[0]["speedup_per_user"] > 1
    assert all(p["tokens_per_second_per_user"] <= pts[0]["tokens_per_second_per_user"] * 1.000001
               for p in pts)
    sys_tps = [p["system_tokens_per_second"] for p in pts]
    assert sys_tps == sorted(sys_tps)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="session")
def step_cache(tmp_path_factory):
    """An on-disk step cache shared by this session's `lpusim serve` processes (also across
    xdist workers: the parent of a worker's base temp): the first process compiles the
    default scenario's steps, later ones read them (the cache is exact; tested elsewhere)."""
    return tmp_path_factory.getbasetemp().parent / "serve-step-cache"


@pytest.fixture(autouse=True)
def _cache_env(step_cache, monkeypatch):
    monkeypatch.setenv("LPUSIM_CACHE_DIR", str(step_cache))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lpusim.cli", "serve", *args],
                          capture_output=True, text=True)


def test_cli_serve_json_frontier(tmp_path):
    r = _cli("--format", "json", "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    pts = d["frontier"]
    assert len(pts) >= 5 and pts[0]["users"] == 1
    for key in ("users", "tokens_per_second_per_user", "system_tokens_per_second",
                "tokens_per_second_per_chip", "ttft_ms", "joules_per_token",
                "usd_per_million_output_tokens", "limit"):
        assert all(key in p for p in pts), key
    assert d["list_price_usd_per_million_output_tokens"] == 0.99
    assert (tmp_path / "out" / "serving_frontier.png").is_file()
    assert (tmp_path / "out" / "serve.json").is_file()


def test_cli_serve_table_and_csv():
    r = _cli("--format", "csv", "--kv", "window")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("strategy,users,")
    assert "list_price_usd_per_million_output_tokens" in lines[0]
    r = _cli()
    assert r.returncode == 0 and "$0.99 per million output tokens" in r.stdout


@pytest.mark.parametrize("args,flag", [
    (("--strategies", "bogus"), "--strategies"),
    (("--contexts", "uniform:9:1"), "--contexts"),
    (("--page-tokens", "0"), "--page-tokens"),
    (("--prompt-tokens", "99999999"), "--prompt-tokens"),
    (("--kv", "pages"), "--kv"),
])
def test_cli_serve_bad_arguments_exit_2_with_one_line(args, flag):
    r = _cli(*args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and flag in r.stderr


def test_cli_serve_output_checked_before_work(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = _cli("-o", str(f))
    assert r.returncode == 2 and "not a directory" in r.stderr


def test_serve_refuses_a_gpu_server_with_one_line():
    r = _cli("llama-3.1-70b-h100x8")
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "serve: system:" in line and "GPU server" in line and "Traceback" not in r.stderr


@pytest.mark.parametrize("model,sysname,chips,tp,kw", [
    ("llama-3.2-1b", "groqnode-8", 8, 8, {"batch": 4, "context_window": 1500}),
    ("llama-3.2-1b", "groqnode-8", 8, 4, {"positions": 5, "fidelity": "full"}),
    ("llama-3.1-8b", "groqrack-576", 96, 8, {"batch": 2, "context": 3000}),
    ("gemma-2-9b", "groqrack-576", 64, 8, {"context_window": 4096}),
])
def test_a_steps_memory_is_the_sram_of_the_compiled_step(model, sysname, chips, tp, kw):
    """The KV pool is sized from a step's placement alone (`step_memory`): its numbers are
    the compiled step's, in either fidelity."""
    spec, s = api.load_model(model), system(sysname)
    m = step_metrics(spec, s, chips=chips, tp=tp, **kw)
    kw.pop("fidelity", None)
    mem = step_memory(spec, s, chips=chips, tp=tp, **kw)
    assert (mem.sram_bytes_per_chip_max, mem.sram_bytes_by_category, mem.sram_capacity_bytes,
            mem.kv_slots) == (m.sram_bytes_per_chip_max, m.sram_bytes_by_category,
                              m.sram_capacity_bytes, m.kv_slots)
    assert mem.kv_slots > 0 and mem.sram_bytes_by_category["kv_cache"] > 0


def test_a_steps_memory_refuses_what_the_compile_refuses():
    spec, s = api.load_model("llama-3.1-8b"), system("groqrack-576")
    for fn in (step_metrics, step_memory):
        with pytest.raises(CapacityError, match="at least 40 chips would fit"):
            fn(spec, s, chips=16, tp=8)
