"""Serving many users on one deployment: per-user speed against system throughput, time to
first token, energy and cost per token, with and without speculation.

A layer above speculation and below report/cli. Every step time, initiation interval and SRAM
footprint comes from a compiled and simulated step (`lpusim.step.step_metrics`); this module
only combines them. What is modelled:

- **Groups and slots.** Users are served in groups of `batch` (rows through the MXM: a step
  compiled at that batch). A group has one step in flight at a time (decode is sequential);
  independent groups' steps are interleaved in the static pipeline, spaced by at least its
  initiation interval II, so they never share a unit or link and each keeps its uncontended
  step time. One group uses a share II / T of the pipeline's issue slots, where T is its own
  time between steps (the step latency without speculation). With n groups the schedule
  stretches by max(1, n x share): beyond that point (`pipeline`) more users only slow everyone
  and the system delivers its pipeline-full limit, tokens per step x clock / II.
- **KV capacity.** Every user in flight keeps its KV cache in SRAM beside the weights. The pool
  is the SRAM a compiled step leaves beside weights and activation buffers on its fullest chip
  (in tokens of KV per sequence; kept within the bracket that the step's exact `kv_slots`,
  a minimum over all chips, implies). With **window reservation** each user holds the
  deployment's whole context window; with **paged** KV (Groq: a modified paged-attention
  kernel) a user holds its actual context in pages of `page_tokens`, so the pool carries
  pool / E[pages x page_tokens] users, where E is over the traffic's context-length
  distribution (`ContextDistribution`: a fixed value, a list, or a named distribution). The
  pool is sized for the mean: the chance that many long contexts meet is not modelled
  (assumption: enough users for the law of large numbers). The step is timed at the mean
  context (over the whole window when the system's schedule is compiled for the window,
  `compiler.attention_span`), and the pool comes from the placement of the step with the
  reservation (window, or the mean rounded up to pages), which counts that KV: only its
  memory is needed, so it is placed, not compiled (`lpusim.step.step_memory`). A batch whose
  timed step does not fit is not used (conservative with paging).
- **Activation buffers and MXM rows.** A wider step (batch b, or gamma+1 verify positions)
  needs larger activation buffers; a step whose buffers and KV do not fit beside the weights
  fails to compile (`CapacityError`), which bounds the batch (and the prefill chunk).
- **Speculation under load.** The strategy's own evaluator (its registered
  `speculative.registry.Strategy`, at this batch) gives each group's uncontended tokens/s and
  gamma; its verification passes (runs, for a strategy with an asynchronous part) take slots
  of the target pipeline (II of the verify step per pass), and a strategy with a drafter
  takes slots of the drafter's pipeline, which serves all groups too (`drafter` limit). The
  strategies served are 'none' and every registered one (`strategy_names`). gamma is
  the per-user optimum or, when that serves a load worse, one of a few shorter drafts
  (`UNDER_LOAD_GAMMAS`): at each load the frontier keeps whichever serves users fastest.
  KV: the target's and the drafter's pools both bound the users. With the pipeline full, a
  verify step of gamma+1 positions commits E <= gamma+1 tokens per user, so speculation
  beats the no-speculation pipeline-full limit only where a batch of that many rows does not
  fit (KV and activation buffers grow per sequence; extra positions of one sequence add none)
  or takes a longer interval (each sequence of a batch reads its own KV cache; the positions
  of one sequence share it). On the LPU both happen, and `limits` reports each strategy's
  pipeline-full tokens/s.
- **Time to first token.** A prompt of P tokens is prefilled in chunks of C positions: each
  chunk is a decode graph with positions = C (compiled and simulated like decode, timed at
  the last chunk's context, the longest: conservative), and chunks enter the pipeline one II
  apart: TTFT = L_C + (ceil(P / C) - 1) x II_C / f. C is the best power of two (or P) whose
  step fits in SRAM beside the weights and KV. Without load f = 1; under load the prefill gets
  the idle share of the pipeline, f = max(1 - n x share, 1 / (n + 1)) (when no share is idle
  it is served round-robin as one more group). Assumptions: the SRAM for one prefill's
  activation buffers is kept aside (not taken from the KV pool); the drafter's own prefill
  runs in parallel on its chips and is not on the path; host and network time are left out.
- **Deployment.** Each strategy is deployed by `lpusim.deploy.resolve` (a drafter's chips
  come out of the system's, so the target may get fewer chips than without speculation).
- **Energy and money** per point come from `lpusim.cost` with all chips of the deployment
  (target and drafter, plus the system's spare nodes pro rata) at the system tokens/s.

Cycles are integers inside; seconds, tokens/s, joules and dollars appear only in results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpusim import strategy_traits
from lpusim.config.specs import (
    GpuSystemSpec,
    ModelSpec,
    ScenarioSpec,
    SpeculationSpec,
    SystemSpec,
)
from lpusim.cost import joules_per_token, system_power_watts, usd_per_million_tokens
from lpusim.errors import CapacityError, ConfigError, InputError, Issue
from lpusim.parallel import Ahead
from lpusim.sim import StepMemory, StepMetrics
from lpusim.step import step_memory, step_metrics, steps_ahead

# Groq's list price of the speculative 70B endpoint (llama-3.1-70b-specdec), $ per million
# output tokens (seed; hardware.md). Printed beside the model's cost as a comparison only:
# a price includes margin and utilisation, and is never a fitting target.
LIST_PRICE_USD_PER_MILLION_OUTPUT = 0.99
LIST_PRICE_SOURCE = "Groq list price, llama-3.1-70b-specdec output tokens (seed)"
# Artificial Analysis' default workload: about 1,000 input and 1,000 output tokens
# (hardware.md, H): while a user decodes, its context runs from 1,001 to 2,000 tokens.
CHAT_PROMPT_TOKENS = 1000
CHAT_OUTPUT_TOKENS = 1000
DEFAULT_PAGE_TOKENS = 64         # assumption: Groq's paged-attention page size is unpublished
DEFAULT_MAX_BATCH = 64           # the widest batch tried (a sweep bound, not hardware)
TTFT_PROMPTS = (128, 512, 1000, 2048, 4096, 8192)
MAX_USERS = 10**6                # bound when a model keeps no KV cache


def strategy_names() -> tuple[str, ...]:
    """What `ServeOptions.strategies` may name: 'none' (no speculation), then every
    registered speculation strategy (`lpusim.strategy_traits`)."""
    return ("none", *strategy_traits.names())


# ----------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class ContextDistribution:
    """Tokens in a decoding user's KV cache at a random instant: lengths and probabilities."""

    lengths: tuple[int, ...]
    probabilities: tuple[float, ...]
    label: str

    @property
    def mean_tokens(self) -> float:
        return float(np.dot(self.lengths, self.probabilities))

    @property
    def max_tokens(self) -> int:
        return max(self.lengths)

    def mean_paged_tokens(self, page_tokens: int) -> float:
        """E[tokens held] when KV is allocated in whole pages of `page_tokens`."""
        pages = -(-np.asarray(self.lengths, dtype=np.int64) // page_tokens)
        return float(np.dot(pages * page_tokens, self.probabilities))

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "mean_tokens": self.mean_tokens,
                "max_tokens": self.max_tokens}


def parse_contexts(value: Any, window: int) -> ContextDistribution:
    """A context-length distribution from: an int (fixed), a list of ints (equally likely), or
    a string: 'chat' (1,000-token prompt and 1,000 output tokens: uniform 1,001..2,000),
    'uniform:LO:HI', 'exponential:MEAN' (truncated at the window), or 'A,B,C' (a list).
    Every length must be within 1..window. Raises ValueError with what is wrong."""
    if isinstance(value, ContextDistribution):
        dist = value
    elif isinstance(value, bool):
        raise InputError(f"expected a context length, list or distribution, got {value!r}")
    elif isinstance(value, int):
        dist = ContextDistribution((value,), (1.0,), f"fixed:{value}")
    elif isinstance(value, list | tuple):
        dist = _listed(value)
    elif isinstance(value, str):
        dist = _named(value.strip(), window)
    else:
        raise InputError(f"expected a context length, list or distribution, got "
                         f"{type(value).__name__}")
    if min(dist.lengths) < 1:
        raise InputError(f"context lengths must be at least 1 ({dist.label})")
    if dist.max_tokens > window:
        raise InputError(f"context {dist.max_tokens} exceeds the deployment's window "
                         f"{window} ({dist.label})")
    return dist


def _listed(values: Sequence[Any]) -> ContextDistribution:
    if not values:
        raise InputError("an empty list of context lengths")
    _check_support(len(values), "the list")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"context lengths must be whole numbers, got {v!r}")
        out.append(v)
    n = len(out)
    return ContextDistribution(tuple(out), tuple([1.0 / n] * n),
                               "list:" + ",".join(str(v) for v in out[:8])
                               + (",..." if n > 8 else ""))


def _named(text: str, window: int) -> ContextDistribution:
    name, _, rest = text.partition(":")
    args = rest.split(":") if rest else []
    try:
        if name == "chat" and not args:
            lo, hi = CHAT_PROMPT_TOKENS + 1, CHAT_PROMPT_TOKENS + CHAT_OUTPUT_TOKENS
            return _uniform(lo, hi, "chat (1k prompt, 1k output)")
        if name == "uniform" and len(args) == 2:
            lo, hi = int(args[0]), int(args[1])
            if not 1 <= lo <= hi:
                raise InputError(f"uniform:{lo}:{hi} needs 1 <= LO <= HI")
            if hi > window:
                raise InputError(f"context {hi} exceeds the deployment's window {window} "
                                 f"(uniform:{lo}:{hi})")
            _check_support(hi - lo + 1, text)
            return _uniform(lo, hi, f"uniform:{lo}:{hi}")
        if name == "exponential" and len(args) == 1:
            mean = float(args[0])
            if not (math.isfinite(mean) and mean > 0):
                raise InputError(f"exponential mean must be a positive finite number, got "
                                 f"{args[0]}")
            top = min(window, math.ceil(40 * mean))     # beyond: probability below 1e-17
            _check_support(top, text)
            n = np.arange(1, top + 1)
            p = np.exp(-(n - 1) / mean)
            p /= p.sum()
            keep = p > 1e-15
            return ContextDistribution(tuple(int(x) for x in n[keep]),
                                       tuple(float(x) for x in p[keep] / p[keep].sum()),
                                       f"exponential:{mean:g} (truncated at {window})")
        if "," in text or text.isdigit():
            return _listed([int(x) for x in text.split(",")])
    except ValueError as e:
        if "invalid literal" in str(e) or "could not convert" in str(e):
            raise InputError(f"cannot read {text!r} as a context distribution") from None
        raise
    raise InputError(f"unknown context distribution {text!r} (a number, A,B,C, 'chat', "
                     f"'uniform:LO:HI' or 'exponential:MEAN')")


MAX_SUPPORT = 2_000_000   # distinct context lengths a distribution may enumerate


def _check_support(n: int, text: str) -> None:
    if n > MAX_SUPPORT:
        raise InputError(f"{text!r} spans {n} context lengths; at most {MAX_SUPPORT}")


def _uniform(lo: int, hi: int, label: str) -> ContextDistribution:
    n = hi - lo + 1
    return ContextDistribution(tuple(range(lo, hi + 1)), tuple([1.0 / n] * n), label)


# ----------------------------------------------------------------------------- load arithmetic


@dataclass(frozen=True)
class BatchPlan:
    """One strategy at one batch: what a group of `batch` users gets and takes."""

    strategy: str
    batch: int
    user_tokens_per_second: float   # per user, uncontended
    target_share: float             # share of the target pipeline's issue slots one group uses
    drafter_share: float            # the same on the drafter's pipeline (0: no drafter)
    max_users: int                  # users whose KV fits (target and drafter pools)
    chips: int                      # target plus drafter chips
    tokens_per_step: float          # tokens committed per target step of one group
    target_interval_cycles: int     # II of the target step this strategy repeats
    clock_hz: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def pipeline_full_tokens_per_second(self) -> float:
        """System tokens/s with the target pipeline full of this deployment's steps."""
        return self.batch * self.tokens_per_step * self.clock_hz / \
            max(1, self.target_interval_cycles)


def kv_pool_tokens(m: StepMetrics | StepMemory, batch: int, reserved_tokens: int) -> int:
    """Tokens of KV (of one sequence) that fit beside weights and activation buffers, from a
    step that holds `batch` x `reserved_tokens` of them: the fullest chip's spare bytes over its
    KV bytes per token, kept within the bracket the exact `kv_slots` (min over chips) implies.
    MAX_USERS x reserved when the step keeps no KV."""
    kv = m.sram_bytes_by_category.get("kv_cache", 0)
    held = batch * reserved_tokens
    if kv <= 0:
        return MAX_USERS * reserved_tokens
    spare = m.sram_capacity_bytes - (m.sram_bytes_per_chip_max - kv)
    est = spare * held // kv
    lo, hi = m.kv_slots * held, (m.kv_slots + 1) * held - 1
    return int(min(max(est, lo), hi))


def users_by_kv(pool_tokens: int, tokens_per_user: float) -> int:
    """Users whose KV fits a pool: floor(pool / tokens per user)."""
    return min(MAX_USERS, int(pool_tokens // max(1.0, tokens_per_user)))


def no_speculation(m: StepMetrics, batch: int, max_users: int, chips: int) -> BatchPlan:
    """Plain decode at `batch`: a group gets one token per user every step latency and uses
    II / latency of the pipeline."""
    lat = max(1, m.latency_cycles)
    return BatchPlan(strategy="none", batch=batch, user_tokens_per_second=m.clock_hz / lat,
                      target_share=m.initiation_interval_cycles / lat, drafter_share=0.0,
                      max_users=max_users, chips=chips, tokens_per_step=1.0,
                      target_interval_cycles=m.initiation_interval_cycles, clock_hz=m.clock_hz,
                      details={"step_latency_us": m.latency_us,
                               "initiation_interval_us":
                                   m.initiation_interval_cycles * 1e6 / m.clock_hz})


@dataclass(frozen=True)
class LoadPoint:
    users: int
    groups: int
    slowdown: float
    tokens_per_second_per_user: float
    system_tokens_per_second: float
    limit: str
    load_share: float              # share of the target pipeline in use (may exceed 1)


def at_load(dep: BatchPlan, users: int) -> LoadPoint:
    """`users` on a deployment: ceil(users / batch) groups; the schedule stretches when a
    pipeline's slots run out. `limit` says what binds: 'pipeline' or 'drafter' (slots full),
    'kv' (no room for another user's KV cache), or 'none'."""
    if users < 1:
        raise InputError(f"users must be at least 1, got {users}")
    n = -(-users // dep.batch)
    t, d = n * dep.target_share, n * dep.drafter_share
    slow = max(1.0, t, d)
    per_user = dep.user_tokens_per_second / slow
    if slow > 1.0 or max(t, d) >= 1.0 - 1e-12:
        limit = "pipeline" if t >= d else "drafter"
    elif users >= dep.max_users:
        limit = "kv"
    else:
        limit = "none"
    return LoadPoint(users=users, groups=n, slowdown=slow, tokens_per_second_per_user=per_user,
                     system_tokens_per_second=users * per_user, limit=limit, load_share=t)


def prefill_cycles(latency_cycles: int, interval_cycles: int, chunks: int,
                   free_share: float = 1.0) -> float:
    """Cycles to prefill `chunks` chunks entering the pipeline one II apart (stretched to
    II / free_share when only that share of the pipeline is idle): L + (chunks - 1) II / f."""
    if chunks < 1 or not 0 < free_share <= 1:
        raise InputError(f"need chunks >= 1 and 0 < free_share <= 1, got {chunks}, "
                         f"{free_share}")
    return latency_cycles + (chunks - 1) * interval_cycles / free_share


def idle_share(groups: int, target_share: float) -> float:
    """Share of the pipeline a prefill gets beside `groups` decoding groups: the idle share,
    or round-robin as one more group when none is idle."""
    return max(1.0 - groups * target_share, 1.0 / (groups + 1))


def user_grid(max_users: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ... up to and including max_users."""
    out: list[int] = []
    k = 1
    while k <= max_users:
        for v in (k, 3 * k // 2):
            if v <= max_users and v not in out:
                out.append(v)
        k *= 2
    if max_users not in out:
        out.append(max_users)
    return sorted(out)


def frontier_points(deps: Sequence[BatchPlan]) -> list[tuple[BatchPlan, LoadPoint]]:
    """For each user count of the grid (1 .. the most users any batch holds, and the count at
    which the system's tokens/s peaks), the deployment that gives each user the most
    tokens/s; a count is kept only if it raises the system's tokens/s (the rest are
    dominated). The last point's `limit` says what stops the next: what binds it, or what
    binds the next count tried."""
    deps = [d for d in deps if d.max_users >= 1]
    if not deps:
        return []
    top = max(d.max_users for d in deps)
    # and the count at which some batch reaches the system's most tokens/s (its KV full)
    fullest = max(deps, key=lambda d: at_load(d, d.max_users).system_tokens_per_second)
    grid = sorted({*user_grid(top), fullest.max_users})
    out: list[tuple[BatchPlan, LoadPoint]] = []
    dominated: LoadPoint | None = None
    for u in grid:
        cands = [(d, at_load(d, u)) for d in deps if d.max_users >= u]
        d, p = max(cands, key=lambda c: (c[1].tokens_per_second_per_user, -c[0].batch))
        if out and p.system_tokens_per_second <= out[-1][1].system_tokens_per_second * \
                (1 + 1e-9):
            dominated = dominated or p
            continue
        out.append((d, p))
        dominated = None
    last_d, last = out[-1]
    if last.limit == "none":
        why = "kv" if last.users == top else (dominated.limit if dominated is not None
                                               and dominated.limit != "none" else "pipeline")
        out[-1] = (last_d, dataclasses.replace(last, limit=why))
    return out


# ----------------------------------------------------------------------------- compiled steps


@dataclass(frozen=True)
class ServeOptions:
    """What to serve: the traffic, the KV allocation, the prompt for TTFT, the batches tried
    and the speculation strategies compared ('none' is always included)."""

    contexts: Any = "chat"
    paged: bool = True
    page_tokens: int = DEFAULT_PAGE_TOKENS
    prompt_tokens: int = CHAT_PROMPT_TOKENS
    max_batch: int = DEFAULT_MAX_BATCH
    strategies: tuple[str, ...] = ()
    ttft_prompts: tuple[int, ...] = TTFT_PROMPTS


def _bad(field_: str, message: str) -> ConfigError:
    return ConfigError(Issue("serve", None, None, field_, message))


class _Steps:
    """The compiled steps of one scenario for serving (memoised by `step_metrics`)."""

    def __init__(self, sc: ScenarioSpec, dist: ContextDistribution, opts: ServeOptions):
        self.sc = sc
        self.dist = dist
        self.opts = opts
        self.context = max(1, round(dist.mean_tokens))            # timing context
        if opts.paged:
            self.per_user = dist.mean_paged_tokens(opts.page_tokens)
            self.window = max(math.ceil(self.per_user), self.context + 1)
        else:
            self.window = sc.window
            self.per_user = float(self.window)
        # a static schedule compiled for the whole window attends over all of it whatever
        # a user holds: then steps are timed with the deployment's window, and the KV pool
        # comes from the same step placed with the paged reservation
        window_attention = isinstance(sc.system, SystemSpec) and \
            sc.system.compiler.attention_span == "window"
        self.timing_window = sc.window if window_attention else self.window

    def reserved(self, positions: int) -> int:
        """KV tokens per sequence the KV step holds (as the graph counts them)."""
        return max(self.window, self.context + positions)

    def inputs(self, model: ModelSpec, chips: int, tp: int, *, positions: int = 1,
               batch: int = 1, context: int | None = None, heads: bool = False
               ) -> dict[str, Any]:
        """`step_metrics`'s inputs of a step timed with the timing window."""
        sc = self.sc
        return dict(model=model, system=sc.system, chips=chips, tp=tp, positions=positions,
                    batch=batch, context=self.context if context is None else context,
                    precision=sc.precision, with_heads=heads, fidelity=sc.fidelity,
                    context_window=self.timing_window)

    def step(self, model: ModelSpec, chips: int, tp: int, *, positions: int = 1,
             batch: int = 1, context: int | None = None, heads: bool = False) -> StepMetrics:
        """A compiled step, timed with the timing window."""
        return step_metrics(**self.inputs(model, chips, tp, positions=positions, batch=batch,
                                          context=context, heads=heads))

    def target(self, batch: int, positions: int = 1, heads: bool = False,
               model: ModelSpec | None = None) -> StepMetrics:
        return self.step(model or self.sc.model, self.sc.chips_used, self.sc.tp,
                         positions=positions, batch=batch, heads=heads)

    def pool(self, model: ModelSpec, chips: int, tp: int, batch: int, positions: int = 1,
             heads: bool = False) -> int:
        """KV pool (tokens) beside a step's weights and buffers, from the SRAM of its KV step
        (its placement: only its memory is needed)."""
        sc = self.sc
        m = step_memory(model, sc.system, chips=chips, tp=tp, positions=positions,
                        batch=batch, context=self.context, precision=sc.precision,
                        with_heads=heads, context_window=self.window)
        return kv_pool_tokens(m, batch, self.reserved(positions))

    def users(self, model: ModelSpec, chips: int, tp: int, batch: int, positions: int = 1,
              heads: bool = False) -> int:
        return users_by_kv(self.pool(model, chips, tp, batch, positions, heads), self.per_user)

    def scenario_at(self, batch: int, strategy: str, gamma: int | str | None = None
                    ) -> ScenarioSpec:
        base = self.sc.speculation or SpeculationSpec()
        spec = dataclasses.replace(base, strategy=strategy,
                                   monte_carlo_passes=min(base.monte_carlo_passes, 1000),
                                   gamma=base.gamma if gamma is None else gamma)
        return dataclasses.replace(self.sc, batch=batch, context=self.context,
                                   context_window=self.timing_window, speculation=spec)


def _speculative(steps: _Steps, strategy: str, batch: int,
                 gamma: int | str | None = None) -> BatchPlan:
    """One speculation strategy at `batch` (and gamma: the scenario's by default), from its
    own evaluator and its steps' intervals. A strategy whose result has an asynchronous part
    launches runs (its drafter never waits); any other verifies once per pass."""
    from lpusim.deploy import draft_chips
    from lpusim.speculative.strategies import strategy as registered
    strat = registered(strategy)
    sc = steps.scenario_at(batch, strategy, gamma)
    if strat.needs_drafter and sc.speculation.draft_model is None:  # type: ignore
        raise _bad("speculation.draft_model", f"strategy '{strategy}' needs a draft model "
                                              f"(--draft MODEL)")
    base = steps.target(batch)
    r = strat.evaluate(sc, base)
    clock = base.clock_hz
    tps = r.tokens_per_second
    e = r.expected_tokens_per_pass
    width = r.verify_width
    target, heads = strat.verify_target(sc)
    verify = steps.target(batch, width, heads=heads, model=target)
    max_users = steps.users(target, sc.chips_used, sc.tp, batch, width, heads)
    chips = sc.chips_used + r.draft_chips
    drafter_share = 0.0
    details: dict[str, Any] = {"gamma": r.gamma, "verify_width": width,
                               "expected_tokens_per_pass": e,
                               "verify_step_us": r.verify_step_us,
                               "draft_chips": r.draft_chips}
    if r.async_ is not None:
        launches_per_s = tps * r.async_.runs_launched_per_token
        target_share = verify.initiation_interval_cycles * launches_per_s / clock
        tokens_per_step = 1.0 / r.async_.runs_launched_per_token
    else:
        passes_per_s = tps / e
        target_share = verify.initiation_interval_cycles * passes_per_s / clock
        tokens_per_step = e
    if strat.needs_drafter:
        d_chips, d_tp = draft_chips(sc)
        dm = sc.speculation.draft_model   # type: ignore[union-attr]
        assert dm is not None
        draft = steps.step(dm, d_chips, d_tp, batch=batch)
        max_users = min(max_users, steps.users(dm, d_chips, d_tp, batch))
        if r.async_ is not None:     # the drafter never waits: one step in flight per group
            drafter_share = draft.initiation_interval_cycles / max(1, draft.latency_cycles)
        else:
            steps_per_pass: float = r.gamma
            if r.pipelined and r.draft_step_us > 0:   # drafted during verification,
                steps_per_pass += (r.head_start_us / r.draft_step_us   # wasted on a miss
                                   * (1 - r.head_start_probability))
            drafter_share = steps_per_pass * draft.initiation_interval_cycles * \
                (tps / e) / clock
        details["draft_step_us"] = r.draft_step_us
    return BatchPlan(strategy=strategy, batch=batch, user_tokens_per_second=tps,
                      target_share=target_share, drafter_share=drafter_share,
                      max_users=max_users, chips=chips, tokens_per_step=tokens_per_step,
                      target_interval_cycles=verify.initiation_interval_cycles,
                      clock_hz=clock, details=details)


def plans(steps: _Steps, strategy: str) -> tuple[list[BatchPlan], dict[str, Any]]:
    """The strategy at batch 1, 2, 4, ... until a batch no longer fits; what stopped it. The
    batches are independent: the next ones are planned in forked children meanwhile
    (`lpusim.parallel.Ahead`; a batch that does not fit fails there too and is planned here
    to raise), and those after the one that stops are discarded."""
    out: list[BatchPlan] = []
    stop: dict[str, Any] = {"largest_batch": 0, "next_batch_error": None}
    batches = [1 << k for k in range(steps.opts.max_batch.bit_length())]
    ahead: Ahead[int, tuple[BatchPlan, list[BatchPlan]]] = Ahead(
        lambda b: _batch_plans(steps, strategy, b))
    with ahead:
        try:
            for b, (dep, shorter) in zip(batches, ahead.each(batches), strict=False):
                out += [dep, *shorter]
                stop["largest_batch"] = b
                if dep.max_users < b:         # a fuller batch no longer fits the KV pool
                    break
        except CapacityError as e:          # the batch after the last that fits (they double)
            stop["next_batch_error"] = f"batch {2 * stop['largest_batch'] or 1}: {e}"
    return out, stop


def _batch_plans(steps: _Steps, strategy: str, b: int) -> tuple[BatchPlan, list[BatchPlan]]:
    """The strategy at batch b, and (gamma auto) at the shorter gammas under load."""
    if strategy == "none":
        m = steps.target(b)
        sc = steps.sc
        pool = steps.pool(sc.model, sc.chips_used, sc.tp, b)
        dep = no_speculation(m, b, users_by_kv(pool, steps.per_user), sc.chips_used)
        dep.details["kv_pool_tokens"] = pool
        return dep, []
    dep = _speculative(steps, strategy, b)
    if steps.sc.speculation is not None and steps.sc.speculation.gamma == "auto":
        return dep, _shorter_gammas(steps, strategy, b, dep)
    return dep, []


UNDER_LOAD_GAMMAS = (1, 2, 4)     # shorter drafts tried beside the per-user optimum


def _shorter_gammas(steps: _Steps, strategy: str, batch: int, best: BatchPlan
                    ) -> list[BatchPlan]:
    """The strategy at gammas shorter than its per-user optimum: under load a shorter draft
    takes fewer drafter and pipeline slots per token, and may serve more users faster."""
    out = []
    for g in UNDER_LOAD_GAMMAS:
        if g >= best.details["gamma"]:
            break
        try:
            out.append(_speculative(steps, strategy, batch, g))
        except (CapacityError, ConfigError):
            break
    return out


# ----------------------------------------------------------------------------- prefill


@dataclass(frozen=True)
class Prefill:
    prompt_tokens: int
    chunks: tuple[tuple[int, int, int], ...]    # (chunk positions, latency, II) that fit
    bound: str                                  # why no wider chunk

    def cycles(self, free_share: float = 1.0) -> tuple[float, int]:
        """(the least prefill cycles over the chunks that fit, that chunk size)."""
        best = min(((prefill_cycles(lat, ii, -(-self.prompt_tokens // c), free_share), c)
                    for c, lat, ii in self.chunks), key=lambda x: (x[0], -x[1]))
        return best


def prefill(steps: _Steps, prompt_tokens: int) -> Prefill:
    """Compile the prefill chunk steps of a prompt: powers of two up to the prompt (and the
    prompt itself), each timed at the last chunk's context, until one does not fit."""
    sc = steps.sc
    if not 1 <= prompt_tokens < sc.window:
        raise _bad("prompt_tokens", f"prompt of {prompt_tokens} tokens must be between 1 and "
                                    f"the window {sc.window} - 1")
    sizes = [1 << k for k in range(prompt_tokens.bit_length()) if 1 << k < prompt_tokens]
    sizes.append(prompt_tokens)
    fits: list[tuple[int, int, int]] = []
    bound = "prompt"
    # the chunks are known: the next ones are compiled in children meanwhile (a chunk that
    # does not fit fails there too, and is compiled here to raise)
    def chunk(c: int) -> dict[str, Any]:
        return steps.inputs(sc.model, sc.chips_used, sc.tp, positions=c,
                            context=prompt_tokens - c)

    with steps_ahead(chunk) as chunks:
        try:
            for c, m in zip(sizes, chunks.each(sizes), strict=False):
                fits.append((c, m.latency_cycles, m.initiation_interval_cycles))
        except CapacityError as e:          # the chunk after the last that fits
            bound = f"sram: a chunk of {sizes[len(fits)]} positions does not fit ({e})"
    if not fits:
        raise CapacityError(f"no prefill chunk of a {prompt_tokens}-token prompt fits: {bound}")
    return Prefill(prompt_tokens, tuple(fits), bound)


# ----------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class ServeResult:
    """Frontiers of one scenario. Field names are a public contract: add, never rename."""

    scenario: str
    model: str
    system: str
    chips: int
    context_window: int
    contexts: dict[str, Any]
    paged_kv: bool
    page_tokens: int
    kv_tokens_per_user: float
    prompt_tokens: int
    frontier: list[dict[str, Any]]
    speculation: dict[str, list[dict[str, Any]]]
    limits: dict[str, dict[str, Any]]
    ttft: list[dict[str, Any]]
    prefill_chunk_bound: str
    list_price_usd_per_million_output_tokens: float = LIST_PRICE_USD_PER_MILLION_OUTPUT
    list_price_source: str = LIST_PRICE_SOURCE
    errors: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)   # per strategy

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _point(sc: ScenarioSpec, dep: BatchPlan, p: LoadPoint, fill: Prefill,
           baseline: dict[int, float] | None) -> dict[str, Any]:
    clock = sc.system.chip.clock_hz
    cyc, chunk = fill.cycles(idle_share(p.groups, dep.target_share))
    row: dict[str, Any] = {
        "users": p.users, "strategy": dep.strategy, "batch": dep.batch, "groups": p.groups,
        "tokens_per_second_per_user": p.tokens_per_second_per_user,
        "system_tokens_per_second": p.system_tokens_per_second,
        "tokens_per_second_per_chip": p.system_tokens_per_second / dep.chips,
        "ttft_ms": cyc * 1e3 / clock, "prefill_chunk": chunk,
        "joules_per_token": None, "usd_per_million_output_tokens": None,
        "pipeline_share": p.load_share, "limit": p.limit, "chips": dep.chips,
    }
    charged = charged_chips(sc.system, dep.chips)
    if sc.system.power is not None:
        row["joules_per_token"] = joules_per_token(system_power_watts(sc.system, charged),
                                                   p.system_tokens_per_second)
    if sc.system.cost is not None:
        row["usd_per_million_output_tokens"] = usd_per_million_tokens(
            sc.system, charged, p.system_tokens_per_second)
    if baseline is not None:
        base = baseline.get(p.users)
        row["speedup_per_user"] = p.tokens_per_second_per_user / base if base else None
    for k in ("gamma", "verify_width"):
        if k in dep.details:
            row[k] = dep.details[k]
    return row


def _best_user_speed(deps: Sequence[BatchPlan], users: int) -> float | None:
    vals = [at_load(d, users).tokens_per_second_per_user for d in deps if d.max_users >= users]
    return max(vals) if vals else None


def _resolved(sc: ScenarioSpec, strategy: str) -> tuple[ScenarioSpec, dict[str, Any]]:
    """The scenario deployed for one strategy (`lpusim.deploy.resolve`: the drafter's chips
    come out of the system's), and the deployment as data."""
    from lpusim.deploy import resolve
    base = sc.speculation or SpeculationSpec()
    spec = None if strategy == "none" else dataclasses.replace(base, strategy=strategy)
    out, dep = resolve(dataclasses.replace(sc, speculation=spec))
    if spec is not None:       # keep the scenario's speculation settings, with this strategy
        out = dataclasses.replace(out, speculation=spec)
    return out, dep.to_dict()


def charged_chips(system: Any, chips: int) -> int:
    """Chips whose power and capex a deployment of `chips` carries: its own, plus the system's
    spare nodes pro rata (they are installed to keep it serving)."""
    return math.ceil(chips * system.chips / max(1, system.active_chips))


def serve(scenario: ScenarioSpec, opts: ServeOptions | None = None) -> ServeResult:
    """Sweep load on a scenario's deployment: the frontier of per-user against system
    tokens/s (no speculation, and each strategy in `opts.strategies`, each deployed by
    `lpusim.deploy`), TTFT, J and $ per token."""
    opts = opts or ServeOptions()
    if isinstance(scenario.system, GpuSystemSpec):
        raise _bad("system", f"{scenario.system.name} is a GPU server: serve models users "
                             "interleaved in an LPU system's static pipeline, and a GPU's "
                             "continuous batching is not modelled (use run --batch N, or "
                             "compare)")
    sc, placement = _resolved(scenario, "none")
    for name, v, lo in (("page_tokens", opts.page_tokens, 1), ("max_batch", opts.max_batch, 1),
                        ("prompt_tokens", opts.prompt_tokens, 1)):
        if v < lo:
            raise _bad(name, f"must be at least {lo}, got {v}")
    known = strategy_names()
    for s in opts.strategies:
        if s not in known:
            raise _bad("strategy", f"unknown strategy {s!r} (one of {', '.join(known)})")
    try:
        dist = parse_contexts(opts.contexts, sc.window)
    except ValueError as e:
        raise _bad("contexts", str(e)) from None
    steps = _Steps(sc, dist, opts)
    fill = prefill(steps, opts.prompt_tokens)
    placed = {"none": placement}
    base_deps, stop = plans(steps, "none")
    if not base_deps:
        raise CapacityError(f"not even one user fits: {stop['next_batch_error']}")
    limits = {"none": stop | {"pipeline_full_tokens_per_second":
                              max(d.pipeline_full_tokens_per_second for d in base_deps),
                              "kv_pool_tokens": base_deps[0].details["kv_pool_tokens"],
                              "slots_in_flight": math.floor(1 / base_deps[0].target_share)}}
    base_points = frontier_points(base_deps)
    if not base_points:
        raise CapacityError(f"not even one user's KV cache ({steps.per_user:.0f} tokens) fits "
                            f"beside the weights of {sc.model.name} on {sc.chips_used} chips")
    frontier = [_point(sc, d, p, fill, None) for d, p in base_points]
    speculation: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    for strat in dict.fromkeys(s for s in opts.strategies if s != "none"):
        try:
            sc_s, placed[strat] = _resolved(scenario, strat)
            steps_s = _Steps(sc_s, dist, opts)
            fill_s = prefill(steps_s, opts.prompt_tokens)
            deps, st = plans(steps_s, strat)
        except CapacityError as e:
            errors[strat] = str(e)
            continue
        if not deps:
            errors[strat] = str(st["next_batch_error"])
            continue
        limits[strat] = st | {"pipeline_full_tokens_per_second":
                              max(d.pipeline_full_tokens_per_second for d in deps)}
        pts = frontier_points(deps)
        base_at = {p.users: _best_user_speed(base_deps, p.users) for _d, p in pts}
        speculation[strat] = [_point(sc_s, d, p, fill_s, base_at)  # type: ignore[arg-type]
                              for d, p in pts]
    ttft = []
    top = base_points[-1]
    for n_prompt in sorted({*opts.ttft_prompts, opts.prompt_tokens}):
        if n_prompt >= sc.window:
            continue
        f = fill if n_prompt == opts.prompt_tokens else prefill(steps, n_prompt)
        idle, chunk = f.cycles()
        full, chunk_full = f.cycles(idle_share(top[1].groups, top[0].target_share))
        clock = sc.system.chip.clock_hz
        ttft.append({"prompt_tokens": n_prompt, "ttft_ms": idle * 1e3 / clock,
                     "chunk": chunk, "ttft_ms_at_max_load": full * 1e3 / clock,
                     "chunk_at_max_load": chunk_full, "users_at_max_load": top[1].users})
    return ServeResult(
        scenario=sc.name, model=sc.model.name, system=sc.system.name, chips=sc.chips_used,
        context_window=sc.window, contexts=dist.describe(), paged_kv=opts.paged,
        page_tokens=opts.page_tokens, kv_tokens_per_user=steps.per_user,
        prompt_tokens=opts.prompt_tokens, frontier=frontier, speculation=speculation,
        limits=limits, ttft=ttft, prefill_chunk_bound=fill.bound, errors=errors,
        deployments=placed)
