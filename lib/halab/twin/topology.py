"""The twin's map of the inventory: one rule for every address, and where each part runs.

Every host and node keeps the last octet of its inventory address on 127.77.0.0/24
(192.168.1.12 -> 127.77.0.12, the VIP 192.168.1.100 -> 127.77.0.100), so the twin's map
is one rule that a person can apply in their head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from halab.inventory import Inventory

TWIN_NETWORK = IPv4Network("127.77.0.0/24")
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380


def twin_address(address: IPv4Address, network: IPv4Network = TWIN_NETWORK) -> IPv4Address:
    return IPv4Address(int(network.network_address) + (int(address) & 0xFF))


def _check_last_octets(inv: Inventory) -> None:
    """The twin maps an address by its last octet: two that share one cannot both be there."""
    from halab.errors import InventoryError, Problem

    seen: dict[int, str] = {}
    owner: dict[int, IPv4Address] = {}
    problems = []
    named = [(f"hosts.{h.name}", h.address) for h in inv.hosts]
    named += [(f"nodes.{n.name}", n.address) for n in inv.nodes]
    named.append(("network.vip", inv.network.vip))
    for where, address in named:
        octet = int(address) & 0xFF
        if octet in seen and owner[octet] != address:  # a bare-metal node has its host's
            problems.append(
                Problem(
                    where,
                    f"{address} ends in .{octet} like {seen[octet]}: the twin maps every "
                    "address to 127.77.0.<last octet>, so they would be the same address",
                    "give the twin an inventory whose addresses differ in their last octet",
                )
            )
        elif octet not in seen:
            seen[octet] = f"{where} ({address})"
            owner[octet] = address
    if problems:
        raise InventoryError("inventory for the twin", problems)


@dataclass(frozen=True)
class EtcdSpec:
    name: str  # the k3s server node it belongs to
    host: str  # the physical host whose failure takes it down
    address: IPv4Address
    data_dir: Path

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{ETCD_CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{ETCD_PEER_PORT}"


@dataclass(frozen=True)
class TwinTopology:
    directory: Path
    vip: IPv4Address
    hosts: dict[str, IPv4Address]
    nodes: dict[str, IPv4Address]
    etcd: list[EtcdSpec] = field(default_factory=list)

    @classmethod
    def from_inventory(
        cls, inv: Inventory, directory: Path, network: IPv4Network = TWIN_NETWORK
    ) -> TwinTopology:
        """The twin's map; `network` is only ever changed by tests that need a second
        etcd cluster beside a running twin."""
        _check_last_octets(inv)
        etcd = [
            EtcdSpec(
                n.name,
                n.host,
                twin_address(n.address, network),
                directory / "hosts" / n.host / "etcd" / n.name,
            )
            for n in inv.servers
        ]
        return cls(
            directory=directory,
            vip=twin_address(inv.network.vip, network),
            hosts={h.name: twin_address(h.address, network) for h in inv.hosts},
            nodes={n.name: twin_address(n.address, network) for n in inv.nodes},
            etcd=etcd,
        )

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.etcd)

    def etcd_on(self, host: str) -> list[EtcdSpec]:
        return [m for m in self.etcd if m.host == host]
