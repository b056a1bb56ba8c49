"""Perfetto / Chrome trace export of a simulated program.

One trace process per chip, one thread per functional unit and per outgoing link, complete
("X") events named after the ops, with metadata events naming chips, units and links. Times
are microseconds of simulated time. Filters on chip and block ranges keep traces of hundreds of
chips small enough to open.
"""

from __future__ import annotations

import json
from typing import Any

from lpusim.program import UNITS, Program
from lpusim.sim import SimResult


def chrome_trace(res: SimResult, *, chips: range | None = None,
                 blocks: range | None = None) -> dict[str, Any]:
    """The trace as a Chrome trace-event JSON object."""
    prog: Program = res.program
    us = 1e6 / prog.clock_hz
    ev: list[dict[str, Any]] = []
    named: set[tuple[int, int]] = set()
    chips_seen: set[int] = set()
    link_tid = {lk.id: len(UNITS) + k for k, lk in enumerate(prog.links)}

    def keep(chip: int, block: int) -> bool:
        return (chips is None or chip in chips) and (blocks is None or block in blocks)

    for i in prog.instructions:
        if not keep(i.chip, i.block):
            continue
        tid = UNITS.index(i.unit)
        chips_seen.add(i.chip)
        named.add((i.chip, tid))
        ev.append({"ph": "X", "pid": i.chip, "tid": tid, "name": i.op,
                   "ts": round(res.start[i.id] * us, 4), "dur": round(i.duration * us, 4),
                   "cat": i.category,
                   "args": {"id": i.id, "issue_cycle": i.issue, "duration_cycles": i.duration,
                            "ready_cycle": res.ready[i.id], "block": i.block}})
    links = {lk.id: lk for lk in prog.links}
    for t in prog.transfers:
        if not keep(t.src, t.block):
            continue
        for h, lid in enumerate(t.route):
            lk = links[lid]
            tid = link_tid[lid]
            chips_seen.add(lk.src)
            named.add((lk.src, tid))
            ev.append({"ph": "X", "pid": lk.src, "tid": tid, "name": t.op,
                       "ts": round(t.hop_start(h) * us, 4),
                       "dur": round(t.serialisation * us, 4), "cat": "link",
                       "args": {"id": t.id, "src": t.src, "dst": t.dst, "bytes": t.nbytes,
                                "hop": h}})
    meta: list[dict[str, Any]] = []
    for c in sorted(chips_seen):
        meta.append({"ph": "M", "pid": c, "name": "process_name", "args": {"name": f"chip {c}"}})
        meta.append({"ph": "M", "pid": c, "name": "process_sort_index", "args": {"sort_index": c}})
    for c, tid in sorted(named):
        if tid < len(UNITS):
            label = UNITS[tid].upper()
        else:
            lk = prog.links[tid - len(UNITS)]
            label = f"link {lk.src}->{lk.dst} ({lk.kind})"
        meta.append({"ph": "M", "pid": c, "tid": tid, "name": "thread_name",
                     "args": {"name": label}})
    ev.sort(key=lambda e: (e["pid"], e["tid"], e["ts"], e["args"]["id"]))
    return {"traceEvents": meta + ev, "displayTimeUnit": "ns",
            "otherData": {"program": prog.name, "clock_hz": prog.clock_hz,
                          "latency_cycles": res.latency_cycles}}


def trace_json(res: SimResult, **kw: Any) -> str:
    return json.dumps(chrome_trace(res, **kw), separators=(",", ":"))
