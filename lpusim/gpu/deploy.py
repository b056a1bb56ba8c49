"""Deployments on a GPU system: which GPUs and tensor parallelism serve a model.

The GPU counterpart of `lpusim.deploy` (which sizes LPU deployments with the LPU compiler),
with the same `Deployment` fields. Rule: the context window is the scenario's, capped at the
model's maximum context, and the measured context is capped at the window (as on LPUs); the
GPUs are the scenario's `chips` (default: all of the system's), tensor parallel over the
scenario's `tensor_parallel` or all of them up to one server (one NVLink domain), further
servers as pipeline stages. A model that does not fit is not moved to other GPUs: the step
fails with the GPUs that would hold it. A drafter shares the target's GPUs (no chips of its
own).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lpusim.config.specs import ScenarioSpec
from lpusim.strategy_traits import needs_drafter

POLICY = "as-asked"


@dataclass(frozen=True)
class GpuDeployment:
    """The deployment a GPU run uses, and why (fields as `lpusim.deploy.Deployment`)."""

    policy: str
    system: str
    chips_installed: int
    chips_active: int
    chips: int
    tensor_parallel: int
    stages: int
    expert_parallel: int
    draft_chips: int
    context_window: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_gpu(sc: ScenarioSpec) -> tuple[ScenarioSpec, GpuDeployment]:
    """The scenario with its GPU deployment made concrete, and the deployment."""
    sc, notes = sc.window_capped()
    window = sc.window
    chips, tp = sc.chips_used, sc.tp
    notes.append(f"{chips} GPU{'s' if chips > 1 else ''} at tp {tp} "
                 f"({'as asked' if sc.chips else 'all of the system'})")
    spec = sc.speculation
    if spec is not None and spec.draft_model is not None and needs_drafter(spec.strategy):
        notes.append(f"the drafter {spec.draft_model.name} shares them")
    out = dataclasses.replace(sc, chips=chips, tensor_parallel=tp)
    system = sc.system
    return out, GpuDeployment(
        policy=POLICY, system=system.name, chips_installed=system.chips,
        chips_active=system.chips, chips=chips, tensor_parallel=tp, stages=chips // tp,
        expert_parallel=1, draft_chips=0, context_window=window, reason="; ".join(notes))
