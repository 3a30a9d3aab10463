"""SeaweedFS volume placement, by SeaweedFS's own rules (pure).

A port of the decisions in `findEmptySlotsForOneVolume` (weed/topology/volume_growth.go)
and `PickNodesByWeight` (weed/topology/node.go), as described in reference/seaweedfs.md §1:
the same filters in the same order and the same error text. SeaweedFS picks among the
candidates that pass at random, weighted by free slots; where we must pick one we take
the candidate with the most free slots (ties by name), which is the weighted pick's most
likely outcome and keeps every result reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from halab.inventory.model import Inventory, RackLayout
from halab.replication import ReplicaPlacement, parse_replication

DEFAULT_RACK = "DefaultRack"  # what the master calls a volume server started without -rack


@dataclass(frozen=True)
class VolumeServer:
    name: str
    host: str  # physical host; SeaweedFS never sees it, which is the point of several findings
    data_center: str
    rack: str
    slots: int


def slots_for(volume_gib: int, volume_size_limit_mb: int) -> int:
    """Volume slots of a disk with `-max=0`: free space / limit, at least 1 (SeaweedFS 4.31+)."""
    if volume_gib <= 0:
        return 0
    return max(1, (volume_gib * 1024) // volume_size_limit_mb)


def volume_servers(inv: Inventory, racks: RackLayout) -> list[VolumeServer]:
    sw = inv.storage.seaweedfs
    out = []
    for node in inv.seaweed_volume_servers:
        rack = {"single": DEFAULT_RACK, "host": node.host, "node": node.name}[racks]
        out.append(
            VolumeServer(
                node.name,
                node.host,
                sw.data_center,
                rack,
                slots_for(node.seaweedfs.volume_gib, sw.volume_size_limit_mb),
            )
        )
    return out


class PlacementError(Exception):
    """SeaweedFS could not grow a volume; the text is SeaweedFS's own."""


@dataclass
class Topology:
    """Free slots per data center, rack and server, as the master's topology tree holds them.

    Sums per rack and data center are kept up to date as volumes are taken, because
    growing a large cluster until it is full asks for them at every step.
    """

    tree: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    host_of: dict[str, str] = field(default_factory=dict)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)
    _rack_free: dict[tuple[str, str], int] = field(default_factory=dict)
    _rack_slotted: dict[tuple[str, str], int] = field(default_factory=dict)
    _dc_free: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, servers: Iterable[VolumeServer], down_hosts: Iterable[str] = ()) -> Topology:
        down = set(down_hosts)
        topo = cls()
        for s in servers:
            racks = topo.tree.setdefault(s.data_center, {})
            rack = racks.setdefault(s.rack, {})
            topo._dc_free.setdefault(s.data_center, 0)
            topo._rack_free.setdefault((s.data_center, s.rack), 0)
            topo._rack_slotted.setdefault((s.data_center, s.rack), 0)
            # A dead server is unlinked, but its rack and data center stay in the tree
            # (topology_event_handling.go), and still count in "Only has %d racks".
            if s.host not in down:
                rack[s.name] = s.slots
                topo.host_of[s.name] = s.host
                topo.where[s.name] = (s.data_center, s.rack)
                topo._dc_free[s.data_center] += s.slots
                topo._rack_free[(s.data_center, s.rack)] += s.slots
                topo._rack_slotted[(s.data_center, s.rack)] += 1 if s.slots > 0 else 0
        return topo

    def dc_free(self, dc: str) -> int:
        return self._dc_free[dc]

    def rack_free(self, dc: str, rack: str) -> int:
        return self._rack_free[(dc, rack)]

    def rack_slotted(self, dc: str, rack: str) -> int:
        """Servers of the rack with at least one free slot."""
        return self._rack_slotted[(dc, rack)]

    def take(self, servers: list[str]) -> None:
        for name in servers:
            dc, rack = self.where[name]
            self.tree[dc][rack][name] -= 1
            self._dc_free[dc] -= 1
            self._rack_free[(dc, rack)] -= 1
            if self.tree[dc][rack][name] == 0:
                self._rack_slotted[(dc, rack)] -= 1


def _dc_error(topo: Topology, dc: str, rp: ReplicaPlacement) -> str | None:
    racks = topo.tree[dc]
    need_racks = rp.diff_rack + 1
    if len(racks) < need_racks:
        return f"Only has {len(racks)} racks, not enough for {need_racks}."
    free = topo.dc_free(dc)
    expected = rp.diff_rack + rp.same_rack + 1
    if free < expected:
        return f"Free:{free} < Expected:{expected}"
    per_rack = rp.same_rack + 1
    possible = sum(1 for rack in racks if topo.rack_slotted(dc, rack) >= per_rack)
    if possible < need_racks:
        return (
            f"Only has {possible} racks with more than {per_rack} free data nodes, "
            f"not enough for {need_racks}."
        )
    return None


def _rack_error(topo: Topology, dc: str, rack: str, rp: ReplicaPlacement) -> str | None:
    servers = topo.tree[dc][rack]
    need = rp.same_rack + 1
    free = topo.rack_free(dc, rack)
    if free < need:
        return f"Free:{free} < Expected:{need}"
    if len(servers) < need:
        return f"Only has {len(servers)} data nodes, not enough for {need}."
    with_slot = topo.rack_slotted(dc, rack)
    if with_slot < need:
        return f"Only has {with_slot} data nodes with a slot, not enough for {need}."
    return None


def _by_free(items: dict[str, int]) -> list[str]:
    return sorted((k for k, v in items.items() if v > 0), key=lambda k: (-items[k], k))


def _pick(candidates: dict[str, int], count: int, error_of: dict[str, str | None]) -> list[str]:
    """PickNodesByWeight: `count` candidates with free slots, the first passing the filter."""
    ordered = _by_free(candidates)
    if len(ordered) < count:
        raise PlacementError("Not enough data nodes found!")
    errors = []
    for name in ordered:
        err = error_of.get(name)
        if err is None:
            rest = [n for n in ordered if n != name][: count - 1]
            return [name, *rest]
        errors.append(f"{name}:{err}")
    raise PlacementError("No matching data node found! \n" + "\n".join(errors))


def find_slots(topo: Topology, rp: ReplicaPlacement) -> list[str]:
    """The servers that would hold one new volume's copies; raise PlacementError if none."""
    dcs = {dc: topo.dc_free(dc) for dc in topo.tree}
    eligible = {dc: _dc_error(topo, dc, rp) for dc in _by_free(dcs)}
    main_dc, *other_dcs = _pick(dcs, rp.diff_data_center + 1, eligible)
    racks = {r: topo.rack_free(main_dc, r) for r in topo.tree[main_dc]}
    rack_errors = {r: _rack_error(topo, main_dc, r, rp) for r in _by_free(racks)}
    main_rack, *other_racks = _pick(racks, rp.diff_rack + 1, rack_errors)
    chosen = _by_free(topo.tree[main_dc][main_rack])[: rp.same_rack + 1]
    for rack in other_racks:
        chosen.append(_by_free(topo.tree[main_dc][rack])[0])
    for dc in other_dcs:
        best_rack = _by_free({r: topo.rack_free(dc, r) for r in topo.tree[dc]})[0]
        chosen.append(_by_free(topo.tree[dc][best_rack])[0])
    return chosen


def grow_until_full(topo: Topology, rp: ReplicaPlacement, limit: int = 10_000_000) -> int:
    """How many volumes can be grown before SeaweedFS refuses (mutates `topo`).

    Codes with one non-zero digit have a closed form (below); codes that mix levels
    (011, 110, 032, ...) are grown one volume at a time.
    """
    levels = [d for d in (rp.diff_data_center, rp.diff_rack, rp.same_rack) if d]
    if len(levels) <= 1:
        try:
            find_slots(topo, rp)
        except PlacementError:
            return 0
        return min(limit, _single_level_capacity(topo, rp))
    grown = 0
    while grown < limit:
        try:
            servers = find_slots(topo, rp)
        except PlacementError:
            break
        topo.take(servers)
        grown += 1
    return grown


def _max_sets(capacities: list[int], size: int) -> int:
    """Most sets of `size` distinct groups that groups with these capacities can fill.

    k sets fit iff sum(min(c, k)) >= size * k; filling the emptiest groups first (what
    the volume growth above does one volume at a time) reaches that k.
    """
    if size == 1:
        return sum(capacities)
    low, high = 0, sum(capacities) // size
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(c, mid) for c in capacities) >= size * mid:
            low = mid
        else:
            high = mid - 1
    return low


def _single_level_capacity(topo: Topology, rp: ReplicaPlacement) -> int:
    if rp.diff_data_center:
        return _max_sets([topo.dc_free(dc) for dc in topo.tree], rp.copies)
    if rp.diff_rack:
        return sum(
            _max_sets([topo.rack_free(dc, r) for r in racks], rp.copies)
            for dc, racks in topo.tree.items()
        )
    return sum(
        _max_sets(list(servers.values()), rp.copies)
        for racks in topo.tree.values()
        for servers in racks.values()
    )


def worst_copies_on(topo: Topology, rp: ReplicaPlacement, hosts: set[str]) -> int:
    """The most copies of one volume that can land on `hosts`, over every allowed placement.

    SeaweedFS knows servers, racks and data centers, not physical hosts, so any choice its
    filters allow may happen. Zero when no volume can be placed at all.
    """
    dcs = {dc: topo.dc_free(dc) for dc in topo.tree}
    candidates = _by_free(dcs)
    if len(candidates) < rp.diff_data_center + 1:
        return 0

    def on_hosts(servers: dict[str, int]) -> int:
        return sum(1 for s, f in servers.items() if f > 0 and topo.host_of.get(s) in hosts)

    worst = 0
    for dc in candidates:
        if _dc_error(topo, dc, rp) is not None:
            continue
        other_dcs = [d for d in candidates if d != dc]
        dc_hits = min(
            rp.diff_data_center,
            sum(1 for d in other_dcs if any(on_hosts(r) for r in topo.tree[d].values())),
        )
        for rack, servers in topo.tree[dc].items():
            if _rack_error(topo, dc, rack, rp) is not None:
                continue
            same = min(rp.same_rack + 1, on_hosts(servers))
            others = [r for r, s in topo.tree[dc].items() if r != rack and sum(s.values()) > 0]
            cross = min(rp.diff_rack, sum(1 for r in others if on_hosts(topo.tree[dc][r])))
            worst = max(worst, same + cross + dc_hits)
    return worst


@dataclass(frozen=True)
class PlacementOutcome:
    code: str
    racks: RackLayout
    copies: int
    feasible: bool
    reason: str  # SeaweedFS's error text when a volume cannot be grown
    volumes: int  # volumes grown before the cluster is full
    slots: int
    usable_gib: float
    distinct_hosts: bool  # every copy of every volume on a different physical host, guaranteed
    worst_host: str  # the host that can hold the most copies of one volume
    worst_copies: int


def evaluate(inv: Inventory, code: str, racks: RackLayout) -> PlacementOutcome:
    rp = parse_replication(code)
    servers = volume_servers(inv, racks)
    topo = Topology.build(servers)
    try:
        find_slots(topo, rp)
        feasible, reason = True, ""
    except PlacementError as exc:
        feasible, reason = False, str(exc)
    volumes = grow_until_full(Topology.build(servers), rp) if feasible else 0
    worst_host, worst = "", 0
    for host in sorted({s.host for s in servers}):
        copies = worst_copies_on(topo, rp, {host})
        if copies > worst:
            worst_host, worst = host, copies
    limit = inv.storage.seaweedfs.volume_size_limit_mb
    return PlacementOutcome(
        code=str(rp),
        racks=racks,
        copies=rp.copies,
        feasible=feasible,
        reason=reason,
        volumes=volumes,
        slots=sum(s.slots for s in servers),
        usable_gib=round(volumes * limit / 1024, 1),
        distinct_hosts=feasible and worst <= 1,
        worst_host=worst_host,
        worst_copies=worst,
    )


# The codes of reference/seaweedfs.md §1's table, in its order.
REFERENCE_CODES = ("000", "001", "002", "010", "011", "020", "100", "110", "200", "032")
