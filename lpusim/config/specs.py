"""The spec dataclasses: chip, system, model and scenario.

Each is a frozen dataclass built from a versioned YAML document (`kind:` and `version:`) by
`lpusim.config.load`. Quantities are integers in base units (bytes, hertz, bytes per second,
picoseconds, watts); derived facts (peak ops, SRAM bytes, parameter counts) are computed here
from the structural numbers, never typed in as totals. Money is plain floats in US dollars
(fields named `_usd`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from lpusim import strategy_traits
from lpusim.config.gpu_specs import GpuSpec, GpuTopologySpec, ScaleOutSpec
from lpusim.config.schema import nested_field, spec_field

DTYPE_BITS = {"int4": 4, "int8": 8, "fp8": 8, "fp16": 16, "bf16": 16, "fp32": 32, "int32": 32}
DTYPES = ("int4", "int8", "fp8", "fp16", "bf16", "fp32")
ACTIVATIONS = ("swiglu", "geglu", "gelu")
GATED_ACTIVATIONS = ("swiglu", "geglu")
LAYER_KINDS = ("G", "L")   # attention_pattern letters: global, local (sliding window)
BIG = 10**6  # upper bound for counts that no real design exceeds (rejects absurd input)
MAX_LINKS = 500_000  # chip-to-chip links of a system (a 2,304-chip system has 12,512)

Check = list[tuple[tuple[str, ...], str]]


def dtype_bytes(dtype: str, elements: int) -> int:
    """Bytes taken by `elements` values of `dtype` (rounded up to whole bytes)."""
    return -(-elements * DTYPE_BITS[dtype] // 8)


# ----------------------------------------------------------------------------- chip


@dataclass(frozen=True, kw_only=True)
class VectorSpec:
    superlanes: int = spec_field("int", min=1, max=1024)
    lanes_per_superlane: int = spec_field("int", min=1, max=1024)
    bytes_per_lane: int = spec_field("int", 1, min=1, max=64)


@dataclass(frozen=True, kw_only=True)
class MemSpec:
    slices: int = spec_field("int", min=1, max=10_000)
    slice_capacity_bytes: int = spec_field("size", max=2**40)
    reserved_bytes: int = spec_field("size", max=2**40,
                                     doc="per chip: program, stream buffers, scratch")
    vectors_per_slice_per_cycle: int = spec_field("int", 1, min=1, max=64)
    read_latency_cycles: int = spec_field("int", min=0, max=10_000)


@dataclass(frozen=True, kw_only=True)
class StreamSpec:
    per_direction: int = spec_field("int", min=1, max=1024)
    transit_cycles_per_slice: int = spec_field("int", 1, min=0, max=100)
    slices_mem_to_mxm: int = spec_field("int", min=0, max=10_000)
    slices_mem_to_vxm: int = spec_field("int", min=0, max=10_000)


@dataclass(frozen=True, kw_only=True)
class MxmSpec:
    planes: int = spec_field("int", min=1, max=1024)
    rows: int = spec_field("int", min=1, max=65_536)
    cols: int = spec_field("int", min=1, max=65_536)
    weight_load_streams: int = spec_field("int", min=1, max=1024)
    install_cycles: int = spec_field("int", min=0, max=100_000)
    pipeline_latency_cycles: int = spec_field("int", min=0, max=100_000)
    fp16_slowdown: int = spec_field("int", min=1, max=64)


@dataclass(frozen=True, kw_only=True)
class VxmSpec:
    alus_per_lane: int = spec_field("int", min=1, max=1024)
    op_latency_cycles: int = spec_field("int", min=0, max=10_000)
    transcendental_cycles: int = spec_field("int", min=1, max=10_000)


@dataclass(frozen=True, kw_only=True)
class SxmSpec:
    vectors_per_cycle: int = spec_field("int", min=1, max=1024)
    latency_cycles: int = spec_field("int", min=0, max=10_000)


@dataclass(frozen=True, kw_only=True)
class IcuSpec:
    ripple_cycles: int = spec_field("int", min=0, max=10_000)


@dataclass(frozen=True, kw_only=True)
class C2cSpec:
    links: int = spec_field("int", min=1, max=10_000)
    lanes_per_link: int = spec_field("int", min=1, max=1024)
    lane_rate_bytes_per_s: int = spec_field("bandwidth", max=10**15)
    efficiency: float = spec_field("float", 1.0, min=0.01, max=1.0,
                                   doc="payload fraction after encoding and FEC")

    @property
    def link_bandwidth_bytes_per_s(self) -> int:
        return int(self.lanes_per_link * self.lane_rate_bytes_per_s * self.efficiency)


@dataclass(frozen=True, kw_only=True)
class ChipSpec:
    name: str = spec_field("str")
    clock_hz: int = spec_field("frequency", max=10**12)
    vector: VectorSpec = nested_field()
    mem: MemSpec = nested_field()
    streams: StreamSpec = nested_field()
    mxm: MxmSpec = nested_field()
    vxm: VxmSpec = nested_field()
    sxm: SxmSpec = nested_field()
    icu: IcuSpec = nested_field()
    c2c: C2cSpec = nested_field()
    source: str = spec_field("str", "")

    @property
    def lanes(self) -> int:
        return self.vector.superlanes * self.vector.lanes_per_superlane

    @property
    def vector_bytes(self) -> int:
        return self.lanes * self.vector.bytes_per_lane

    @property
    def sram_bytes(self) -> int:
        return self.mem.slices * self.mem.slice_capacity_bytes

    @property
    def usable_sram_bytes(self) -> int:
        return self.sram_bytes - self.mem.reserved_bytes

    @property
    def peak_int8_ops_per_s(self) -> int:
        return self.mxm.planes * self.mxm.rows * self.mxm.cols * 2 * self.clock_hz

    @property
    def peak_fp16_flops_per_s(self) -> int:
        return self.peak_int8_ops_per_s // self.mxm.fp16_slowdown

    @property
    def vxm_ops_per_s(self) -> int:
        return self.vxm.alus_per_lane * self.lanes * self.clock_hz

    @property
    def sram_read_bytes_per_s(self) -> int:
        return (self.mem.slices * self.mem.vectors_per_slice_per_cycle * self.vector_bytes
                * self.clock_hz)

    def check(self) -> Check:
        out: Check = []
        if self.mem.reserved_bytes >= self.sram_bytes:
            out.append((("mem", "reserved_bytes"),
                        f"reserved {self.mem.reserved_bytes} B is not below the SRAM "
                        f"{self.sram_bytes} B"))
        if self.mxm.rows != self.lanes or self.mxm.cols != self.lanes:
            out.append((("mxm", "rows"),
                        f"MXM tile {self.mxm.rows}x{self.mxm.cols} must match the "
                        f"{self.lanes} lanes of a vector"))
        if self.c2c.link_bandwidth_bytes_per_s < 1:
            c = self.c2c
            out.append((("c2c", "lane_rate_bytes_per_s"),
                        f"{c.lanes_per_link} lanes x {c.lane_rate_bytes_per_s} B/s x "
                        f"efficiency {c.efficiency:g} rounds to a link bandwidth of 0 B/s"))
        return out

    def derived(self) -> dict[str, Any]:
        return {
            "vector_bytes": self.vector_bytes,
            "sram_bytes": self.sram_bytes,
            "usable_sram_bytes": self.usable_sram_bytes,
            "peak_int8_ops_per_s": self.peak_int8_ops_per_s,
            "peak_fp16_flops_per_s": self.peak_fp16_flops_per_s,
            "vxm_ops_per_s": self.vxm_ops_per_s,
            "sram_read_bytes_per_s": self.sram_read_bytes_per_s,
            "link_bandwidth_bytes_per_s": self.c2c.link_bandwidth_bytes_per_s,
            "total_link_bandwidth_bytes_per_s": self.c2c.links
            * self.c2c.link_bandwidth_bytes_per_s,
        }


# ----------------------------------------------------------------------------- system


@dataclass(frozen=True, kw_only=True)
class TopologySpec:
    chips_per_node: int = spec_field("int", min=1, max=1024)
    nodes_per_rack: int = spec_field("int", min=1, max=1024)
    racks: int = spec_field("int", min=1, max=100_000)
    local_links_per_chip: int = spec_field("int", min=0, max=1024)
    global_links_per_chip: int = spec_field("int", min=0, max=1024)
    links_per_node_pair: int = spec_field("int", 1, min=1, max=1024,
                                          doc="parallel global links between two nodes of a rack")
    links_per_rack_pair: int = spec_field("int", 1, min=1, max=1024,
                                          doc="parallel global links between two racks")
    spare_nodes_per_rack: int = spec_field("int", 0, min=0, max=1024,
                                           doc="installed nodes held as hot spares, not used "
                                               "by deployments")


@dataclass(frozen=True, kw_only=True)
class LinkSpec:
    local_hop_latency_ps: int = spec_field("time", max=10**9)
    global_hop_latency_ps: int = spec_field("time", max=10**9)
    bandwidth_bytes_per_s: int | None = spec_field("bandwidth", None, max=10**15,
                                                   doc="overrides the chip's link bandwidth")


@dataclass(frozen=True, kw_only=True)
class SyncSpec:
    """Fixed latencies of the software-scheduled machine, each a named mechanism: they delay
    the chain of a decode step without occupying a functional unit or link."""

    deskew_per_stage_ps: int = spec_field("time", max=10**12,
                                          doc="realigning a stage's chips to the global "
                                              "counters when its input arrives")
    collective_latency_ps: int = spec_field("duration", 0, max=10**12,
                                            doc="fixed cost of every collective (all-reduce, "
                                                "gather, broadcast, stage hand-off): "
                                                "synchronisation, SerDes/FEC, software")
    layer_barrier_ps: int = spec_field("duration", 0, max=10**12,
                                       doc="a barrier at the start of every transformer layer")


# per fittable constant: its (minimum, maximum, nominal) fields in the calibration section; the
# nominal value is the one a hypothesis that does not fit the constant uses
_BOUND_FIELDS = {
    "deskew": ("deskew_min_ps", "deskew_max_ps", "deskew_nominal_ps"),
    "collective_latency": ("collective_latency_min_ps", "collective_latency_max_ps",
                           "collective_latency_nominal_ps"),
    "layer_barrier": ("layer_barrier_min_ps", "layer_barrier_max_ps",
                      "layer_barrier_nominal_ps"),
    "weight_load_streams": ("weight_load_streams_min", "weight_load_streams_max",
                            "weight_load_streams_nominal"),
}


@dataclass(frozen=True, kw_only=True)
class CalibrationSpec:
    """Bounds and nominal values of the constants `lpusim calibrate` may fit, and what the
    last calibration fitted."""

    global_hop_latency_min_ps: int = spec_field("time", max=10**9)
    global_hop_latency_max_ps: int = spec_field("time", max=10**9)
    deskew_min_ps: int = spec_field("time", max=10**12)
    deskew_max_ps: int = spec_field("time", max=10**12)
    deskew_nominal_ps: int = spec_field("duration", 0, max=10**12)
    collective_latency_min_ps: int = spec_field("duration", 0, max=10**12)
    collective_latency_max_ps: int = spec_field("duration", 0, max=10**12)
    collective_latency_nominal_ps: int = spec_field("duration", 0, max=10**12)
    layer_barrier_min_ps: int = spec_field("duration", 0, max=10**12)
    layer_barrier_max_ps: int = spec_field("duration", 0, max=10**12)
    layer_barrier_nominal_ps: int = spec_field("duration", 0, max=10**12)
    weight_load_streams_min: int = spec_field("int", 1, min=1, max=1024)
    weight_load_streams_max: int = spec_field("int", 1, min=1, max=1024)
    weight_load_streams_nominal: int = spec_field("int", 1, min=1, max=1024)
    fitted: str = spec_field("str", "none",
                             doc="the system fields `lpusim calibrate` fitted (dotted, "
                                 "comma-separated), or 'none'")
    hypothesis: str = spec_field("str", "none", doc="the mechanism set they were fitted in")

    def bounds(self, name: str) -> tuple[int, int, int]:
        """(low, high, nominal) of a fittable constant by its short name."""
        lo, hi, nom = _BOUND_FIELDS[name]
        return getattr(self, lo), getattr(self, hi), getattr(self, nom)

    def check(self) -> Check:
        out: Check = []
        pairs = [("global_hop_latency_min_ps", "global_hop_latency_max_ps", None),
                 *_BOUND_FIELDS.values()]
        for lo, hi, nom in pairs:
            if getattr(self, lo) > getattr(self, hi):
                out.append(((lo,), "minimum above the maximum"))
            elif nom is not None and not getattr(self, lo) <= getattr(self, nom) \
                    <= getattr(self, hi):
                out.append(((nom,), "nominal value outside the bounds"))
        return out


@dataclass(frozen=True, kw_only=True)
class CompilerSpec:
    """How the deployment's static schedule was compiled."""

    attention_span: str = spec_field("enum", "context", choices=("context", "window"),
                                     doc="context: attention is compiled for the tokens in "
                                         "the cache; window: for the whole context window "
                                         "(a static schedule that cannot shrink)")


@dataclass(frozen=True, kw_only=True)
class PowerSpec:
    """Electrical power of a deployment at load (what `lpusim.cost` turns into J/token)."""

    chip_watts: int = spec_field("power", max=10**5, doc="one chip (card) serving at load")
    host_watts_per_node: int = spec_field("power", max=10**6,
                                          doc="the host of one node: CPUs, DRAM, NICs, fans")
    cooling_overhead: float = spec_field("float", 1.0, min=1.0, max=10.0,
                                         doc="PUE: facility power over IT power")


@dataclass(frozen=True, kw_only=True)
class CostSpec:
    """A cost basis: capex amortised over years plus the electricity price, or a chip-hour
    price that replaces both (hosts, power and facility included in it)."""

    chip_capex_usd: float = spec_field("float", min=0.0, max=1e9, doc="one chip (card)")
    host_capex_usd_per_node: float = spec_field("float", min=0.0, max=1e9,
                                                doc="the host server of one node")
    amortisation_years: float = spec_field("float", min=0.01, max=100.0)
    electricity_usd_per_kwh: float = spec_field("float", min=0.0, max=100.0)
    chip_hour_usd: float | None = spec_field("float", None, min=0.0, max=1e6,
                                             doc="rented price per chip-hour (overrides "
                                                 "capex and electricity)")


@dataclass(frozen=True, kw_only=True)
class SystemSpec:
    name: str = spec_field("str")
    chip: ChipSpec = nested_field()
    topology: TopologySpec = nested_field()
    links: LinkSpec = nested_field()
    sync: SyncSpec = nested_field()
    calibration: CalibrationSpec | None = nested_field(optional=True)
    compiler: CompilerSpec = nested_field(CompilerSpec)
    power: PowerSpec | None = nested_field(optional=True)
    cost: CostSpec | None = nested_field(optional=True)

    @property
    def chips(self) -> int:
        t = self.topology
        return t.chips_per_node * t.nodes_per_rack * t.racks

    @property
    def nodes(self) -> int:
        return self.topology.nodes_per_rack * self.topology.racks

    @property
    def fitted(self) -> tuple[str, ...]:
        """Dotted system fields whose values were fitted to published figures."""
        c = self.calibration
        if c is None or c.fitted.strip() == "none":
            return ()
        return tuple(f.strip() for f in c.fitted.split(",") if f.strip())

    @property
    def active_chips(self) -> int:
        """Chips a deployment may use: the installed ones less the racks' spare nodes."""
        t = self.topology
        return t.chips_per_node * (t.nodes_per_rack - t.spare_nodes_per_rack) * t.racks

    @property
    def link_bandwidth_bytes_per_s(self) -> int:
        return self.links.bandwidth_bytes_per_s or self.chip.c2c.link_bandwidth_bytes_per_s

    def default_tensor_parallel(self, chips: int) -> int:
        """Tensor parallelism when a scenario names none: one node."""
        return self.topology.chips_per_node

    def check(self) -> Check:
        t = self.topology
        out: Check = []
        if t.chips_per_node > 1 and t.local_links_per_chip < t.chips_per_node - 1:
            out.append((("topology", "local_links_per_chip"),
                        f"{t.local_links_per_chip} local links cannot fully connect "
                        f"{t.chips_per_node} chips in a node (need {t.chips_per_node - 1})"))
        used = t.local_links_per_chip + t.global_links_per_chip
        if used > self.chip.c2c.links:
            out.append((("topology", "global_links_per_chip"),
                        f"{used} links per chip exceed the chip's {self.chip.c2c.links}"))
        if t.spare_nodes_per_rack >= t.nodes_per_rack:
            out.append((("topology", "spare_nodes_per_rack"),
                        f"{t.spare_nodes_per_rack} spare nodes leave none of a rack's "
                        f"{t.nodes_per_rack} for compute"))
        ports = t.global_links_per_chip * t.chips_per_node
        intra = (t.nodes_per_rack - 1) * t.links_per_node_pair
        if t.nodes_per_rack > 1 and ports < intra:
            out.append((("topology", "links_per_node_pair"),
                        f"{t.nodes_per_rack - 1} peer nodes x {t.links_per_node_pair} links "
                        f"need {intra} global ports per node, a node has {ports}"))
        inter = (t.racks - 1) * t.links_per_rack_pair
        rack_ports = (ports - intra) * t.nodes_per_rack
        if t.racks > 1 and rack_ports < inter:
            out.append((("topology", "links_per_rack_pair"),
                        f"{t.racks - 1} peer racks x {t.links_per_rack_pair} links need "
                        f"{inter} inter-rack ports per rack, a rack has {rack_ports} left"))
        if self.chips > 1_000_000:
            out.append((("topology", "racks"), f"{self.chips} chips is beyond any system"))
        elif self.link_count > MAX_LINKS:    # the link graph is built link by link: bound it
            out.append((("topology", "chips_per_node"),
                        f"{self.link_count} chip-to-chip links is beyond any system "
                        f"(lpusim models at most {MAX_LINKS})"))
        return out

    @property
    def link_count(self) -> int:
        """Chip-to-chip links (cables, each used in both directions) of the whole system."""
        t = self.topology
        local = self.nodes * t.chips_per_node * (t.chips_per_node - 1) // 2
        intra = t.racks * t.nodes_per_rack * (t.nodes_per_rack - 1) // 2 * t.links_per_node_pair
        inter = t.racks * (t.racks - 1) // 2 * t.links_per_rack_pair
        return local + intra + inter


@dataclass(frozen=True, kw_only=True)
class GpuSystemSpec:
    """A GPU system (`kind: gpu_system`): `nodes` servers of `gpus_per_node` GPUs, each server
    one NVLink/NVSwitch domain, joined by a scale-out network (lpusim.config.gpu_specs)."""

    name: str = spec_field("str")
    chip: GpuSpec = nested_field()
    topology: GpuTopologySpec = nested_field()
    scale_out: ScaleOutSpec = nested_field()
    power: PowerSpec | None = nested_field(optional=True)
    cost: CostSpec | None = nested_field(optional=True)
    source: str = spec_field("str", "")

    @property
    def chips(self) -> int:
        return self.topology.gpus_per_node * self.topology.nodes

    @property
    def nodes(self) -> int:
        return self.topology.nodes

    @property
    def fitted(self) -> tuple[str, ...]:
        """Dotted system fields whose values were fitted to a published figure."""
        f = self.chip.fitted
        if f.strip() == "none":
            return ()
        return tuple(f"chip.{x.strip()}" for x in f.split(",") if x.strip())

    def default_tensor_parallel(self, chips: int) -> int:
        """Tensor parallelism when a scenario names none: all its GPUs, up to one server."""
        return max(1, min(self.topology.gpus_per_node, chips))

    def check(self) -> Check:
        if self.chips > 1_000_000:
            return [(("topology", "nodes"), f"{self.chips} GPUs is beyond any system")]
        return []

    def derived(self) -> dict[str, Any]:
        c = self.chip
        return {
            "gpus": self.chips, "nodes": self.nodes,
            "hbm_bytes_total": self.chips * c.hbm.capacity_bytes,
            "hbm_bandwidth_bytes_per_s_total": self.chips * c.hbm.bandwidth_bytes_per_s,
            "dense_fp8_tflops_total": self.chips * c.compute.dense_fp8_tflops,
            **{f"gpu.{k}": v for k, v in c.derived().items()},
        }


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True, kw_only=True)
class HeadsSpec:
    count: int = spec_field("int", min=1, max=64)
    layers_per_head: int = spec_field("int", 1, min=1, max=16)
    shared_lm_head: bool = spec_field("bool", True)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name: str = spec_field("str")
    layers: int = spec_field("int", min=1, max=10_000)
    hidden_size: int = spec_field("int", min=1, max=BIG)
    ffn_size: int = spec_field("int", min=1, max=BIG)
    heads: int = spec_field("int", min=1, max=BIG)
    kv_heads: int = spec_field("int", min=1, max=BIG)
    head_dim: int = spec_field("int", min=1, max=BIG)
    vocab_size: int = spec_field("int", min=1, max=10**8)
    max_context: int = spec_field("int", min=1, max=10**8)
    tied_embeddings: bool = spec_field("bool", False)
    rope_theta: float = spec_field("float", 10000.0, min=1.0)
    norm: str = spec_field("enum", "rmsnorm", choices=("rmsnorm", "layernorm"))
    activation: str = spec_field("enum", "swiglu", choices=ACTIVATIONS,
                                 doc="swiglu: SiLU-gated FFN (3 matrices); geglu: GELU-gated "
                                     "(3 matrices, Gemma); gelu: plain GELU MLP (2 matrices)")
    qkv_bias: bool = spec_field("bool", False, doc="biases on the q, k and v projections "
                                                   "(Qwen 2.5)")
    post_norms: bool = spec_field("bool", False,
                                  doc="a norm also on the attention and FFN outputs before "
                                      "each residual add: 4 norms per layer (Gemma 2)")
    scale_embeddings: bool = spec_field("bool", False,
                                        doc="multiply the looked-up embeddings by "
                                            "sqrt(hidden_size) (Gemma)")
    sliding_window: int | None = spec_field("int", None, min=1, max=10**8,
                                            doc="tokens a local layer attends to (its own "
                                                "included) and keeps in its KV cache")
    attention_pattern: str = spec_field("str", "G",
                                        doc="layer kinds from layer 0, repeated: G global, "
                                            "L local (sliding window); LG: Gemma 2, L: "
                                            "Mistral 7B v0.1")
    attn_logit_softcap: float | None = spec_field("float", None, min=1e-3, max=1e6,
                                                  doc="attention logits become "
                                                      "cap * tanh(logits / cap) (Gemma 2)")
    final_logit_softcap: float | None = spec_field("float", None, min=1e-3, max=1e6,
                                                   doc="output logits become "
                                                       "cap * tanh(logits / cap) (Gemma 2)")
    experts: int = spec_field("int", 1, min=1, max=10_000)
    experts_per_token: int = spec_field("int", 1, min=1, max=10_000)
    speculative_heads: HeadsSpec | None = nested_field(optional=True)
    source: str = spec_field("str", "")

    def check(self) -> Check:
        out: Check = []
        if self.heads % self.kv_heads:
            out.append((("kv_heads",), f"{self.kv_heads} KV heads do not divide "
                                       f"{self.heads} query heads"))
        if self.experts_per_token > self.experts:
            out.append((("experts_per_token",),
                        f"{self.experts_per_token} experts per token exceed the "
                        f"{self.experts} experts"))
        bad = sorted(set(self.attention_pattern) - set(LAYER_KINDS))
        if bad or len(self.attention_pattern) > self.layers:
            why = (f"unknown layer kind {bad[0]!r}" if bad else
                   f"longer than the {self.layers} layers")
            out.append((("attention_pattern",),
                        f"{self.attention_pattern[:40]!r}: {why}; expected a string of "
                        f"G (global) and L (local, sliding window), like 'LG'"))
        elif "L" in self.attention_pattern and self.sliding_window is None:
            out.append((("attention_pattern",),
                        f"{self.attention_pattern!r} has local layers (L) but the model "
                        f"has no sliding_window"))
        elif self.sliding_window is not None and "L" not in self.attention_pattern:
            out.append((("sliding_window",),
                        f"sliding_window {self.sliding_window} is set but attention_pattern "
                        f"{self.attention_pattern!r} has no local layer (L)"))
        return out

    # layer kinds ------------------------------------------------------------------
    def is_local(self, layer: int) -> bool:
        """Whether `layer` (0-based) attends through the sliding window."""
        pat = self.attention_pattern
        return pat[layer % len(pat)] == "L"

    @property
    def local_layers(self) -> int:
        return sum(self.is_local(i) for i in range(self.layers))

    def kv_tokens(self, layer: int, tokens: int) -> int:
        """Tokens of a sequence `layer` keeps in its KV cache when `tokens` have been seen:
        a local layer keeps only its window (a rolling buffer)."""
        if self.sliding_window is not None and self.is_local(layer):
            return min(tokens, self.sliding_window)
        return tokens

    # parameter counts -------------------------------------------------------------
    @property
    def attention_params(self) -> int:
        h, d = self.hidden_size, self.head_dim
        bias = (self.heads + 2 * self.kv_heads) * d if self.qkv_bias else 0
        return h * self.heads * d * 2 + h * self.kv_heads * d * 2 + bias

    @property
    def ffn_matrices(self) -> int:
        """Weight matrices of one FFN: gate, up and down when gated, else up and down."""
        return 3 if self.activation in GATED_ACTIVATIONS else 2

    @property
    def ffn_params_per_expert(self) -> int:
        return self.ffn_matrices * self.hidden_size * self.ffn_size

    @property
    def norms_per_layer(self) -> int:
        return 4 if self.post_norms else 2

    @property
    def norm_params_per_layer(self) -> int:
        per = 1 if self.norm == "rmsnorm" else 2
        return self.norms_per_layer * per * self.hidden_size

    @property
    def router_params(self) -> int:
        return self.hidden_size * self.experts if self.experts > 1 else 0

    @property
    def layer_params(self) -> int:
        return (self.attention_params + self.experts * self.ffn_params_per_expert
                + self.norm_params_per_layer + self.router_params)

    @property
    def layer_active_params(self) -> int:
        return (self.attention_params + self.experts_per_token * self.ffn_params_per_expert
                + self.norm_params_per_layer + self.router_params)

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    @property
    def final_norm_params(self) -> int:
        return self.hidden_size * (1 if self.norm == "rmsnorm" else 2)

    @property
    def heads_params(self) -> int:
        """Medusa-style heads: per head, residual blocks (h x h + bias) and maybe an LM head."""
        if self.speculative_heads is None:
            return 0
        s = self.speculative_heads
        h = self.hidden_size
        block = s.layers_per_head * (h * h + h)
        own_head = 0 if s.shared_lm_head else self.vocab_size * h
        return s.count * (block + own_head)

    @property
    def total_params(self) -> int:
        return (self.embedding_params + self.layers * self.layer_params + self.final_norm_params
                + self.lm_head_params)

    @property
    def active_params(self) -> int:
        return (self.embedding_params + self.layers * self.layer_active_params
                + self.final_norm_params + self.lm_head_params)

    def kv_bytes_per_token(self, kv_dtype: str = "fp16") -> int:
        """KV bytes one more token of context adds while it is within every window."""
        return dtype_bytes(kv_dtype, 2 * self.layers * self.kv_heads * self.head_dim)

    def kv_cache_bytes(self, tokens: int, kv_dtype: str = "fp16") -> int:
        """KV bytes of one sequence of `tokens` tokens: local layers hold at most their
        window."""
        held = sum(self.kv_tokens(i, tokens) for i in range(self.layers))
        return dtype_bytes(kv_dtype, 2 * held * self.kv_heads * self.head_dim)

    def derived(self, weight_dtype: str = "int8", kv_dtype: str = "fp16") -> dict[str, Any]:
        return {
            "total_params": self.total_params,
            "active_params": self.active_params,
            "speculative_head_params": self.heads_params,
            "weight_bytes": dtype_bytes(weight_dtype, self.total_params + self.heads_params),
            "weight_dtype": weight_dtype,
            "kv_bytes_per_token": self.kv_bytes_per_token(kv_dtype),
            "kv_bytes_at_max_context": self.kv_cache_bytes(self.max_context, kv_dtype),
            "kv_dtype": kv_dtype,
            "decode_flops_per_token": 2 * self.active_params,
        }


# ----------------------------------------------------------------------------- scenario


@dataclass(frozen=True, kw_only=True)
class PrecisionSpec:
    # defaults: Groq's TruePoint numerics (groq.com blog "Inside the LPU", 2025): 8-bit
    # weights, FP8 storage of activations (and so of the KV cache), FP32 attention logits
    weights: str = spec_field("enum", "int8", choices=DTYPES)
    activations: str = spec_field("enum", "fp8", choices=DTYPES)
    kv: str = spec_field("enum", "fp8", choices=DTYPES)
    logits: str = spec_field("enum", "fp32", choices=DTYPES)


@dataclass(frozen=True, kw_only=True)
class SpeculationSpec:
    # the live list of names: a strategy registered at run time is a valid choice
    strategy: str = spec_field("enum", "draft", choices=strategy_traits.names(),
                               doc=strategy_traits.described())
    draft_model: ModelSpec | None = nested_field(optional=True)
    draft_chips: int | str = spec_field("int_or_auto", "auto", min=1, max=BIG)
    pipelined: bool = spec_field("bool", False,
                                 doc="draft: draft the next window during verification")
    gamma: int | str = spec_field("int_or_auto", "auto", min=1, max=256)
    max_gamma: int = spec_field("int", 32, min=1, max=256)
    curve: str = spec_field("enum", "searched", choices=("searched", "every"),
                            doc="gamma auto: 'searched' compiles the gammas the exact search "
                                "needs; 'every' compiles every gamma up to the limit, for a "
                                "whole tokens/s-vs-gamma curve (same optimum)")
    acceptance: Any = spec_field("scalar_or_str", 0.8)
    heads: int | None = spec_field("int", None, min=1, max=64)
    tree_width: int | None = spec_field("int", None, min=1, max=16,
                                        doc="heads: top-s candidates per head (tree); "
                                            "None: chain")
    monte_carlo_passes: int = spec_field("int", 100_000, min=100, max=10**7)

    def check(self) -> Check:
        out: Check = []
        if self.gamma != "auto" and self.gamma > self.max_gamma:  # type: ignore[operator]
            out.append((("gamma",), f"gamma {self.gamma} exceeds max_gamma {self.max_gamma}"))
        if isinstance(self.acceptance, int | float) and not 0 <= self.acceptance <= 1:
            out.append((("acceptance",), f"{self.acceptance:g} is outside [0, 1]"))
        elif isinstance(self.acceptance, str):
            bad = _acceptance_probabilities(self.acceptance)
            if bad:
                out.append((("acceptance",), bad))
        return out


def _acceptance_probabilities(text: str) -> str | None:
    """The numbers of an acceptance list (`0.9,0.8`) or mixture (`mix:0.5@0.9,...`) checked
    at validation time, so the error has its position; presets and trace files (which need
    lpusim.speculative and the scenario's directory) are checked when the run starts."""
    t = text.strip()
    mix = t.lower().startswith("mix:")
    if not mix and "," not in t:
        return None
    weights = []
    for i, part in enumerate((t[4:] if mix else t).split(",")):
        w, sep, prob = part.strip().partition("@") if mix else ("", "", part.strip())
        try:
            a = float(prob)
        except ValueError:
            a = None                      # a preset in a mixture, or a malformed part
        if a is not None and not (math.isfinite(a) and 0 <= a <= 1):
            where = f"mixture part {i + 1}" if mix else f"position {i + 1}"
            return f"{where}: acceptance {prob.strip()} is outside [0, 1] in {text!r}"
        if mix:
            try:
                weights.append(float(w))
            except ValueError:
                return None               # malformed: the run reports it in full
    if mix and weights and abs(sum(weights) - 1) > 1e-6:
        return f"mixture weights must sum to 1, got {sum(weights):g} in {text!r}"
    return None


@dataclass(frozen=True, kw_only=True)
class ScenarioSpec:
    name: str = spec_field("str")
    model: ModelSpec = nested_field()
    system: SystemSpec | GpuSystemSpec = nested_field()
    chips: int | None = spec_field("int", None, min=1, max=BIG)
    tensor_parallel: int | None = spec_field("int", None, min=1, max=4096)
    expert_parallel: bool | None = spec_field("bool", None,
                                              doc="MoE: experts whole on the chips of a stage "
                                                  "(true) or sharded across them (false); "
                                                  "default: the deployment policy decides")
    batch: int = spec_field("int", 1, min=1, max=65_536)
    context: int = spec_field("int", 8192, min=1, max=10**8,
                              doc="tokens in the KV cache at the measured step")
    context_window: int | None = spec_field("int", None, min=1, max=10**8,
                                            doc="the endpoint's context window: KV cache "
                                                "reserved in SRAM per sequence (default: "
                                                "context); capped at the model's maximum")
    precision: PrecisionSpec = nested_field(PrecisionSpec)
    fidelity: str = spec_field("enum", "fast", choices=("fast", "full"))
    seed: int = spec_field("int", 0, min=0, max=2**63 - 1)
    speculation: SpeculationSpec | None = nested_field(optional=True)
    file: str = ""

    def check(self) -> Check:
        out: Check = []
        cpn = self.system.topology.chips_per_node
        if self.chips is not None and self.chips > self.system.chips:
            out.append((("chips",), f"{self.chips} chips exceed the system's "
                                    f"{self.system.chips}"))
        if self.tp > cpn and self.tp % cpn:
            out.append((("tensor_parallel",), f"tensor parallelism {self.tp} beyond a node must "
                                              f"span whole nodes of {cpn} chips"))
        elif isinstance(self.system, SystemSpec) and self.tp < cpn and cpn % self.tp:
            # an LPU node is a fully connected group: smaller groups must tile it (a GPU
            # server's switch takes any group)
            out.append((("tensor_parallel",), f"tensor parallelism {self.tp} must divide a "
                                              f"node's {cpn} chips"))
        elif self.chips_used % self.tp:
            out.append((("chips",), f"{self.chips_used} chips are not a whole number of "
                                    f"tensor-parallel groups of {self.tp}"))
        if self.context > self.model.max_context:
            out.append((("context",), f"context {self.context} exceeds the model's "
                                      f"max_context {self.model.max_context}"))
        # a window beyond the model's maximum context is capped when the deployment is
        # resolved (lpusim.deploy), not refused: `run --model llama-2-70b` just works
        elif self.context_window is not None and self.context > self.context_window:
            out.append((("context",), f"context {self.context} exceeds the "
                                      f"context_window {self.context_window}"))
        if self.speculation is not None and self.speculation.draft_model is None \
                and strategy_traits.needs_drafter(self.speculation.strategy):
            out.append((("speculation", "draft_model"),
                        f"strategy '{self.speculation.strategy}' needs a draft_model"))
        return out

    @property
    def window(self) -> int:
        """Tokens of KV cache reserved per sequence: `context_window`, or the context."""
        return self.context_window or self.context

    def window_capped(self) -> tuple[ScenarioSpec, list[str]]:
        """This scenario with its window capped at the model's maximum context and the
        context at the window (every backend deploys that), and a note per cap."""
        notes = []
        window = self.window
        if window > self.model.max_context:
            notes.append(f"window {window:,} capped at {self.model.name}'s maximum context "
                         f"{self.model.max_context:,}")
            window = self.model.max_context
        context = self.context
        if context > window:
            notes.append(f"context {context:,} capped at the window {window:,}")
            context = window
        return dataclasses.replace(self, context=context, context_window=window), notes

    @property
    def chips_used(self) -> int:
        return self.chips if self.chips is not None else self.system.chips

    @property
    def tp(self) -> int:
        return self.tensor_parallel or self.system.default_tensor_parallel(self.chips_used)
