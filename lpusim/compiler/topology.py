"""The chip-to-chip link graph of a system and the compiler's routes over it.

Chips are numbered rack-major: chip = (rack * nodes_per_rack + node) * chips_per_node + local.
Inside a node every pair of chips has a direct local link (each direction is its own link).
Between the nodes of a rack, each pair of nodes has `links_per_node_pair` global links, and
between racks each pair of racks has `links_per_rack_pair`, as in a Dragonfly whose groups are
racks. Which chip owns a global port is assigned round-robin, deterministically; the system
spec checks that no chip needs more global ports than it has. Routes minimise total hop latency,
then hops; among equal paths each hop is the lowest-numbered link into its chip that lies on a
cheapest path, so routes are reproducible.

A tensor-parallel group spanning nodes asks for hundreds of routes from each of its chips, and
each is found without searching the whole machine. A route is a function of the cheapest
(latency, hops) from its source to each chip on it (each hop the lowest-numbered link into its
chip from a chip whose cost plus the link makes the chip's), so any method that finds those
costs finds the route. Most routes have at most three hops and are read off the cheapest paths
of at most two hops from the source (`_short`: a path of three hops or fewer that costs less
than four of the cheapest hop beats any longer one); the others come from A* towards the
target, which estimates a chip's cost to it by the fewest links between their nodes
(`_astar`). One search from many sources at once (a hand-off) is a plain Dijkstra (`_search`).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lpusim import caches
from lpusim.config.specs import SystemSpec, TopologySpec
from lpusim.errors import TopologyError
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
    _routes: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[int, int, list[int]]] = field(
        default_factory=dict)
    # (source chip, target chip) -> the links of the route between them (`pair_route`)
    _pairs: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict, repr=False,
                                                            compare=False)
    _adj: dict[int, list[tuple[int, int]]] = field(default_factory=dict, repr=False,
                                                  compare=False)
    # source chip -> the cheapest path of at most two hops to each chip near it (`_short`),
    # least recent first; and the tables `_short` and `_astar` read (`_tables`)
    _nears: OrderedDict[int, dict[int, int]] = field(default_factory=OrderedDict, repr=False,
                                                    compare=False)
    _short_tables: _RouteTables | None = field(default=None, repr=False, compare=False)
    # (source chip, target node) -> (heap, best cost, least costs, estimates) of an A* search
    # (`_astar`), least recent first
    _stars: OrderedDict[tuple[int, int], _Search] = field(default_factory=OrderedDict,
                                                          repr=False, compare=False)
    # what the compiler derives from these links (hand-off plans, group signatures), kept
    # with them (lpusim.caches.derived)
    derived: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def add(self, a: int, b: int, kind: str, lat: int) -> None:
        if (self._routes or self._pairs or self._adj or self.derived or self._nears
                or self._stars):
            self._routes.clear()            # what was derived from the links before
            self._pairs.clear()
            self._stars.clear()
            self._adj.clear()
            self._nears.clear()
            self.derived.clear()
        self._short_tables = None
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
        if len(sources) == 1 and len(targets) == 1:
            a, b = sources[0], targets[0]
            return a, b, list(self.pair_route(a, b))
        key = (tuple(sources), tuple(targets))
        hit = self._routes.get(key)
        if hit is None:
            hit = self._routes[key] = self._route(sources, targets)
        return hit[0], hit[1], list(hit[2])

    def pair_route(self, a: int, b: int) -> tuple[int, ...]:
        """The links of `route([a], [b])`, kept per pair (shared: a tensor-parallel group
        spanning nodes asks for the route between every two of its chips)."""
        hit = self._pairs.get((a, b))
        if hit is None:
            hit = self._pairs[(a, b)] = () if a == b else tuple(self._route1(a, b))
        return hit

    def _route(self, sources: list[int], targets: list[int]) -> tuple[int, int, list[int]]:
        common = set(sources) & set(targets)
        if common:
            c = min(common)
            return c, c, []
        # one search from every source at once (one source and one target: `pair_route`): the
        # first target out of the heap is the cheapest (then fewest hops, then lowest chip id)
        _low, lb, _adj = self._packed()
        heap = [s << lb for s in sorted(set(sources))]
        via: dict[int, int] = {}
        dst = self._search(heap, via, {s: s << lb for s in sources}, set(targets))
        if dst is None:
            raise TopologyError(f"no route from chips {sources} to {targets}")
        return self._path(via, dst)

    def _packed(self) -> tuple[int, int, dict[int, list[tuple[int, int]]]]:
        """How a search packs an entry (distance, hops, chip, link) into one int that orders
        as the tuple does (each field in bits above the next: hops and chips below 2**cb,
        links below 2**lb): (cb + lb, lb, and each chip's out-links as (next chip, what an
        entry grows by along the link: its latency, a hop, the chip and the link))."""
        cb = max(1, self.chips.bit_length())
        lb = max(1, len(self.links).bit_length())
        if not self._adj:
            low = cb + lb
            self._adj.update({c: [(self.links[lid].dst,
                                   (((self.latency[lid] << cb) + 1) << low)
                                   + (self.links[lid].dst << lb) + lid) for lid in lids]
                              for c, lids in self.out.items()})
        return cb + lb, lb, self._adj

    def _search(self, heap: list[int], via: dict[int, int], best: dict[int, int],
                stop: set[int]) -> int | None:
        """Dijkstra over packed entries (`_packed`): take chips out of `heap` in key order,
        each with its link in (`via`, -1 for a source) and its out-links relaxed, until one in
        `stop` is out; return it, or None when the heap runs dry. A push is skipped when the
        chip already has an entry no larger (`best`; a chip already out has a smaller one)."""
        low, lb, adj = self._packed()
        pop, push, get = heapq.heappop, heapq.heappush, best.get
        cmask, lmask = (1 << (low - lb)) - 1, (1 << lb) - 1
        never = 1 << (2 * low + 64)          # above any entry of a route's length
        while heap:
            e = pop(heap)
            chip = (e >> lb) & cmask
            if chip in via:
                continue
            base = e >> low << low           # distance and hops, chip and link cleared
            via[chip] = e & lmask if base else -1       # a source's entry: no link
            for nxt, grow in adj.get(chip, ()):
                key = base + grow
                if key < get(nxt, never):
                    best[nxt] = key
                    push(heap, key)
            if chip in stop:
                return chip
        return None

    def _path(self, via: dict[int, int], b: int) -> tuple[int, int, list[int]]:
        """(source, b, link ids) of the route a search reached b by."""
        path = []
        c = b
        while via[c] >= 0:
            path.append(via[c])
            c = self.links[via[c]].src
        return c, b, path[::-1]

    def _route1(self, a: int, b: int) -> list[int]:
        """The links of the cheapest route from a to b (a != b): one of at most three hops
        found without a search where it is the cheapest (`_short`), else by A* towards b
        (`_astar`). Both read the route back from least costs by the rule `_search` follows,
        so the route is the one a search from a alone would take."""
        short = self._short(a, b)
        return short if short is not None else self._astar(a, b)

    def _tables(self) -> _RouteTables:
        """What `_short` and `_astar` read, made once per link graph."""
        if self._short_tables is None:
            cpn = self.chips_per_node
            hb = max(1, self.chips.bit_length()) + 2        # hops below 2**hb
            into: dict[int, list[tuple[int, int, int]]] = {}
            out: dict[int, list[tuple[int, int]]] = {}
            back: dict[int, set[int]] = {}
            crossing = []
            for lk in self.links:       # in link order: the lowest link id first
                lat = self.latency[lk.id]
                into.setdefault(lk.dst, []).append((lk.src, lk.id, (lat << hb) + 1))
                if lk.src // cpn != lk.dst // cpn:
                    back.setdefault(lk.dst // cpn, set()).add(lk.src // cpn)
                    crossing.append(lat)
            for c, lids in self.out.items():
                out[c] = [(self.links[lid].dst, (self.latency[lid] << hb) + 1) for lid in lids]
            low = min(self.latency.values(), default=1)
            self._short_tables = _RouteTables(hb, into, out, (4 * low << hb) + 4, back,
                                              min(crossing, default=0), {})
        return self._short_tables

    def _short(self, a: int, b: int) -> list[int] | None:
        """The route from a to b when its cheapest path has at most three hops and costs less
        than four of the cheapest hop (then no longer path is as cheap), else None. Costs are
        packed (latency, hops) ints; the cheapest path of at most two hops from a to each
        chip near it (kept per source, the last 256) is exact for every chip whose cheapest
        path has at most two hops (so for every chip before b on the route), and an upper
        bound for the others, which then match no equality in `_read_back`."""
        t = self._tables()
        into, out, bound = t.into, t.out, t.bound
        near = self._nears.get(a)
        if near is None:
            near = {a: 0}
            first = out.get(a, ())
            for u, step in first:
                if step < near.get(u, bound):
                    near[u] = step
            for u, step in first:
                for v, step2 in out.get(u, ()):
                    if step + step2 < near.get(v, bound):
                        near[v] = step + step2
            self._nears[a] = near
            if len(self._nears) > 256:
                self._nears.popitem(last=False)
        else:
            self._nears.move_to_end(a)
        cost = bound
        get = near.get
        for u, _lid, step in into.get(b, ()):
            k = get(u)
            if k is not None and k + step < cost:
                cost = k + step
        return self._read_back(near, a, b, cost) if cost < bound else None

    def _read_back(self, costs: dict[int, int], a: int, b: int, cost: int) -> list[int]:
        """The links of the route from a to b (of cost `cost`) from least costs: each hop,
        from b back, the lowest-numbered link into its chip from a chip whose cost plus the
        link equals the chip's, as `_search` picks."""
        into = self._tables().into
        get = costs.get
        path = []
        c = b
        while c != a:
            for u, lid, step in into[c]:
                k = get(u)
                if k is not None and k + step == cost:
                    path.append(lid)
                    c, cost = u, k
                    break
            else:       # a chip on the route has a link in from a chip of cost one hop less
                raise AssertionError(f"no hop into chip {c} at cost {cost}")
        return path[::-1]

    def _astar(self, a: int, b: int) -> list[int]:
        """The route from a to b by A*: costs packed as in `_short`, each chip's estimate of
        its cost to b's node the fewest node-crossing links between their nodes, each at the
        least such link's latency (consistent: never more than a link's cost plus the
        estimate after it), so a chip out of the heap has its least cost. Every chip with cost
        plus estimate up to b's is taken out, which includes every chip on a cheapest path,
        and the route is read back from those costs. The estimate is the same for every chip
        of b's node, so one search from a serves them all, resumed for each (the last 64
        searches kept)."""
        t = self._tables()
        out = t.out
        cpn = self.chips_per_node
        cb = max(1, self.chips.bit_length())
        st = self._stars.get((a, b // cpn))
        if st is None:
            to_node = self._estimates(b // cpn)
            st = _Search([(to_node[a // cpn] << cb) + a], {a: 0}, {}, to_node)
            self._stars[(a, b // cpn)] = st
            if len(self._stars) > 64:
                self._stars.popitem(last=False)
        else:
            self._stars.move_to_end((a, b // cpn))
        heap, best, done, est = st
        cmask = (1 << cb) - 1
        pop, push, get = heapq.heappop, heapq.heappush, best.get
        never = 1 << (t.hb + 96)            # above any cost of a route
        goal = done.get(b, never)
        while heap and heap[0] >> cb <= goal:
            e = pop(heap)
            chip = e & cmask
            if chip in done:
                continue
            g = (e >> cb) - est[chip // cpn]
            done[chip] = g
            if chip == b:
                goal = g
            for nxt, step in out.get(chip, ()):
                k = g + step
                if k < get(nxt, never):
                    best[nxt] = k
                    push(heap, ((k + est[nxt // cpn]) << cb) + nxt)
        if b not in done:
            raise TopologyError(f"no route from chips {[a]} to {[b]}")
        return self._read_back(done, a, b, done[b])

    def _estimates(self, node: int) -> list[int]:
        """Per node, the estimate `_astar` uses of a path's cost from it to `node` (packed):
        (the fewest node-crossing links x the least latency of one, that many hops)."""
        t = self._tables()
        hit = t.estimates.get(node)
        if hit is None:
            nodes = -(-self.chips // self.chips_per_node)
            hops = [-1] * nodes
            hops[node] = 0
            level, k = [node], 0
            while level:
                k += 1
                nxt = []
                for x in level:
                    for y in t.back.get(x, ()):
                        if hops[y] < 0:
                            hops[y] = k
                            nxt.append(y)
                level = nxt
            far = nodes + 1             # no route: above any estimate that has one
            hit = t.estimates[node] = [((k * t.low_crossing) << t.hb) + k if k >= 0
                                       else ((far * t.low_crossing) << t.hb) + far
                                       for k in hops]
        return hit


class _RouteTables(NamedTuple):
    """What the short-route reading and A* search of a link graph read."""

    hb: int                                         # a cost is (latency << hb) + hops
    into: dict[int, list[tuple[int, int, int]]]     # chip -> (chip, link, cost) in, by link id
    out: dict[int, list[tuple[int, int]]]           # chip -> (next chip, cost) out
    bound: int                                      # four of the cheapest hop
    back: dict[int, set[int]]                       # node -> the nodes with a link into it
    low_crossing: int                               # the least latency of a node-crossing link
    estimates: dict[int, list[int]]                 # target node -> each node's A* estimate


class _Search(NamedTuple):
    """A resumable A* search (`LinkGraph._astar`)."""

    heap: list[int]                 # (cost + estimate, chip), packed
    best: dict[int, int]            # chip -> least cost offered
    done: dict[int, int]            # chip -> least cost, once out of the heap
    estimate: list[int]             # node -> estimate of its cost to the target node


def build_link_graph(system: SystemSpec, chips: int | None = None) -> LinkGraph:
    """The links among the first `chips` chips of `system` (all of them by default).

    Memoised by the values it is made of (the topology and the hop latencies in cycles): every
    compile on the same links shares one graph and its route caches, whatever else of the
    system a what-if changes (link bandwidth, SRAM, the sync constants). Treat the result as
    read-only."""
    clock = system.chip.clock_hz
    return _build_link_graph(system.topology, ps_to_cycles(system.links.local_hop_latency_ps,
                                                           clock),
                             ps_to_cycles(system.links.global_hop_latency_ps, clock),
                             chips if chips is not None else system.chips)


@caches.memoise("link_graph", maxsize=8)
def _build_link_graph(t: TopologySpec, lat_local: int, lat_global: int, n: int) -> LinkGraph:
    """The links of `_links(t, n)` with their hop latencies (by kind), and route caches of
    their own: a hop-latency what-if shares the links, not the routes."""
    shape = _links(t, n)
    lat = {"local": lat_local, "global": lat_global}
    return LinkGraph(n, shape.chips_per_node, shape.nodes_per_rack, links=shape.links,
                     latency={lk.id: lat[lk.kind] for lk in shape.links}, out=shape.out,
                     between=shape.between)


@caches.memoise("link_shapes", maxsize=8)
def _links(t: TopologySpec, n: int) -> LinkGraph:
    """The links among the first n chips of topology t, numbered as they are added (their
    latencies, 0 here, are set by `_build_link_graph`); shared by the graphs of every
    latency."""
    cpn, npr = t.chips_per_node, t.nodes_per_rack
    lat_local = lat_global = 0
    g = LinkGraph(n, cpn, npr)
    nodes = -(-n // cpn)
    for node in range(nodes):
        members = [c for c in range(node * cpn, (node + 1) * cpn) if c < n]
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                g.add(a, b, "local", lat_local)
    racks = -(-nodes // npr)
    lnp, lrp = t.links_per_node_pair, t.links_per_rack_pair
    # intra-rack: link k between nodes a and b uses port (peer index * lnp + k) of each node;
    # port j of a node sits on chip j mod chips_per_node
    for r in range(racks):
        rack_nodes = [x for x in range(r * npr, (r + 1) * npr) if x < nodes]
        for i, a in enumerate(rack_nodes):
            for j in range(i + 1, len(rack_nodes)):
                b = rack_nodes[j]
                for k in range(lnp):
                    ca = a * cpn + ((j - 1) * lnp + k) % cpn
                    cb = b * cpn + (i * lnp + k) % cpn
                    if ca < n and cb < n:
                        g.add(ca, cb, "global", lat_global)
    # inter-rack: the m-th inter-rack port of a rack (m = other-rack index * lrp + k) sits on
    # node m mod nodes_per_rack, chip (intra-rack ports per node + m // nodes_per_rack) mod cpn
    base = (npr - 1) * lnp
    for r in range(racks):
        for s2 in range(r + 1, racks):
            for k in range(lrp):
                mr, ms = (s2 - 1) * lrp + k, r * lrp + k
                nr, ns = r * npr + mr % npr, s2 * npr + ms % npr
                ca = nr * cpn + (base + mr // npr) % cpn
                cb = ns * cpn + (base + ms // npr) % cpn
                if nr < nodes and ns < nodes and ca < n and cb < n:
                    g.add(ca, cb, "global", lat_global)
    return g
