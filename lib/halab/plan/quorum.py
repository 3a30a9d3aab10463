"""Control-plane and SeaweedFS-master quorum under host failures (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

from halab.inventory.model import Inventory, Node


def failure_sets(inv: Inventory, max_down: int = 2) -> list[tuple[str, ...]]:
    """Every set of 1..max_down physical hosts, in inventory order."""
    names = [h.name for h in inv.hosts]
    sets: list[tuple[str, ...]] = []
    for size in range(1, min(max_down, len(names)) + 1):
        sets.extend(combinations(names, size))
    return sets


@dataclass(frozen=True)
class Quorum:
    members: tuple[str, ...]
    up: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.members)

    @property
    def needed(self) -> int:
        return self.total // 2 + 1

    @property
    def holds(self) -> bool:
        return self.total > 0 and len(self.up) >= self.needed

    def __str__(self) -> str:
        state = "quorum" if self.holds else "NO quorum"
        return f"{len(self.up)}/{self.total} up, {state} (needs {self.needed})"


def _quorum(members: Iterable[Node], down_hosts: set[str]) -> Quorum:
    members = list(members)
    return Quorum(
        tuple(m.name for m in members), tuple(m.name for m in members if m.host not in down_hosts)
    )


def etcd_quorum(inv: Inventory, down_hosts: set[str]) -> Quorum:
    """Embedded etcd: one member per k3s server."""
    return _quorum(inv.servers, down_hosts)


def seaweed_master_quorum(inv: Inventory, down_hosts: set[str]) -> Quorum:
    return _quorum(inv.seaweed_masters, down_hosts)


def api_available(inv: Inventory, down_hosts: set[str]) -> tuple[bool, str]:
    """Is the Kubernetes API served through the VIP?

    Without etcd quorum no apiserver can serve (k3s-ha.md §1.6), and kube-vip cannot
    renew its lease, so the VIP goes too: the API is gone, not read-only.
    """
    quorum = etcd_quorum(inv, down_hosts)
    if not quorum.holds:
        return False, f"etcd {quorum}: no apiserver can serve and the VIP is released"
    return True, f"etcd {quorum}; VIP held by one of {', '.join(quorum.up)}"


def rollout_quorum(inv: Inventory) -> list[dict[str, object]]:
    """The control plane after each phase of the rollout: how many etcd members, and
    whether the API survives one host down at that point."""
    rows: list[dict[str, object]] = []
    for phase in inv.rollout_phases:
        servers = inv.servers_present(phase)
        hosts = sorted({n.host for n in inv.nodes_present(phase)})
        lost = [h for h in hosts if not _quorum(servers, {h}).holds]
        quorum = _quorum(servers, set())
        present = {n.name for n in inv.nodes_present(phase)}
        masters = Quorum(
            tuple(m.name for m in inv.seaweed_masters),
            tuple(m.name for m in inv.seaweed_masters if m.name in present),
        )
        rows.append(
            {
                "phase": phase,
                "joins": ", ".join(n.name for n in inv.nodes_joining(phase)),
                "seaweedfs_masters": f"{len(masters.up)} of {masters.total} there, "
                + ("a leader can be elected" if masters.holds else "NO leader"),
                "control_plane": len(servers),
                "etcd": f"{quorum.total} member{'' if quorum.total == 1 else 's'}, "
                f"needs {quorum.needed}",
                "one_host_down": "API stays up"
                if not lost
                else f"API lost with {', '.join(lost)} down",
            }
        )
    return rows
