"""The GPU backend: hand-computed roofline cases, collectives, capacity, the training point,
speculation and batching through the shared layers, the shipped GPU specs, and compare."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lpusim import api
from lpusim.config import load
from lpusim.config.specs import ModelSpec, PrecisionSpec
from lpusim.errors import CapacityError, ConfigError
from lpusim.gpu.calibrate import TRAINING_ITL_MS, calibrate
from lpusim.gpu.kernels import build_kernels
from lpusim.gpu.step import collective_seconds, gpu_step_metrics, kernel_time
from lpusim.gpu.validate import gpu_rows
from lpusim.graph import GraphParams, build_decode_graph

FP8 = PrecisionSpec(weights="fp8", activations="bf16", kv="fp8", logits="fp32")
# round numbers for hand arithmetic: 1 TB/s HBM at 50%, 1,000 TFLOPS (FP8 and CUDA cores alike)
# at 50%, 100 GB/s NVLink at 50%, 1 us per kernel, 2 us per all-reduce, 10 us per step
ROUND = {
    "chip.hbm.bandwidth_bytes_per_s": "1TB/s",
    "chip.efficiency.hbm.min": 0.5, "chip.efficiency.hbm.value": 0.5,
    "chip.compute.dense_fp8_tflops": 1000.0, "chip.compute.dense_bf16_tflops": 500.0,
    "chip.compute.vector_fp32_tflops": 1000.0,
    "chip.efficiency.compute.value": 0.5,
    "chip.links.nvlink_bandwidth_bytes_per_s": "100GB/s",
    "chip.efficiency.nvlink.value": 0.5,
    "chip.latency.kernel.value_ps": "1us", "chip.latency.allreduce.value_ps": "2us",
    "chip.latency.step.value_ps": "10us",
}


def tiny_model() -> ModelSpec:
    return ModelSpec(name="tiny", layers=2, hidden_size=64, ffn_size=128, heads=4, kv_heads=2,
                     head_dim=16, vocab_size=256, max_context=4096)


def round_system(**extra: object):
    from lpusim.config.load import _Loader, resolve_ref
    return _Loader({**ROUND, **extra}).load_doc(resolve_ref("system", "h100x8"), "system", "")


def kernels_of(batch: int = 1, tp: int = 1, context: int = 100):
    g = build_decode_graph(tiny_model(), GraphParams(batch=batch, context=context,
                                                     precision=FP8))
    ks, cs = build_kernels(g, tp)
    return {k.name: k for k in ks}, cs


def test_fusion_groups_the_layer_into_seven_kernels():
    ks, _ = kernels_of()
    layer = sorted(n for n in ks if n.startswith("L0."))
    # attn_norm alone (its input is the embedding), then residual+norm fused twice
    assert layer == ["L0.attention", "L0.attn_norm", "L0.attn_residual", "L0.down_proj",
                     "L0.ffn_residual", "L0.gate_up_proj", "L0.o_proj", "L0.qkv_proj"]
    assert ks["L0.attn_residual"].ops == ("L0.attn_residual", "L0.ffn_norm")
    assert ks["L0.ffn_residual"].ops == ("L0.ffn_residual", "L1.attn_norm")
    assert "L1.attn_norm" not in ks
    assert ks["L0.attention"].ops == ("L0.rope_q", "L0.rope_k", "L0.kv_append",
                                      "L0.attn_scores", "L0.softmax", "L0.attn_values")


def test_memory_bound_kernel_by_hand():
    """gate+up+SwiGLU at batch 1: 2 x 64 x 128 FP8 weights = 16,384 B; the norm output (64 BF16
    = 128 B) read by both GEMMs, the activation (128 BF16 = 256 B) written once: 16,896 B at
    0.5 TB/s = 33.792 ns, plus the 1 us kernel latency."""
    k = kernels_of()[0]["L0.gate_up_proj"]
    assert (k.weight_bytes, k.act_bytes, k.kv_bytes) == (16_384, 512, 0)
    assert k.fp8_flops == 2 * 2 * 64 * 128
    t = kernel_time(k, round_system().chip)
    assert t.parts["weights"] == pytest.approx(16_384 / 0.5e12)
    assert t.parts["activations"] == pytest.approx(512 / 0.5e12)
    assert t.parts["compute"] == 0.0
    assert t.seconds == pytest.approx(33.792e-9 + 1e-6)


def test_compute_bound_kernel_by_hand():
    """At batch 4,096 on a 1 TFLOPS FP8 GPU (at 50%) the same kernel does 2 x 2 x 4096 x 64 x
    128 = 134,217,728 FP8 FLOPs (268.435 us) and SwiGLU's 4 ops + 1 sigmoid per element on
    4096 x 128 elements on the CUDA cores (2,621,440 at 500 TFLOPS: 5.2 ns), against 2,113,536 B
    at 0.5 TB/s = 4.227 us: compute-bound."""
    k = kernels_of(batch=4096)[0]["L0.gate_up_proj"]
    assert k.fp8_flops == 134_217_728 and k.vector_flops == 5 * 4096 * 128
    assert k.hbm_bytes == 16_384 + 2 * 4096 * 64 * 2 + 4096 * 128 * 2
    t = kernel_time(k, round_system(**{"chip.compute.dense_fp8_tflops": 1.0}).chip)
    comp = 134_217_728 / 0.5e12 + 2_621_440 / 0.5e15
    assert t.seconds == pytest.approx(comp + 1e-6)
    assert t.parts["compute"] == pytest.approx(comp - k.hbm_bytes / 0.5e12)


def test_attention_reads_the_kv_cache_split_by_kv_heads():
    """Context 100 + 1 new token: K and V of 101 tokens x 2 KV heads x 16 dims in FP8 read,
    one token's K and V written; 2-way TP holds one KV head per GPU."""
    one = kernels_of(context=100)[0]["L0.attention"]
    assert one.kv_bytes == 2 * 101 * 2 * 16 + 2 * 2 * 16
    two = kernels_of(context=100, tp=2)[0]["L0.attention"]
    assert two.kv_bytes == one.kv_bytes // 2


def test_tensor_parallel_collectives_and_allreduce_cost():
    """tp=2: an all-reduce after the embedding and after each o_proj and down_proj, an
    all-gather of the logits; an all-reduce of 64 BF16 (128 B) sends 2 x 1/2 x 128 B at
    0.5 x 100 GB/s = 2.56 ns after its 2 us latency."""
    ks, cs = kernels_of(tp=2)
    kinds = [(c.name, c.kind) for c in cs]
    assert kinds == [("embed.allreduce", "allreduce"),
                     ("L0.o_proj.allreduce", "allreduce"),
                     ("L0.down_proj.allreduce", "allreduce"),
                     ("L1.o_proj.allreduce", "allreduce"),
                     ("L1.down_proj.allreduce", "allreduce"),
                     ("lm_head.allgather", "allgather")]
    gpu = round_system().chip
    ar = cs[1]
    assert ar.bytes == 128
    assert collective_seconds(ar, 2, gpu) == pytest.approx(2e-6 + 128 / 50e9)
    ag = cs[-1]
    assert ag.bytes == 256 * 2
    assert collective_seconds(ag, 2, gpu) == pytest.approx(2e-6 + 0.5 * 512 / 50e9)
    # 8-way: the ring's share is 2 x 7/8
    assert collective_seconds(ar, 8, gpu) == pytest.approx(2e-6 + 1.75 * 128 / 50e9)
    assert kernels_of(tp=1)[1] == []


def test_step_is_the_sum_of_its_parts():
    system = round_system()
    m = gpu_step_metrics(tiny_model(), system, chips=2, tp=2, context=100, precision=FP8)
    g = build_decode_graph(tiny_model(), GraphParams(context=100, precision=FP8))
    ks, cs = build_kernels(g, 2)
    expect = sum(kernel_time(k, system.chip).seconds for k in ks) + sum(
        collective_seconds(c, 2, system.chip) for c in cs) + 10e-6
    assert m.latency_us == pytest.approx(expect * 1e6, abs=1e-3)
    assert m.latency_cycles == sum(m.breakdown_cycles.values())
    assert m.breakdown_us["launch_overhead"] == pytest.approx(len(ks), abs=1e-3)
    assert m.breakdown_us["step_overhead"] == pytest.approx(10.0, abs=1e-3)
    assert m.instructions == len(ks) and m.transfers == len(cs) == 6
    assert m.extra["backend"] == "gpu" and m.kv_slots == 0
    assert m.initiation_interval_cycles == m.latency_cycles


def test_memory_per_gpu_by_hand():
    """Weights split 1/tp (replicated norms whole), the KV cache of the window split by KV
    heads, plus the reserved bytes."""
    system = round_system()
    m = gpu_step_metrics(tiny_model(), system, chips=2, tp=2, context=100,
                         context_window=1000, precision=FP8)
    cat = m.sram_bytes_by_category
    assert cat["kv_cache"] == 2 * 1000 * 2 * 1 * 16      # 2 layers x 1000 tokens x K,V x 1 head
    assert cat["reserved"] == system.chip.hbm.reserved_bytes
    assert m.sram_capacity_bytes == 80 * 10**9
    assert m.sram_bytes_per_chip_max == sum(cat.values())


def test_capacity_failure_names_the_gpus_needed():
    """70B in BF16: 141.1 GB of weights. With an 8k window (FP8 KV, 160 KiB a token: 1.3 GB)
    and 4 GB reserved, 1 GPU of 80 GB is short, 2 hold it (74.2 GB each); with the 128k window
    (21.5 GB of KV) 2 GPUs need 85.3 GB each, 4 hold it."""
    for window, need in ((8192, 2), (131072, 4)):
        sc = api.load_scenario("llama-3.1-70b-h100x8", {
            "chips": 1, "precision.weights": "bf16", "context_window": window})
        with pytest.raises(CapacityError) as e:
            api.run(sc)
        assert e.value.min_chips == need
        assert f"at least {need} GPUs would hold it" in str(e.value)
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "run", "--model", "llama-3.1-70b",
                        "--system", "h100x8", "--chips", "1", "--set", "precision.weights=bf16"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    # the default scenario's 128k window: its KV cache needs more GPUs than the weights alone
    assert re.search(r"at least \d+ GPUs would hold it", r.stderr), r.stderr
    assert "Traceback" not in r.stderr


def test_tensor_parallelism_must_divide_the_heads_and_stay_in_a_server():
    with pytest.raises(CapacityError, match="does not divide"):
        api.run(api.load_scenario("llama-3.1-70b-h100x8", {"chips": 3}))
    with pytest.raises(CapacityError, match="NVLink domain"):
        gpu_step_metrics(tiny_model(), round_system(), chips=16, tp=16)


def test_training_point_within_five_percent_and_fit_is_shipped():
    fit = calibrate()
    assert abs(fit.error_percent) < 5
    assert fit.rows[0].hit_bound and fit.rows[0].fitted == fit.rows[0].low
    assert calibrate() == fit                                 # deterministic
    h100 = load("chip_configs/h100-sxm.yaml")
    assert h100.efficiency.hbm.value == pytest.approx(fit.values()[
        "system.chip.efficiency.hbm.value"])
    assert h100.latency.kernel.value_ps == fit.values()["system.chip.latency.kernel.value_ps"]
    rows = gpu_rows()
    assert [r["use"] for r in rows] == ["fit", "prediction"]
    assert abs(rows[0]["error_percent"]) < 5
    assert rows[0]["published"] == pytest.approx(1000 / TRAINING_ITL_MS, abs=0.01)
    assert set(rows[1]) == {"figure", "predicted", "published", "error_percent", "source",
                            "use"}
    assert math.isfinite(rows[1]["predicted"])


def test_h200_and_b200_carry_the_h100_fit():
    h100 = load("chip_configs/h100-sxm.yaml")
    for name in ("h200", "b200"):
        g = load(f"chip_configs/{name}.yaml")
        assert g.efficiency == h100.efficiency and g.latency == h100.latency, name


def test_batch_and_speculation_on_gpus():
    base = api.run("llama-3.1-70b-h100x8")
    b8 = api.run(api.load_scenario("llama-3.1-70b-h100x8", {"batch": 8}))
    assert b8.tokens_per_second < base.tokens_per_second
    assert b8.throughput_tokens_per_second > 4 * base.tokens_per_second
    spec = api.run(api.load_scenario("llama-3.1-70b-h100x8", {
        "speculation.strategy": "draft", "speculation.draft_model": "llama-3.2-1b",
        "speculation.acceptance": 0.8}))
    s = spec.speculation
    assert s is not None and spec.tokens_per_second > base.tokens_per_second
    assert s["draft_chips"] == 0 and s["total_chips"] == 8      # the drafter shares the GPUs
    assert s["overhead_us"] == 0.0 and 0 < s["cost_ratio"] < 1
    medusa = api.run("llama-3.1-70b-medusa-h200x8")
    assert medusa.speculation is not None and medusa.speedup > 1
    with pytest.raises(ConfigError, match="shares the target"):
        api.run(api.load_scenario("llama-3.1-70b-h100x8", {
            "speculation.strategy": "async", "speculation.draft_model": "llama-3.2-1b"}))


def test_run_cli_prints_tokens_breakdown_and_memory_with_chips():
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "run", "--model", "llama-3.1-70b",
                        "--system", "h100x8", "--chips", "4", "--format", "json"],
                       capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    assert d["chips"] == 4 and d["tensor_parallel"] == 4 and d["tokens_per_second"] > 0
    for k in ("weights", "kv_cache", "collectives", "launch_overhead", "compute"):
        assert k in d["breakdown_us"]
    assert 0 < d["sram_bytes_per_chip_max"] <= d["sram_capacity_bytes_per_chip"] == 80 * 10**9
    assert d["sram_bytes_by_category"]["weights"] > 10**10


def test_bad_gpu_yaml_names_file_line_and_field(tmp_path):
    src = Path("chip_configs/h100-sxm.yaml").read_text()
    bad = tmp_path / "gpu.yaml"
    bad.write_text(src.replace("    value: 0.75 ", "    value: 0.5  ", 1))
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "validate", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1)
                if t.startswith("    value: 0.5"))
    assert f"{bad}:{line}:" in r.stderr
    assert "efficiency.hbm.value: 0.5 is outside its bounds [0.75, 0.92]" in r.stderr
    bad.write_text(src.replace("capacity_bytes: 80GB", "capacity_bytes: 80GHz"))
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "validate", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "hbm.capacity_bytes:" in r.stderr


def test_compare_lpu_and_gpu_in_one_table():
    r = subprocess.run([sys.executable, "-m", "lpusim.cli", "compare",
                        "llama-3.1-70b-groqrack-576", "llama-3.1-70b-h100x8", "--format",
                        "json"], capture_output=True, text=True, check=True)
    rows = json.loads(r.stdout)
    assert [x["scenario"] for x in rows] == ["llama-3.1-70b-groqrack-576",
                                            "llama-3.1-70b-h100x8"]
    lpu, gpu = rows
    assert gpu["chips"] == 8 and lpu["chips"] >= 512       # 576 installed, spares excluded
    for x in rows:
        assert x["tokens_per_second"] > 0
        assert x["tokens_per_second_per_chip"] == pytest.approx(
            x["tokens_per_second"] / x["total_chips"])
        assert x["power_kw"] > 0 and x["usd_per_million_tokens"] > 0
    # 8 x 700 W + 4.6 kW host, x 1.3 PUE
    assert gpu["power_kw"] == pytest.approx((8 * 700 + 4600) * 1.3 / 1000)
    table = subprocess.run([sys.executable, "-m", "lpusim.cli", "compare",
                            "llama-3.1-70b-groqrack-576", "llama-3.1-70b-h100x8"],
                           capture_output=True, text=True, check=True).stdout
    assert "GroqChip1" in table and "H100" in table     # one table, both columns
    for label in ("tokens per second per chip", "usd per million tokens", "launch overhead",
                  "stage deskew"):
        assert label in table, label


def test_shipped_gpu_scenarios_run():
    for name in ("llama-3.1-8b-h100x8", "llama-3.3-70b-nim-h100x2"):
        r = api.run(name)
        assert r.tokens_per_second > 0 and r.chip.startswith("NVIDIA")
    b = api.run(api.load_scenario("llama-3.1-70b-h100x8", {"system": "b200x8"}))
    assert b.tokens_per_second > api.run("llama-3.1-70b-h100x8").tokens_per_second
    d = api.describe("chip_configs/h100x8.yaml")
    assert d["kind"] == "gpu_system" and d["derived"]["gpus"] == 8


def test_pipeline_stages_hand_off_over_nvlink_or_the_scale_out_network():
    """16 GPUs of two servers at tp 8: two stages, the hand-off and the token's return cross
    servers, 64 BF16 values (128 B) each at 400 Gb/s after the 5 us scale-out latency; 8 GPUs
    at tp 4: both inside the server, at 0.5 x 100 GB/s after the 2 us collective latency."""
    model = ModelSpec(name="tiny8", layers=2, hidden_size=64, ffn_size=128, heads=8,
                      kv_heads=2, head_dim=8, vocab_size=256, max_context=4096)
    two = round_system(**{"topology.nodes": 2})
    m = gpu_step_metrics(model, two, chips=16, tp=8, context=100, precision=FP8)
    assert m.extra["pipeline_stages"] == 2
    assert m.breakdown_us["pipeline"] == pytest.approx(2 * (5 + 128 / 50e9 * 1e6), abs=1e-3)
    one = gpu_step_metrics(model, round_system(), chips=8, tp=4, context=100, precision=FP8)
    assert one.breakdown_us["pipeline"] == pytest.approx(2 * (2 + 128 / 50e9 * 1e6), abs=1e-3)
    flat = gpu_step_metrics(model, round_system(), chips=4, tp=4, context=100, precision=FP8)
    # same kernels and collectives on each GPU group, half the weights per GPU
    assert one.latency_us - one.breakdown_us["pipeline"] == pytest.approx(flat.latency_us,
                                                                          abs=1e-3)
    assert one.sram_bytes_by_category["weights"] < flat.sram_bytes_by_category["weights"]


def test_report_draws_lpu_and_gpu_breakdowns_side_by_side(tmp_path):
    lpu, gpu = api.run("llama-3.1-70b-groqrack-576"), api.run("llama-3.1-70b-h100x8")
    out = api.plot_breakdown([lpu, gpu], tmp_path)
    s = out["series"]
    assert s["launch_overhead"][0] == 0 and s["launch_overhead"][1] > 0
    assert s["weights"][1] == pytest.approx(gpu.breakdown_us["weights"])
    assert any(v[0] > 0 for k, v in s.items() if k in lpu.breakdown_us)
    assert (tmp_path / "latency_breakdown.png").is_file()
