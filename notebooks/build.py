"""Writes the what-if notebooks, executed, with their outputs (plots included), so that they
read on a code host without running anything.

Run from the repository root: `python notebooks/build.py [OUTDIR] [--no-execute]` (default:
notebooks/). Edit the cells here, not in the .ipynb files, so that the notebooks stay
reviewable as code. `tests/test_notebooks.py` checks that the committed notebooks have this
script's cells, that they were executed, and executes them again: every notebook draws at
least one plot and asserts what it shows, so a wrong number fails the test.
"""

import json
import sys
from pathlib import Path

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = Path(ARGS[0]) if ARGS else Path(__file__).parent
EXECUTE = "--no-execute" not in sys.argv[1:]


def execute(path):
    """Run a notebook in place (nbclient, a fresh kernel in the notebook's directory); no
    timing metadata, so that a rebuild only changes what the cells print and draw."""
    import os

    import nbclient
    import nbformat
    # the kernel imports this checkout's lpusim, whatever else is installed
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get(
        "PYTHONPATH")])])
    book = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(book, timeout=900, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    for cell in book.cells:
        cell.get("metadata", {}).pop("execution", None)
    text = json.dumps(book, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    Path(path).write_text(text)


def nb(cells, path):
    out = {"cells": [], "metadata": {"kernelspec": {"display_name": "Python 3",
                                                    "language": "python", "name": "python3"},
                                     "language_info": {"name": "python"}},
           "nbformat": 4, "nbformat_minor": 5}
    for i, (kind, src) in enumerate(cells):
        c = {"cell_type": kind, "id": f"c{i}", "metadata": {}, "source": src.strip("\n")}
        if kind == "code":
            c["outputs"] = []
            c["execution_count"] = None
        out["cells"].append(c)
    dest = OUT / Path(path).name
    with open(dest, "w") as f:
        f.write(json.dumps(out, indent=1, sort_keys=True) + "\n")
    if EXECUTE:
        execute(dest)


M, C = "markdown", "code"
nb([
(M, """# 1. From 250 to ~1,660 tokens/s: what speculative decoding takes on an LPU

In November 2024 Groq served Llama 3.1 70B at 250 output tokens/s per user on 576 GroqChip1 chips, then at ~1,660 tokens/s with speculative decoding on the same chips. This study asks lpusim what drafter and acceptance rate that would take.

lpusim's one fitted constant (a fixed cost per collective) was fitted jointly on three published deployments without speculation: Llama 3.1 70B at 250, Llama 3 8B at 1,250 and Llama 3.2 1B at 3,100 tokens/s (`lpusim calibrate`, docs/validation.md). Everything with speculation below is a prediction."""),
(C, """from lpusim import api

base = api.run(api.load_scenario())
print(f"baseline: {base.tokens_per_second:.0f} tokens/s per user, "
      f"{base.step_latency_us:.0f} us per token on {base.chips} chips in {base.stages} stages")
{k: round(v) for k, v in base.breakdown_us.items()}"""),
(M, """The breakdown is the critical path of the simulated step. At batch 1 the matrix units read each chip's ~110 MB of weights in a few microseconds per layer; the token time is the chain of pipeline stages, the fixed cost of every collective on the way (the fitted mechanism) and their links.

Now speculation with Llama 3.2 1B as the drafter on one extra node. For each acceptance rate lpusim compiles the drafter's step and the target's verification pass at every width gamma+1 and keeps the best gamma."""),
(C, """rows = []
for a in (0.7, 0.8, 0.85, 0.9, 0.95):
    r = api.run(api.load_scenario("llama-3.1-70b-specdec",
                                  {"speculation.acceptance": a, "speculation.max_gamma": 16,
                                   "speculation.monte_carlo_passes": 20000}))
    s = r.speculation
    rows.append({"acceptance": a, "gamma": s["gamma"], "E[tokens/pass]": round(s["expected_tokens_per_pass"], 2),
                 "verify/step": round(s["verify_cost_ratio"], 2), "draft/step": round(s["cost_ratio"], 3),
                 "tokens/s": round(r.tokens_per_second), "speedup": round(r.speedup, 2)})
for row in rows:
    print(row)
# what the table shows: more acceptance, more tokens/s, and speculation always pays here
assert all(x["tokens/s"] < y["tokens/s"] for x, y in zip(rows, rows[1:]))
assert all(row["speedup"] > 1 for row in rows)"""),
(M, """The drafter pays the same fixed cost per collective as the target, so its step is about a tenth of the target's; verification is cheap: checking 17 positions costs little more than one token, because the weights are read once whatever the width. What grows is the softmax over the 8k context and the wider all-gathers and hand-offs. The gamma curve shows the trade-off directly."""),
(C, """import tempfile
r = api.run(api.load_scenario("llama-3.1-70b-specdec", {"speculation.acceptance": 0.9, "speculation.max_gamma": 24,
                                                        "speculation.curve": "every",  # every gamma, not only the searched ones
                                                        "speculation.monte_carlo_passes": 20000}))
out = tempfile.mkdtemp()
series = api.plot_gamma_curve(r, out)["series"]
# the marked optimum is the highest point of the curve
best = max(range(len(series["gamma"])), key=lambda i: series["tokens_per_second"][i])
assert series["optimum"] == series["gamma"][best] == r.speculation["gamma"]
from IPython.display import Image
Image(filename=f"{out}/tokens_vs_gamma.png")"""),
(M, """Which drafter? A bigger drafter accepts more often but drafts slower. Compare Llama 3.2 1B and 3B at acceptance rates a bigger model might plausibly add (an assumption, not a measurement)."""),
(C, """for draft, a in (("llama-3.2-1b", 0.85), ("llama-3.2-3b", 0.9)):
    r = api.run(api.load_scenario("llama-3.1-70b-specdec",
                                  {"speculation.draft_model": draft, "speculation.acceptance": a,
                                   "speculation.max_gamma": 16, "speculation.monte_carlo_passes": 20000}))
    s = r.speculation
    print(f"{draft}: {s['draft_chips']} chips, draft step {s['draft_step_us']:.0f} us, gamma {s['gamma']}, "
          f"{r.tokens_per_second:.0f} tokens/s ({r.speedup:.2f}x)")"""),
(M, """## Two ways to schedule the drafter

Draft-then-verify waits: gamma draft steps, then one verification pass through all the stages. But at batch 1 each stage is busy for only a small slice of a step, so the target pipeline could carry many runs at once. *Continuous asynchronous speculation* (PipeInfer, Butler et al. 2024; strategy `async`) lets the drafter run without waiting and sends each drafted token into the target as soon as it exists; a wrong guess cancels the runs behind it. lpusim spaces runs by the target's initiation interval (the widest span over which one unit or link is busy) and evaluates the renewal process in closed form and by Monte Carlo."""),
(C, """for a in (0.8, 0.85, 0.9, 0.95):
    out = {}
    for strategy in ("draft", "async"):
        r = api.run(api.load_scenario("llama-3.1-70b-specdec", {"speculation.acceptance": a, "speculation.strategy": strategy,
                                                                "speculation.max_gamma": 16, "speculation.monte_carlo_passes": 20000}))
        out[strategy] = r
    s = out["async"].speculation
    print(f"a = {a}: draft-then-verify {out['draft'].tokens_per_second:5.0f} tokens/s, async {out['async'].tokens_per_second:5.0f} tokens/s "
          f"(window {s['gamma']}, {s['async']['runs_in_flight']:.0f} runs in flight, {s['async']['runs_launched_per_token']:.1f} target runs per token)")"""),
(M, """Asynchronous speculation is faster at every acceptance, at the price of many cancelled target runs (energy, not time, on a machine that is otherwise idle). Which one matches Groq? Two published figures help: ~1,660 tokens/s on the benchmark prompts and a reported ~2,500 tokens/s on text the models know by heart. `lpusim validate-published` finds the acceptance each strategy needs for 1,660 and what each predicts for near-verbatim text (a = 0.98)."""),
(C, """from lpusim import calibrate
rows = [r for r in calibrate.validate_published() if r["published"] in (1660.0, 2500.0) or r["use"] == "inference"]
for row in rows:
    pub = "" if row["published"] is None else f"  published {row['published']:,.0f}"
    pred = "unreachable" if row["predicted"] is None else f"{row['predicted']:,.4g}"
    print(f"{row['figure'][:95]:95s} {pred:>11s}{pub}")"""),
(M, """**Reading.** With the acceptance published for ~1B drafters on chat traffic (0.71, preset `drafter-1b-chat`) neither schedule reaches 1,660 tokens/s, and neither do heads with EAGLE's measured trees (verifying 61 positions is link-bound). Asynchronous speculation reaches 1,660 at a constant acceptance of about 0.9 and then predicts about 2,500 on near-verbatim text (a = 0.98); draft-then-verify would need a ≈ 0.98. `docs/validation.md` states what each reading implies."""),
], "notebooks/01_specdec_70b.ipynb")

nb([
(M, """# 2. What if the hardware changed? SRAM, links, clock, and a next-generation chip

The default scenario, Llama 3.1 70B on 576 GroqChip1 chips, with one thing changed at a time. Overrides are dotted paths into the scenario and the files it references, validated like the files themselves."""),
(C, """from lpusim import api

def tps(overrides=None, scenario="llama-3.1-70b-groqrack-576"):
    return api.run(api.load_scenario(scenario, overrides or {})).tokens_per_second

base = tps()
cases = {
    "clock 1.2 GHz": {"system.chip.clock_hz": "1.2GHz"},
    "links 4x faster": {"system.chip.c2c.lane_rate_bytes_per_s": "120Gbps"},
    "hop latency halved": {"system.links.local_hop_latency_ps": "120ns", "system.links.global_hop_latency_ps": "300ns"},
    "collective latency halved": {"system.sync.collective_latency_ps": f"{api.load_system('groqrack-576').sync.collective_latency_ps // 2}ps"},
    "2x weight feed to the MXM": {"system.chip.mxm.weight_load_streams": 16},
}
print(f"baseline {base:.0f} tokens/s")
gains = {}
for name, ov in cases.items():
    t = tps(ov)
    gains[name] = t / base
    print(f"{name:28s} {t:7.0f} tokens/s  ({t / base:.2f}x)")

import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6.5, 3))
ax.barh(list(gains), list(gains.values()), color="#4C72B0")
ax.axvline(1, color="black", lw=0.8)
ax.set_xlabel("tokens/s per user relative to the baseline (x)")
ax.set_title("One change at a time: Llama 3.1 70B on 576 GroqChip1 chips", fontsize=10)
plt.show()
# what the chart shows: every change helps; the feed of weights and window KV into the MXM
# and the fixed cost per collective are the two levers that matter
assert all(g > 1 for g in gains.values())
assert set(sorted(gains, key=gains.get)[-2:]) == {'collective latency halved', '2x weight feed to the MXM'}"""),
(M, """Two parts dominate the baseline: the MXM's feed of weights and of the 128k window's KV cache (attention is compiled for the whole window), and the fixed cost per collective (fitted on three published deployments, see docs/validation.md). Doubling the one or halving the other is worth more than any other change here; faster links barely matter at batch 1, because the messages are small. Doubling SRAM per chip instead changes the *placement*: fewer chips hold the model, so the pipeline gets shorter."""),
(C, """g1 = api.load_chip("groqchip1")
for name, ov in (("GroqChip1 (230 MB)", {}), ("2x SRAM (460 MB)", {"mem.slice_capacity_bytes": "5MiB"})):
    import dataclasses
    chip = dataclasses.replace(g1, mem=dataclasses.replace(g1.mem, slice_capacity_bytes=g1.mem.slice_capacity_bytes * (2 if ov else 1)))
    p = api.plan(api.load_model("llama-3.1-70b"), chip)
    print(f"{name}: minimum {p['min_chips']} chips in {p['stages']} stages")"""),
(C, """# the same model at an 8k window on fewer chips of the rack: fewer stages, more layers each
for chips in (336, 432, 576):
    r = api.run(api.load_scenario("llama-3.1-70b-groqrack-576", {"chips": chips, "context_window": 8192}))
    print(f"{chips} chips: {r.stages} stages, {r.tokens_per_second:.0f} tokens/s, max SRAM per chip {r.sram_bytes_per_chip_max / 1e6:.0f} MB")"""),
(M, """A next-generation chip: the LP30 what-if (500 MB SRAM, 150 TB/s, 96 x 112 Gb/s links; its microarchitecture is assumed, see `chip_configs/groq3-lp30.yaml`)."""),
(C, """lp30 = api.load_chip("groq3-lp30")
p = api.plan(api.load_model("llama-3.1-70b"), lp30)
print(f"LP30 needs {p['min_chips']} chips for Llama 3.1 70B")
r = api.run(api.load_scenario("llama-3.1-70b-groqrack-576", {"system.chip": "groq3-lp30", "chips": p["recommended_chips"], "context_window": 8192}))
print(f"on {r.chips} LP30 chips: {r.tokens_per_second:.0f} tokens/s per user ({r.stages} stages)")"""),
(M, """The fitted collective latency was calibrated on GroqChip1 deployments and is kept for the LP30 run: a what-if, not a prediction of the real product."""),
], "notebooks/02_hardware_whatif.ipynb")

nb([
(M, """# 3. How many chips for which model, at what speed?

`api.plan` finds the fewest chips whose SRAM holds weights, KV cache (for the context and batch) and activation buffers, placing whole layers per pipeline stage; when one layer does not fit a node, tensor parallelism grows to several nodes."""),
(C, """from lpusim import api

chip = api.load_chip("groqchip1")
for m in ("llama-3.2-1b", "llama-3.1-8b", "mixtral-8x7b", "llama-3.1-70b", "llama-3.1-405b"):
    model = api.load_model(m)
    p = api.plan(model, chip, context=8192)
    print(f"{model.name:16s} {model.total_params / 1e9:7.2f} B params  {p['weight_bytes'] / 1e9:7.1f} GB  "
          f"tp {p['tensor_parallel']:2d}  min {p['min_chips']:5d} chips  -> {p['recommended_racks']} racks")"""),
(M, """Context length costs SRAM too: the KV cache grows linearly with it."""),
(C, """model = api.load_model("llama-3.1-70b")
contexts = (2048, 8192, 32768, 131072)
need = []
for ctx in contexts:
    p = api.plan(model, chip, context=ctx)
    need.append(p["min_chips"])
    print(f"context {ctx:6d}: {p['min_chips']} chips, KV cache {p['sram_per_stage'][1]['kv_cache'] / 1e6:.1f} MB per chip")

import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(contexts, need, marker="o")
ax.set_xscale("log", base=2)
ax.set_xlabel("context (tokens, log scale)")
ax.set_ylabel("minimum GroqChip1 chips")
ax.set_title("Llama 3.1 70B: chips needed grow with the context", fontsize=10)
plt.show()
# what the plot shows: a longer context never needs fewer chips, and 128k needs more than 2k
assert all(a <= b for a, b in zip(need, need[1:])) and need[-1] > need[0]"""),
(M, """Speed at a given size: tokens/s per user for each model on the smallest whole-node system that holds it (the 576-chip rack's constants)."""),
(C, """for m in ("llama-3.2-1b", "llama-3.1-8b", "mixtral-8x7b", "llama-3.1-70b"):
    model = api.load_model(m)
    p = api.plan(model, chip, context=8192)
    sc = api.load_scenario("llama-3.1-70b-groqrack-576", {"model": m, "chips": p["recommended_chips"], "context_window": 8192})
    r = api.run(sc)
    print(f"{model.name:16s} on {r.chips:4d} chips: {r.tokens_per_second:6.0f} tokens/s per user, {r.stages} stages")"""),
(M, """Serving many users. At batch 1 each pipeline stage is busy for only a small slice of a step, so independent users' decode steps can follow each other through the static pipeline, spaced by its initiation interval. Each needs its own KV cache, and on an SRAM-only machine that is the binding limit at long contexts. lpusim reports how many fit, what limits them, and their total tokens/s (without speculation)."""),
(C, """for ctx in (1024, 4096, 8192):
    for label, slice_bytes in (("230 MB", "2.5MiB"), ("2x SRAM", "5MiB")):
        r = api.run(api.load_scenario("llama-3.1-70b-groqrack-576",
                                      {"context": ctx, "context_window": ctx, "system.chip.mem.slice_capacity_bytes": slice_bytes}))
        print(f"context {ctx:5d}, {label:8s}: {r.interleaved_steps:3d} users at {r.tokens_per_second:.0f} tokens/s each "
              f"(limit: {r.interleaved_limit}), {r.system_tokens_per_second:8,.0f} tokens/s in total")"""),
(M, """Llama 3.1 405B needs 2,048 chips at tensor parallelism 16; `workloads/scenarios/llama-3.1-405b-groqrack-2304.yaml` runs it (a few seconds a step, because stages spanning two nodes end at slightly different times on different chips and are simulated in full; their all-reduces are hierarchical: inside each node, then one exchange between the nodes)."""),
], "notebooks/03_capacity_planning.ipynb")

nb([
(M, """# 4. Choosing gamma and the drafter when acceptance depends on the task

Acceptance is not one number: it decays with position for some drafters, and it is bursty (easy and hard stretches) on real text. lpusim's acceptance models: a constant, a per-position vector, a mixture of tasks, or a recorded trace. Presets carry their sources."""),
(C, """from lpusim import api
for name, source in api.acceptance_presets().items():
    print(f"{name:34s} {source[:90]}")"""),
(M, """Textbook first (Leviathan et al. 2023): speedup at cost ratio c = 0.02 for each model of acceptance. A bursty 50/50 mixture of 0.95 and 0.55 commits more tokens per pass than a flat 0.75 with the same mean, because the expected tokens are convex in a."""),
(C, """import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6.5, 3.5))
gammas = range(1, 17)
expected = {}
for name in ("flat-0.75", "bursty-mix", "eagle1-llama2-70b-mtbench", "leviathan-0.9"):
    acc = api.acceptance(name)
    g, s = api.textbook_optimum(acc, 0.02, max_gamma=32)
    expected[name] = [acc.expected_tokens(k) for k in gammas]
    ax.plot(gammas, expected[name], marker="o", ms=3, label=name)
    print(f"{name:28s} E(gamma=7) = {acc.expected_tokens(7):.2f}   best gamma {g:2d}: {s:.2f}x")
ax.set_xlabel("gamma (drafted tokens per pass)")
ax.set_ylabel("expected tokens committed per pass")
ax.legend(fontsize=8)
plt.show()
# what the plot shows: the bursty mixture commits more per pass than the flat rate of the
# same mean at every gamma above 1 (the expected tokens are convex in a)
assert all(b > f for b, f in zip(expected["bursty-mix"][1:], expected["flat-0.75"][1:]))"""),
(M, """Now on the simulated machine: the same acceptance models with the real drafter and verification costs of Llama 3.1 70B on 576 chips."""),
(C, """for acc in ("flat-0.75", "bursty-mix", "eagle1-llama2-70b-mtbench", "mix:0.3@0.95,0.7@0.7"):
    r = api.run(api.load_scenario("llama-3.1-70b-specdec", {"speculation.acceptance": acc, "speculation.max_gamma": 12,
                                                            "speculation.monte_carlo_passes": 20000}))
    s = r.speculation
    print(f"{acc:28s} gamma {s['gamma']:2d}  E {s['expected_tokens_per_pass']:.2f}  {r.tokens_per_second:5.0f} tokens/s  "
          f"p50 {s['p50_token_latency_us']:.0f} us  p99 {s['p99_token_latency_us']:.0f} us")"""),
(M, """Per-token latency is not smooth under speculation: tokens arrive in bursts, one pass at a time. The Monte Carlo (seeded) gives the distribution; p99 is the pass time when a pass commits a single token.

Heads instead of a drafter: Medusa-style heads on the target need no extra chips, but every pass is a full target step at width K+1."""),
(C, """for k in (2, 3, 4):
    r = api.run(api.load_scenario("llama-3.1-70b-groqrack-576", {"speculation": {"strategy": "heads", "heads": k,
                                  "acceptance": "eagle1-llama2-70b-mtbench", "monte_carlo_passes": 20000}}))
    s = r.speculation
    print(f"{k} heads: gamma {s['gamma']}, {r.tokens_per_second:.0f} tokens/s ({r.speedup:.2f}x), verify/step {s['verify_cost_ratio']:.2f}")"""),
(M, """Break-even: the acceptance below which speculation loses, for the chosen gamma and the simulated costs, is part of every result (`speculation.break_even_acceptance`)."""),
(C, """r = api.run(api.load_scenario("llama-3.1-70b-specdec", {"speculation.monte_carlo_passes": 20000}))
print(f"gamma {r.speculation['gamma']}: speculation pays off above a = {r.speculation['break_even_acceptance']:.3f}")"""),
], "notebooks/04_gamma_and_drafter.ipynb")

nb([
(M, """# 5. Serving Llama 3.1 70B on 576 chips: users, speed, cost

At batch 1 the 576-chip system keeps its matrix units busy well under 1% of the time. A cloud that sells tokens serves many users at once. This notebook asks lpusim the operator's question: how many users can one system carry, at what speed each, how long the first token takes, and what a token costs in joules and dollars, with and without speculation.

How `lpusim.serve` models it: users are served in groups (a batch: rows through the MXM); the groups' decode steps are interleaved in the static pipeline one initiation interval apart, so each keeps its own step time until the pipeline's slots run out. Every user keeps its KV cache in SRAM beside the weights, paged (each user holds its context) or as a whole reserved window. Step times, intervals and SRAM come from compiled and simulated steps; power and prices are the system file's `power:` and `cost:` inputs (mostly marked `assumption`)."""),
(C, """from lpusim import api

# the 8k-window deployment of Groq's speculative endpoint, so that with and without speculation share the window
base = api.serve("llama-3.1-70b-specdec", contexts="chat", paged=True, ttft_prompts=[128, 1000, 4096])
cols = ("users", "batch", "tokens_per_second_per_user", "system_tokens_per_second", "tokens_per_second_per_chip",
        "ttft_ms", "joules_per_token", "usd_per_million_output_tokens", "limit")
def show(points):
    for p in points:
        print("  ".join(f"{k}={p[k]:.4g}" if isinstance(p[k], float) else f"{k}={p[k]}" for k in cols))
print(f"{base.deployments['none']['chips']} chips, {base.context_window}-token window; traffic: {base.contexts['label']}, "
      f"{base.kv_tokens_per_user:.0f} KV tokens per user (paged)")
show(base.frontier)"""),
(M, """Each user keeps the step's full speed until the pipeline's slots run out. The last point's `limit` says what stops the next one: the KV cache (`kv`: the 70B model's 8-bit weights fill most of every chip's SRAM, and what is left holds a limited number of sequences' KV caches; the pool, printed below, is counted in tokens of context) or the pipeline's slots (`pipeline`: more users only slow everyone). Reserving the whole 8k window per user instead of paging leaves room for far fewer users:"""),
(C, """lim = base.limits["none"]
print(f"KV pool: {lim['kv_pool_tokens']} tokens of context in all; the pipeline has {lim['slots_in_flight']} slots for batch-1 steps")
window = api.serve("llama-3.1-70b-specdec", contexts="chat", paged=False, ttft_prompts=[])
print(f"paged KV: {base.frontier[-1]['users']} users; window reservation: {window.frontier[-1]['users']} users")
print("last paged point:", base.frontier[-1]["limit"], "- pipeline share in use", round(base.frontier[-1]["pipeline_share"], 3))"""),
(M, """Time to first token: a prompt is prefilled in chunks, each a compiled step with that many positions, entering the pipeline one interval apart. The chunk is bounded by the SRAM left beside weights and KV, so on this system chunks stay small."""),
(C, """for t in base.ttft:
    print(f"{t['prompt_tokens']:5d}-token prompt: {t['ttft_ms']:.1f} ms idle (chunk {t['chunk']}), "
          f"{t['ttft_ms_at_max_load']:.1f} ms with {t['users_at_max_load']} users decoding")
print("chunk bound:", base.prefill_chunk_bound[:110])"""),
(M, """Speculation under load: the drafter (Llama 3.2 1B on one extra node, acceptance 0.9 as in the specdec scenario) serves every user too, and each verification pass takes a pipeline slot. `async` keeps many runs of one user in the target pipeline at once; Medusa-style heads need no drafter."""),
(C, """spec = api.serve("llama-3.1-70b-specdec", contexts="chat", strategies=["draft", "async"], ttft_prompts=[])
heads = api.serve(api.load_scenario("llama-3.1-70b-specdec", {"speculation.strategy": "heads", "speculation.heads": 4}),
                  contexts="chat", strategies=["heads"], ttft_prompts=[])
lines = {**spec.speculation, **heads.speculation}
for name, pts in lines.items():
    print(f"{name}: " + ", ".join(f"{p['users']} users {p['tokens_per_second_per_user']:.0f}/s ({p['speedup_per_user']:.1f}x, {p['limit']})"
                                  for p in pts))"""),
(C, """import tempfile
from IPython.display import Image
data = base.to_dict()
data["speculation"] = lines
out = tempfile.mkdtemp()
plot = api.plot_frontier(data, out)
Image(filename=f"{out}/serving_frontier.png")"""),
(M, """What the frontier shows, checked: paging carries several times the users of window reservation, which the KV cache stops early; without speculation the paged system stops at its KV pool or its pipeline slots, with every user near the one-user speed; with speculation each user is faster and the system delivers more tokens/s at the same number of users."""),
(C, """last = base.frontier[-1]
assert window.frontier[-1]["limit"] == "kv" and last["limit"] in ("kv", "pipeline")
assert last["users"] > 2 * window.frontier[-1]["users"]
assert last["tokens_per_second_per_user"] > 0.8 * base.frontier[0]["tokens_per_second_per_user"]
for name, pts in lines.items():
    first = pts[0]
    assert first["users"] == 1 and first["speedup_per_user"] > 1, name
    assert first["system_tokens_per_second"] > base.frontier[0]["system_tokens_per_second"], name
print("checked")"""),
(M, """Cost: J/token and $ per million output tokens fall as users share the fixed power and capex of the system. The list price of Groq's speculative endpoint is printed beside it as a comparison, never a fit: a price carries margin and a utilisation lpusim does not know, and the power and capex inputs here are assumptions."""),
(C, """for name, pts in {"none": base.frontier, **lines}.items():
    p = max(pts, key=lambda q: q["system_tokens_per_second"])
    print(f"{name:6s} at {p['users']:3d} users: {p['system_tokens_per_second']:8.0f} tokens/s, {p['joules_per_token']:6.1f} J/token, "
          f"${p['usd_per_million_output_tokens']:.2f} per million output tokens")
print(f"comparison: ${base.list_price_usd_per_million_output_tokens} ({base.list_price_source})")"""),
], "notebooks/05_serving_70b.ipynb")
