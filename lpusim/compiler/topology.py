"""The chip-to-chip link graph of a system and the compiler's routes over it.

Chips are numbered rack-major: chip = (rack * nodes_per_rack + node) * chips_per_node + local.
Inside a node every pair of chips has a direct local link (each direction is its own link).
Between the nodes of a rack, each pair of nodes has one global link, and between racks each
pair of racks has one global link, as in a Dragonfly whose groups are racks. Which chip owns a
global port is assigned round-robin, deterministically. Routes minimise total hop latency;
ties are broken by the lowest chip ids, so routes are reproducible.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from lpusim.config.specs import SystemSpec
from lpusim.program import Link
from lpusim.units import ps_to_cycles


@dataclass
class LinkGraph:
    chips: int
    chips_per_node: int
    nodes_per_rack: int
    links: list[Link] = field(default_factory=list)
    latency: dict[int, int] = field(default_factory=dict)      # link id -> cycles
    out: dict[int, list[int]] = field(default_factory=dict)    # chip -> outgoing link ids
    between: dict[tuple[int, int], int] = field(default_factory=dict)

    def add(self, a: int, b: int, kind: str, lat: int) -> None:
        for s, d in ((a, b), (b, a)):
            if (s, d) in self.between:
                continue
            lid = len(self.links)
            self.links.append(Link(lid, s, d, kind))
            self.latency[lid] = lat
            self.out.setdefault(s, []).append(lid)
            self.between[(s, d)] = lid

    def node_of(self, chip: int) -> int:
        return chip // self.chips_per_node

    def route(self, sources: list[int], targets: list[int]) -> tuple[int, int, list[int]]:
        """Cheapest route from any source chip to any target chip: (src, dst, link ids).

        Cost is total hop latency, then hop count, then chip ids (deterministic ties)."""
        common = set(sources) & set(targets)
        if common:
            c = min(common)
            return c, c, []
        tset = set(targets)
        heap: list[tuple[int, int, int, int]] = [(0, 0, s, -1) for s in sorted(sources)]
        via: dict[int, int] = {}
        while heap:
            d, hops, chip, lid = heapq.heappop(heap)
            if chip in via:
                continue
            via[chip] = lid
            if chip in tset:
                path = []
                c = chip
                while via[c] >= 0:
                    path.append(via[c])
                    c = self.links[via[c]].src
                return c, chip, path[::-1]
            for nl in self.out.get(chip, []):
                nxt = self.links[nl].dst
                if nxt not in via:
                    heapq.heappush(heap, (d + self.latency[nl], hops + 1, nxt, nl))
        raise ValueError(f"no route from chips {sources} to {targets}")


def build_link_graph(system: SystemSpec, chips: int | None = None) -> LinkGraph:
    """The links among the first `chips` chips of `system` (all of them by default)."""
    t = system.topology
    n = chips if chips is not None else system.chips
    clock = system.chip.clock_hz
    lat_local = ps_to_cycles(system.links.local_hop_latency_ps, clock)
    lat_global = ps_to_cycles(system.links.global_hop_latency_ps, clock)
    cpn, npr = t.chips_per_node, t.nodes_per_rack
    g = LinkGraph(n, cpn, npr)
    nodes = -(-n // cpn)
    for node in range(nodes):
        members = [c for c in range(node * cpn, (node + 1) * cpn) if c < n]
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                g.add(a, b, "local", lat_local)
    racks = -(-nodes // npr)

    def port_chip(node: int, k: int) -> int | None:
        c = node * cpn + (k % cpn)
        return c if c < n else None

    for r in range(racks):
        rack_nodes = [x for x in range(r * npr, (r + 1) * npr) if x < nodes]
        for i, a in enumerate(rack_nodes):
            for b in rack_nodes[i + 1:]:
                ka = rack_nodes.index(b) - 1       # index of b among a's peers
                kb = rack_nodes.index(a)           # index of a among b's peers
                ca, cb = port_chip(a, ka), port_chip(b, kb)
                if ca is not None and cb is not None:
                    g.add(ca, cb, "global", lat_global)
    for r in range(racks):
        for s in range(r + 1, racks):
            # rack r reaches rack s through its (s-1)-th gateway, rack s through its r-th
            kr, ks = s - 1, r
            nr = r * npr + (kr % npr)
            ns = s * npr + (ks % npr)
            if nr >= nodes or ns >= nodes:
                continue
            ca = port_chip(nr, npr - 1 + kr // npr)
            cb = port_chip(ns, npr - 1 + ks // npr)
            if ca is not None and cb is not None:
                g.add(ca, cb, "global", lat_global)
    return g
