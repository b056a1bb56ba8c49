"""The compiled `Program`: the contract between the compiler and the simulator.

A Program is a static schedule. Every `Instr` sits on one functional-unit queue of one chip at a
fixed issue cycle; every `Transfer` occupies the links of its route at fixed cycles. `deps` must
have arrived before an item issues; `stream` deps (a subset) are consumed vector by vector as
they arrive: the item may issue once their first vector is there (`ready - busy`) and cannot
finish before their last one (its `busy` covers the wait). Time
fields are integer cycles of the chip clock. The result of an instruction is available at
`issue + duration + transit + fill` (busy cycles on the unit, stream transit to and from SRAM,
pipeline fill and instruction ripple); a transfer's data arrive at `issue + serialisation +
sum(hop latencies)` (cut-through: hop i starts `sum(hop latencies before i)` after issue).
Instructions, transfers and links are named tuples (immutable, and cheap to make: a step
makes 10^4-10^5 of them); programs are frozen, serialise to canonical JSON, and hash stably
(SHA-256; a fast-fidelity program hashes a canonical binary form of its templates).
"""

from __future__ import annotations

import hashlib
import json
import marshal
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from lpusim.caches import BoundedCache

UNITS = ("icu", "mem", "sxm", "mxm", "vxm")
CATEGORIES = ("compute_mxm", "compute_vxm", "data_movement", "link_serialisation",
              "link_latency", "synchronisation", "pipeline_fill", "collective_latency",
              "layer_barrier", "stage_deskew")
# categories of fixed latencies (named mechanisms): an instruction of one of these spends its
# `fill` in its own category, not in pipeline fill
LATENCY_CATEGORIES = ("collective_latency", "layer_barrier", "stage_deskew")


class Instr(NamedTuple):
    id: int
    chip: int
    unit: str
    op: str
    block: int              # placement block index (0 embed, 1.. layers, last head)
    issue: int
    duration: int
    transit: int
    fill: int
    category: str
    deps: tuple[int, ...]
    stream: tuple[int, ...] = ()

    @property
    def busy(self) -> int:
        return self.duration

    @property
    def end(self) -> int:
        return self.issue + self.duration

    @property
    def ready(self) -> int:
        return self.issue + self.duration + self.transit + self.fill


class Transfer(NamedTuple):
    id: int
    src: int
    dst: int
    route: tuple[int, ...]          # link ids, in order
    hop_latency: tuple[int, ...]    # cycles per hop
    nbytes: int
    op: str
    block: int
    issue: int
    serialisation: int
    deps: tuple[int, ...]
    stream: tuple[int, ...] = ()

    @property
    def busy(self) -> int:
        return self.serialisation

    @property
    def ready(self) -> int:
        return self.issue + self.serialisation + sum(self.hop_latency)

    def hop_start(self, i: int) -> int:
        return self.issue + sum(self.hop_latency[:i])


class Link(NamedTuple):
    id: int
    src: int
    dst: int
    kind: str               # "local" (inside a node) or "global"


def _table(cls: Any, items: tuple[Any, ...]) -> dict[str, Any]:
    """Items as a table: the field names once, then one row of values per item (compact,
    and several times faster to encode than one mapping per item)."""
    return {"columns": list(cls._fields), "rows": [tuple(x) for x in items]}


def _untable(cls: Any, table: dict[str, Any]) -> tuple[Any, ...]:
    cols = table["columns"]
    out = []
    for row in table["rows"]:
        kw = dict(zip(cols, row, strict=True))
        for k in ("deps", "stream", "route", "hop_latency"):
            if k in kw:
                kw[k] = tuple(kw[k])
        out.append(cls(**kw))
    return tuple(out)


def stream_release(producer: Instr | Transfer) -> int:
    """When a streaming consumer may start: the producer's first vector is out."""
    return producer.ready - producer.busy


@dataclass(frozen=True)
class Program:
    name: str
    clock_hz: int
    chips: tuple[int, ...]
    instructions: tuple[Instr, ...]
    transfers: tuple[Transfer, ...]
    links: tuple[Link, ...]
    sram_capacity_bytes: int
    sram_bytes: dict[int, dict[str, int]] = field(default_factory=dict)  # chip -> category
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # field by field: dataclasses.asdict deep-copies and is far slower on 10^5 items
        return {
            "name": self.name, "clock_hz": self.clock_hz, "chips": list(self.chips),
            "instructions": _table(Instr, self.instructions),
            "transfers": _table(Transfer, self.transfers),
            "links": _table(Link, self.links),
            "sram_capacity_bytes": self.sram_capacity_bytes,
            "sram_bytes": {str(k): v for k, v in sorted(self.sram_bytes.items())},
            "meta": self.meta,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          check_circular=False)   # the same bytes, no id() bookkeeping

    def content_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def canonical_bytes(self) -> bytes:
        """The program as plain values in marshal format version 2 (no references and no
        interning flags, which appear from version 3: the same values give the same bytes in
        every process and Python version), several times cheaper than its JSON. A tuple is
        its type byte, its length and its elements' bytes one after another, so the bytes of
        the items are composed from those kept for the same item tuples (`_items_bytes`)."""
        head: tuple[Any, ...] = (self.name, self.clock_hz, tuple(self.chips))
        tail: tuple[Any, ...] = (tuple(map(tuple, self.links)), self.sram_capacity_bytes,
                                 _plain_sram(self.sram_bytes),
                                 json.dumps(self.meta, sort_keys=True))
        return b"".join((_TUPLE_OF_9, *(marshal.dumps(x, 2) for x in head),
                         _items_bytes(self.instructions), _items_bytes(self.transfers),
                         *(marshal.dumps(x, 2) for x in tail)))

    @property
    def makespan(self) -> int:
        ends = [i.ready for i in self.instructions] + [t.ready for t in self.transfers]
        return max(ends, default=0)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Program:
        return Program(
            name=d["name"], clock_hz=d["clock_hz"], chips=tuple(d["chips"]),
            instructions=_untable(Instr, d["instructions"]),
            transfers=_untable(Transfer, d["transfers"]),
            links=_untable(Link, d["links"]),
            sram_capacity_bytes=d["sram_capacity_bytes"],
            sram_bytes={int(k): v for k, v in d["sram_bytes"].items()},
            meta=d.get("meta", {}),
        )


@dataclass(frozen=True)
class Handoff:
    """A stage-to-stage transfer in a pipelined program (fast fidelity)."""

    src: int
    dst: int
    nbytes: int
    serialisation: int
    hop_latency: tuple[int, ...]

    @property
    def cycles(self) -> int:
        return self.serialisation + sum(self.hop_latency)


@dataclass(frozen=True)
class PipelineProgram:
    """A decode step as stage templates (fast fidelity).

    Stages with the same blocks and the same entry/exit relation compile to identical programs
    up to a time offset, so each distinct one is kept once (`templates`, each starting with its
    input on its entry chip at cycle 0 and ending with its output on its exit chip); a stage
    may instead be a run of part templates, one per block, each starting when the previous
    one's last result is ready. `stages` names the template of every stage, or of every part,
    in pipeline order (a stage's first template includes the hand-off into it) and
    `stage_of` the stage each belongs to; `handoffs` holds the return of the sampled tokens
    to stage 0.
    """

    name: str
    clock_hz: int
    chips: int
    templates: dict[str, Program]
    stages: tuple[str, ...]
    stage_of: tuple[int, ...]
    handoffs: tuple[Handoff, ...]
    sram_capacity_bytes: int
    sram_bytes: dict[int, dict[str, int]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # how templates join (derived from them, so not part of the JSON): per template, the items
    # putting its output on each chip of its stage in chip order (the last stage: the exit
    # chip's), and its hand-off pieces: transfer id -> position of the sending chip in the
    # previous stage
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    pieces: dict[str, dict[int, int]] = field(default_factory=dict)
    # per entry of `stages`, a part after a stage's first: its roots (task -> the previous
    # part's task its critical path continues in); None for a stage's first template
    joins: tuple[dict[int, int] | None, ...] = ()

    def to_json(self) -> str:
        d = {"name": self.name, "clock_hz": self.clock_hz, "chips": self.chips,
             "templates": {k: v.to_dict() for k, v in sorted(self.templates.items())},
             "stages": list(self.stages), "stage_of": list(self.stage_of),
             "handoffs": [asdict(h) for h in self.handoffs],
             "sram_capacity_bytes": self.sram_capacity_bytes,
             "sram_bytes": {str(k): v for k, v in sorted(self.sram_bytes.items())},
             "meta": self.meta}
        return json.dumps(d, sort_keys=True, separators=(",", ":"), check_circular=False)

    def content_hash(self) -> str:
        """SHA-256 of the program's canonical bytes: its own fields, then each template
        (`Program.canonical_bytes`) by key, so every distinct program hashes differently and
        the same one alike in every process."""
        h = hashlib.sha256(marshal.dumps((
            self.name, self.clock_hz, self.chips, tuple(self.stages), tuple(self.stage_of),
            tuple(tuple(asdict(x).values()) for x in self.handoffs),
            self.sram_capacity_bytes, _plain_sram(self.sram_bytes),
            json.dumps(self.meta, sort_keys=True)), 2))
        for key, prog in sorted(self.templates.items()):
            h.update(marshal.dumps(key, 2))
            h.update(prog.canonical_bytes())
        return h.hexdigest()


_TUPLE_OF_9 = b"(" + struct.pack("<i", 9)     # marshal v2: a tuple's type byte and length

# (id of a tuple of items) -> (the tuple, its marshal v2 bytes): a fast-fidelity template reused
# from an earlier compile (the same item objects) is not converted and marshalled again. The
# entry holds the tuple, so no other object has its id. At most 5 x 10^4 items in all
_ITEM_BYTES: BoundedCache[tuple[Any, bytes]] = BoundedCache(
    "program_item_bytes", maxsize=4096, weigh=lambda v: len(v[0]), max_weight=50_000)


def _items_bytes(items: tuple[Any, ...]) -> bytes:
    """marshal.dumps(tuple(map(tuple, items)), 2), kept by the identity of `items`."""
    hit = _ITEM_BYTES.get(id(items))
    if hit is not None and hit[0] is items:
        return hit[1]
    data = marshal.dumps(tuple(map(tuple, items)), 2)
    _ITEM_BYTES.put(id(items), (items, data))
    return data


def _plain_sram(sram: dict[int, dict[str, int]]) -> tuple[tuple[int, tuple[Any, ...]], ...]:
    return tuple((c, tuple(sorted(cats.items()))) for c, cats in sorted(sram.items()))
