"""The GPU spec dataclasses: one HBM GPU (`kind: gpu`) and the parts of a GPU server system
(`kind: gpu_system`, whose `GpuSystemSpec` sits in `lpusim.config.specs` beside `SystemSpec`).

A `GpuSpec` holds what the vendor publishes (HBM capacity and bandwidth, dense tensor rates,
NVLink and PCIe bandwidth) and the named constants of the GPU step model that no datasheet
gives: the achieved fractions of the peak rates and the fixed latencies of a kernel, of a
collective and of a decode step. Each of those is a `Bounded*` triple (value, min, max): the
value used, and the physically plausible range a calibration may move it within (each bound
with a source or the word `assumption` in the YAML). A `GpuSystemSpec` is a number of servers
of `gpus_per_node` GPUs that share one NVLink/NVSwitch domain, joined by a scale-out network
(InfiniBand). Quantities are integers in base units (bytes, bytes per second, picoseconds);
tensor rates are floats in TFLOPS (10^12 FLOP/s), as vendors quote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lpusim.config.schema import nested_field, spec_field

Check = list[tuple[tuple[str, ...], str]]


def _within(value: float, lo: float, hi: float) -> Check:
    if lo > hi:
        return [(("min",), f"minimum {lo:g} is above the maximum {hi:g}")]
    if not lo <= value <= hi:
        return [(("value",), f"{value:g} is outside its bounds [{lo:g}, {hi:g}]")]
    return []


@dataclass(frozen=True, kw_only=True)
class BoundedFraction:
    """An achieved fraction of a peak rate, with the range a fit may move it within."""

    value: float = spec_field("float", min=0.01, max=1.0)
    min: float = spec_field("float", min=0.01, max=1.0)
    max: float = spec_field("float", min=0.01, max=1.0)

    def check(self) -> Check:
        return _within(self.value, self.min, self.max)


@dataclass(frozen=True, kw_only=True)
class BoundedTime:
    """A fixed latency in picoseconds, with the range a fit may move it within."""

    value_ps: int = spec_field("time", max=10**12)
    min_ps: int = spec_field("time", max=10**12)
    max_ps: int = spec_field("time", max=10**12)

    def check(self) -> Check:
        if self.min_ps > self.max_ps:
            return [(("min_ps",), f"minimum {self.min_ps} ps is above the maximum "
                                  f"{self.max_ps} ps")]
        if not self.min_ps <= self.value_ps <= self.max_ps:
            return [(("value_ps",), f"{self.value_ps} ps is outside its bounds "
                                    f"[{self.min_ps}, {self.max_ps}] ps")]
        return []


@dataclass(frozen=True, kw_only=True)
class HbmSpec:
    capacity_bytes: int = spec_field("size", max=2**44)
    bandwidth_bytes_per_s: int = spec_field("bandwidth", max=10**15)
    reserved_bytes: int = spec_field("size", max=2**44,
                                     doc="per GPU: CUDA context, runtime and library "
                                         "workspaces; not available to weights or KV cache")


@dataclass(frozen=True, kw_only=True)
class GpuComputeSpec:
    dense_bf16_tflops: float = spec_field("float", min=0.001, max=1e6)
    dense_fp8_tflops: float = spec_field("float", min=0.001, max=1e6)
    vector_fp32_tflops: float = spec_field("float", min=0.001, max=1e6,
                                           doc="non-tensor (CUDA core) FP32 rate")


@dataclass(frozen=True, kw_only=True)
class GpuLinksSpec:
    nvlink_bandwidth_bytes_per_s: int = spec_field("bandwidth", max=10**15,
                                                   doc="per GPU, per direction")
    pcie_bandwidth_bytes_per_s: int = spec_field("bandwidth", max=10**15,
                                                 doc="host link, per direction")


@dataclass(frozen=True, kw_only=True)
class GpuEfficiencySpec:
    """Achieved fractions of the peak rates."""

    hbm: BoundedFraction = nested_field()
    compute: BoundedFraction = nested_field()     # tensor and vector units alike
    nvlink: BoundedFraction = nested_field()


@dataclass(frozen=True, kw_only=True)
class GpuLatencySpec:
    """Fixed costs, each paid once per occurrence."""

    kernel: BoundedTime = nested_field()          # per kernel: launch gap, ramp-up and tail
    allreduce: BoundedTime = nested_field()       # per NVLink collective: sync and launch
    step: BoundedTime = nested_field()            # per decode step: sampling, host runtime


@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    name: str = spec_field("str")
    clock_hz: int = spec_field("frequency", max=10**12,
                               doc="time base of the step's cycle counts (rates come from "
                                   "the TFLOPS figures)")
    hbm: HbmSpec = nested_field()
    compute: GpuComputeSpec = nested_field()
    links: GpuLinksSpec = nested_field()
    efficiency: GpuEfficiencySpec = nested_field()
    latency: GpuLatencySpec = nested_field()
    fitted: str = spec_field("str", "none",
                             doc="the fields `lpusim.gpu.calibrate` set from the training point "
                                 "(dotted within this spec, comma-separated), or 'none'")
    source: str = spec_field("str", "")

    @property
    def usable_hbm_bytes(self) -> int:
        return self.hbm.capacity_bytes - self.hbm.reserved_bytes

    @property
    def achieved_hbm_bytes_per_s(self) -> float:
        return self.hbm.bandwidth_bytes_per_s * self.efficiency.hbm.value

    @property
    def achieved_nvlink_bytes_per_s(self) -> float:
        return self.links.nvlink_bandwidth_bytes_per_s * self.efficiency.nvlink.value

    def check(self) -> Check:
        if self.hbm.reserved_bytes >= self.hbm.capacity_bytes:
            return [(("hbm", "reserved_bytes"),
                     f"reserved {self.hbm.reserved_bytes} B is not below the HBM "
                     f"{self.hbm.capacity_bytes} B")]
        return []

    def derived(self) -> dict[str, Any]:
        return {
            "usable_hbm_bytes": self.usable_hbm_bytes,
            "achieved_hbm_bytes_per_s": self.achieved_hbm_bytes_per_s,
            "achieved_nvlink_bytes_per_s": self.achieved_nvlink_bytes_per_s,
            "achieved_dense_fp8_tflops": self.compute.dense_fp8_tflops
            * self.efficiency.compute.value,
            "achieved_dense_bf16_tflops": self.compute.dense_bf16_tflops
            * self.efficiency.compute.value,
            "ridge_fp8_flops_per_byte": self.compute.dense_fp8_tflops * 1e12
            / self.hbm.bandwidth_bytes_per_s,
        }


@dataclass(frozen=True, kw_only=True)
class GpuTopologySpec:
    gpus_per_node: int = spec_field("int", min=1, max=1024,
                                    doc="GPUs of one server, one NVLink/NVSwitch domain")
    nodes: int = spec_field("int", 1, min=1, max=100_000)

    @property
    def chips_per_node(self) -> int:
        """The name the scenario layer uses for a node's chips."""
        return self.gpus_per_node


@dataclass(frozen=True, kw_only=True)
class ScaleOutSpec:
    """The network between servers (pipeline stages on different servers use it)."""

    bandwidth_bytes_per_s: int = spec_field("bandwidth", max=10**15, doc="per GPU, per direction")
    latency_ps: int = spec_field("time", max=10**12, doc="one message, end to end")
