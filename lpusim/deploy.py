"""Deployments: which chips, tensor parallelism and pipeline stages serve a model.

A scenario names a model and a system; `resolve` turns it into a concrete deployment by one
documented rule, the same for every model (policy `fewest-nodes`):

1. The context window is the endpoint's (what the KV cache and a static schedule are sized
   for), capped by the model's own maximum context; the tokens in the cache at the measured
   step (`context`) are capped by the window.
2. The chips a deployment may use are the system's active chips (installed chips less the
   racks' spare nodes), less the drafter's when the scenario speculates with a draft model
   (its fewest whole tensor-parallel groups, or the scenario's `draft_chips`).
3. With `chips` given (the deployment a user asked for, all chips active), every feasible
   split of them is compiled and simulated and the fastest one-token step wins. Tensor
   parallelism is taken from the divisors of a node's chip count, plus the smallest whole
   number of nodes at which every placement block fits and the stages do not outnumber the
   blocks, when a node is too small for either (or the scenario's `tensor_parallel`, if
   set); the pipeline has chips / tp stages, at most one per placement block. Chips asked
   for are all active: they may include the racks' spare nodes.
4. Without `chips`, the scenario's deployment is all available chips at tp = one node (or the
   scenario's `tensor_parallel`). It is used when it suits the model: no more stages than the
   model has layers (more would leave stages with less than a layer of work), and weights, KV
   cache and buffers fit every chip. Otherwise the model
   gets the fewest whole nodes that hold it at the smallest tensor parallelism (one node, or
   whole multiples of nodes) at which its largest block fits; if the system cannot provide
   that, the smallest shipped system of the same chip that can.

For a mixture-of-experts model, step 3 also tries expert parallelism (each stage's chips hold
whole experts, E / tp each, and exchange the active experts' outputs) beside sharding every
expert across the chips, when the experts divide evenly over a stage; without `chips` experts
are sharded unless the scenario sets `expert_parallel`.

Which speculation strategies have a drafter, and which verify with heads, is read from
`lpusim.strategy_traits`. Assumptions: the drafter runs on chips of its own; a deployment uses
contiguous chips from chip 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from lpusim import caches
from lpusim.compiler import minimum_chips, placement
from lpusim.config.specs import ChipSpec, ModelSpec, PrecisionSpec, ScenarioSpec, SystemSpec
from lpusim.errors import CapacityError, ConfigError, Issue
from lpusim.graph import GraphParams
from lpusim.strategy_traits import needs_drafter, target_heads

POLICY = "fewest-nodes"


@dataclass(frozen=True)
class Deployment:
    """The deployment a run uses, and why."""

    policy: str
    system: str
    chips_installed: int        # chips of the system
    chips_active: int           # installed less spare nodes: what deployments may use
    chips: int                  # used by the target model
    tensor_parallel: int
    stages: int
    expert_parallel: int
    draft_chips: int            # the drafter's own chips (0: none)
    context_window: int         # tokens of KV cache reserved per sequence
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Candidate:
    """One feasible split of a chip count, with its simulated one-token step."""

    chips: int
    tensor_parallel: int
    stages: int
    sram_headroom_bytes: int    # usable SRAM left on the fullest chip
    step_latency_us: float
    expert_parallel: bool = False

    @property
    def tokens_per_second(self) -> float:
        return 1e6 / self.step_latency_us

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tokens_per_second": self.tokens_per_second}


@caches.memoise("placement_graph", maxsize=512)
def _graph_for_placement(model: ModelSpec, batch: int, context: int, precision: PrecisionSpec,
                         window: int, with_heads: bool = False,
                         window_attention: bool = False) -> Any:
    # the decode step's own graph object (lpusim.step.shared_graph) when a run compiles the
    # split it sizes: the compile then reuses this graph and its placement
    from lpusim.step import shared_graph
    return shared_graph(model, GraphParams(batch=batch, context=context, precision=precision,
                                           context_window=window, with_heads=with_heads,
                                           window_attention=window_attention))


def blocks_of(model: ModelSpec) -> int:
    """Placement blocks of a model: the embedding; per layer its attention, its FFN up to the
    activation and (dense FFNs) its down projection; the head."""
    return (2 if model.experts > 1 else 3) * model.layers + 2


@caches.memoise("least_chips", maxsize=1024)
def least_chips(model: ModelSpec, chip: ChipSpec, tp: int, *, batch: int, context: int,
                precision: PrecisionSpec, window: int, with_heads: bool = False,
                window_attention: bool = False) -> int | None:
    """The fewest chips (whole groups of `tp`) whose SRAM holds the model, or None if one
    placement block does not fit a chip at this tensor parallelism. (`window_attention`, as
    the system compiles attention, does not change SRAM: it picks the graph a run shares.)"""
    g = _graph_for_placement(model, batch, context, precision, window, with_heads,
                             window_attention)
    return minimum_chips(g, chip, tp)


@caches.memoise("headroom", maxsize=1024)
def _headroom(model: ModelSpec, chip: ChipSpec, chips: int, tp: int, *, batch: int,
              context: int, precision: PrecisionSpec, window: int,
              with_heads: bool, window_attention: bool = False) -> int | None:
    """Usable SRAM left on the fullest chip of this split, or None if it does not fit."""
    if chips % tp or chips // tp > blocks_of(model):
        return None
    g = _graph_for_placement(model, batch, context, precision, window, with_heads,
                             window_attention)
    try:
        pl = placement(g, chip, chips, tp)      # the compile of this split reuses it
    except CapacityError:
        return None
    return pl.capacity_bytes - pl.max_sram_bytes


def tp_choices(model: ModelSpec, system: SystemSpec, chips: int, *, batch: int, context: int,
               precision: PrecisionSpec, window: int, with_heads: bool = False,
               window_attention: bool = False) -> list[int]:
    """Tensor parallelism considered for `chips`: the divisors of a node, and the smallest
    whole number of nodes at which every block fits if none inside a node does."""
    cpn = system.topology.chips_per_node
    out = [d for d in range(1, cpn + 1) if cpn % d == 0 and chips % d == 0]
    too_many = chips // cpn > blocks_of(model)
    if too_many or least_chips(model, system.chip, cpn, batch=batch, context=context,
                               precision=precision, window=window, with_heads=with_heads,
                               window_attention=window_attention) is None:
        k = 2
        while k * cpn <= chips:
            if chips % (k * cpn) == 0 and chips // (k * cpn) <= blocks_of(model) \
                    and least_chips(model, system.chip, k * cpn, batch=batch,
                                    context=context, precision=precision, window=window,
                                    with_heads=with_heads,
                                    window_attention=window_attention) is not None:
                out.append(k * cpn)
                break
            k += 1
    return out


def candidates(sc: ScenarioSpec, chips: int, tp: int | None = None) -> list[Candidate]:
    """Every feasible split of `chips` chips for the scenario's model, fastest first."""
    from lpusim.step import step_metrics
    kw: dict[str, Any] = dict(batch=sc.batch, context=sc.context, precision=sc.precision,
                              window=sc.window, window_attention=_window_attention(sc))
    heads = _with_heads(sc)
    tps = [tp] if tp else tp_choices(sc.model, _lpu(sc), chips, with_heads=heads, **kw)
    out = []
    for t in tps:
        room = _headroom(sc.model, _lpu(sc).chip, chips, t, with_heads=heads, **kw)
        if room is None:
            continue
        for ep in _ep_choices(sc, t):
            m = step_metrics(sc.model, _lpu(sc), chips=chips, tp=t, batch=sc.batch,
                             context=sc.context, precision=sc.precision, with_heads=heads,
                             fidelity=sc.fidelity, context_window=sc.context_window,
                             expert_parallel=ep)
            out.append(Candidate(chips, t, chips // t, room, m.latency_us, ep))
    out.sort(key=lambda c: (c.step_latency_us, c.chips, c.tensor_parallel, c.expert_parallel))
    return out


def _ep_choices(sc: ScenarioSpec, tp: int) -> tuple[bool, ...]:
    """Expert parallelism to try at this tensor parallelism: the scenario's, or both when the
    model's experts divide evenly over the stage's chips."""
    if sc.expert_parallel is not None:
        return (bool(sc.expert_parallel),)
    m = sc.model
    return (False, True) if m.experts > 1 and tp > 1 and m.experts % tp == 0 else (False,)


def _lpu(sc: ScenarioSpec) -> SystemSpec:
    """The scenario's LPU system (GPU systems have their own deployments, lpusim.gpu)."""
    assert isinstance(sc.system, SystemSpec), "lpusim.deploy places LPU systems only"
    return sc.system


def _window_attention(sc: ScenarioSpec) -> bool:
    """Whether the system compiles attention for the whole window (the step's graph is built
    so; sizing asks for the same graph, which a run then compiles)."""
    return _lpu(sc).compiler.attention_span == "window"


def _with_heads(sc: ScenarioSpec) -> bool:
    return sc.speculation is not None and target_heads(sc.speculation.strategy)


def draft_chips(sc: ScenarioSpec) -> tuple[int, int]:
    """(chips, tensor parallelism) of the scenario's drafter, (0, 0) without one."""
    spec = sc.speculation
    if spec is None or spec.draft_model is None or not needs_drafter(spec.strategy):
        return 0, 0
    tp = sc.tensor_parallel or _lpu(sc).topology.chips_per_node
    if spec.draft_chips != "auto":
        n = int(spec.draft_chips)
        tp = min(tp, n)
        if n % tp:
            raise ConfigError(Issue(sc.file or "scenario", None, None, "speculation.draft_chips",
                                    f"{n} chips are not whole groups of {tp}"))
        return n, tp
    fit = least_chips(spec.draft_model, _lpu(sc).chip, tp, batch=sc.batch,
                      context=min(sc.context, spec.draft_model.max_context),
                      precision=sc.precision,
                      window=min(sc.window, spec.draft_model.max_context),
                      window_attention=_window_attention(sc))
    if fit is None:
        raise CapacityError(f"draft model {spec.draft_model.name} does not fit at tensor "
                            f"parallelism {tp}")
    return fit, tp


def resolve(sc: ScenarioSpec) -> tuple[ScenarioSpec, Deployment]:
    """The scenario with its deployment made concrete (chips, tensor parallelism, window),
    and the deployment with the reason for it. Raises CapacityError naming a deployment that
    would fit when nothing does."""
    sc, notes = sc.window_capped()
    system = _lpu(sc)
    d_chips, _ = draft_chips(sc)
    avail = system.active_chips - d_chips
    cpn = system.topology.chips_per_node
    kw: dict[str, Any] = dict(batch=sc.batch, context=sc.context, precision=sc.precision,
                              window=sc.window, with_heads=_with_heads(sc),
                              window_attention=_window_attention(sc))
    where = sc.file or "scenario"
    if sc.chips is not None:
        # chips asked for are all active: spare nodes may be used, the drafter's may not
        room = system.chips - d_chips
        if sc.chips > room:
            extra = f" less {d_chips} for the drafter" if d_chips else ""
            raise ConfigError(Issue(where, None, None, "chips",
                                    f"{sc.chips} chips exceed the {room} the system "
                                    f"{system.name} leaves for the model ({system.chips} "
                                    f"installed{extra})"))
        found = candidates(sc, sc.chips, sc.tensor_parallel)
        if not found:
            at = f" at tensor parallelism {sc.tensor_parallel}" if sc.tensor_parallel else ""
            raise CapacityError(f"{sc.model.name} has no feasible split of {sc.chips} chips"
                                f"{at}; {_would_fit(sc, kw)}")
        best = found[0]
        ep = " with expert parallelism" if best.expert_parallel else ""
        why = (f"{sc.chips} chips as asked: the fastest of {len(found)} feasible split"
               f"{'s' if len(found) > 1 else ''} (tp {best.tensor_parallel} x "
               f"{best.stages} stages{ep})")
        sc = dataclasses.replace(sc, expert_parallel=best.expert_parallel)
        return _done(sc, best.chips, best.tensor_parallel, d_chips, notes + [why])
    tp = sc.tensor_parallel or cpn
    chips = avail // tp * tp
    stages = chips // tp
    if stages > sc.model.layers:
        problem = (f"{chips} chips make {stages} stages of {tp}, more than the model's "
                   f"{sc.model.layers} layers")
    elif chips and _headroom(sc.model, system.chip, chips, tp, **kw) is not None:
        why = (f"the system's {chips} available chips at tp {tp} suit the model")
        return _done(sc, chips, tp, d_chips, notes + [why])
    else:
        problem = f"{chips} chips at tp {tp} cannot hold the model"
    need, need_tp = _fewest_nodes(sc, kw)
    if need is None:
        at = (f"tensor parallelism {sc.tensor_parallel}" if sc.tensor_parallel
              else f"any tensor parallelism up to {avail} chips")
        raise CapacityError(f"{sc.model.name}: one placement block does not fit a chip at {at}")
    if need <= avail:
        why = (f"{problem}; policy {POLICY}: the fewest whole nodes that hold it, "
               f"{need // cpn} node{'s' if need // cpn > 1 else ''} at tp {need_tp}")
        return _done(sc, need, need_tp, d_chips, notes + [why])
    bigger = _smallest_system(sc, need + d_chips)
    if bigger is None:
        raise CapacityError(f"{sc.model.name} needs {need} chips at tp {need_tp} "
                            f"(plus {d_chips} for the drafter); no shipped system of "
                            f"{system.chip.name} has that many")
    name, spec = bigger
    moved = dataclasses.replace(sc, system=spec, name=f"{sc.name}@{name}")
    why = (f"{problem}; policy {POLICY}: it needs {need} chips at tp {need_tp}, more than "
           f"{system.name} has; the smallest shipped system that holds it is {name}")
    return _done(moved, need, need_tp, d_chips, notes + [why])


def _fewest_nodes(sc: ScenarioSpec, kw: dict[str, Any]) -> tuple[int | None, int]:
    cpn = _lpu(sc).topology.chips_per_node
    tps = [sc.tensor_parallel] if sc.tensor_parallel else [cpn * 2**k for k in range(10)]
    for tp in tps:
        n = least_chips(sc.model, _lpu(sc).chip, tp, **kw)
        if n is not None:
            n = math.ceil(n / cpn) * cpn if tp < cpn else n
            n = max(n, tp)
            # whole nodes, at most one stage per block
            while n // tp > blocks_of(sc.model):
                n -= tp
            return n, tp
    return None, tps[-1]


def _would_fit(sc: ScenarioSpec, kw: dict[str, Any]) -> str:
    need, tp = _fewest_nodes(sc, kw)
    if need is None:
        return "no split of any chip count fits"
    return f"{need} chips at tp {tp} ({need // tp} stages) would fit"


def _smallest_system(sc: ScenarioSpec, chips: int) -> tuple[str, SystemSpec] | None:
    from lpusim.config import load
    from lpusim.config.load import shipped
    best: tuple[int, str, SystemSpec] | None = None
    for name, path in sorted(shipped("system").items()):
        spec = load(path)
        if not isinstance(spec, SystemSpec) or spec.chip != _lpu(sc).chip:
            continue
        if spec.active_chips >= chips and (best is None or spec.active_chips < best[0]):
            best = (spec.active_chips, name, spec)
    return None if best is None else (best[1], best[2])


def _done(sc: ScenarioSpec, chips: int, tp: int, d_chips: int,
          notes: list[str]) -> tuple[ScenarioSpec, Deployment]:
    system = _lpu(sc)
    out = dataclasses.replace(sc, chips=chips, tensor_parallel=tp)
    return out, Deployment(
        policy=POLICY, system=system.name, chips_installed=system.chips,
        chips_active=system.active_chips, chips=chips, tensor_parallel=tp,
        stages=chips // tp, expert_parallel=tp if out.expert_parallel else 1,
        draft_chips=d_chips,
        context_window=out.window, reason="; ".join(notes))


def plan(sc: ScenarioSpec, chips: int, tp: int | None = None) -> dict[str, Any]:
    """The feasible splits of `chips` chips (fastest first; the first is what `run --chips`
    uses) and, on fewer whole nodes, splits that would be faster still."""
    sc, notes = sc.window_capped()
    found = candidates(sc, chips, tp)
    cpn = _lpu(sc).topology.chips_per_node
    kw = dict(batch=sc.batch, context=sc.context, precision=sc.precision, window=sc.window,
              with_heads=_with_heads(sc), window_attention=_window_attention(sc))
    need, _ = _fewest_nodes(sc, kw)
    fewer: list[Candidate] = []
    if found and need is not None:
        counts = {need} | {chips // 2**k // cpn * cpn for k in (1, 2, 3)}
        for n in sorted(c for c in counts if need <= c < chips):
            best = candidates(sc, n, tp)
            if best and best[0].step_latency_us < found[0].step_latency_us:
                fewer.append(best[0])
    return {"model": sc.model.name, "system": _lpu(sc).name, "chips": chips,
            "context_window": sc.window, "policy": POLICY, "notes": notes,
            "candidates": [c.to_dict() for c in found],
            "faster_on_fewer_chips": [c.to_dict() for c in fewer],
            "would_fit": None if found else _would_fit(sc, kw)}
