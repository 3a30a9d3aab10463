"""The twin's map of the inventory: one rule for every address, and where each part runs.

Every host and node keeps the last octet of its inventory address on 127.77.0.0/24
(192.168.1.12 -> 127.77.0.12, the VIP 192.168.1.100 -> 127.77.0.100), so the twin's map
is one rule that a person can apply in their head. A second twin beside the first takes
another /24 of loopback (`halab twin up --network 127.78.0.0/24`); pods of the twin on
127.N.0.0/24 take addresses on 127.(N-35).0.0/16 (127.42.x.y for the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from halab.inventory import Inventory

TWIN_NETWORK = IPv4Network("127.77.0.0/24")
POD_OCTET_OFFSET = 35  # 127.77.0.0/24 -> pods on 127.42.0.0/16
LOOPBACK = IPv4Network("127.0.0.0/8")


def parse_twin_network(text: str) -> IPv4Network:
    """A /24 on loopback whose pods' /16 is on loopback too, or a ValueError saying why."""
    try:
        network = IPv4Network(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a network such as 127.78.0.0/24 ({exc})") from None
    second = network.network_address.packed[1]
    if network.prefixlen != 24 or not network.subnet_of(LOOPBACK):
        raise ValueError(f"{text}: the twin takes a /24 on 127.0.0.0/8, such as 127.78.0.0/24")
    if second <= POD_OCTET_OFFSET:
        raise ValueError(
            f"{text}: pods take 127.{second}-{POD_OCTET_OFFSET}.x.y, so the second number must "
            f"be above {POD_OCTET_OFFSET}"
        )
    return network


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
    from halab.twin.gateway import GATEWAY

    gateway = int(inv.network.gateway) & 0xFF
    if inv.network.metallb.mode == "bgp" and gateway in seen:  # the gateway is a twin host
        problems.append(
            Problem(
                "network.gateway",
                f"{inv.network.gateway} ends in .{gateway} like {seen[gateway]}: the twin runs "
                "the gateway as a host of its own at 127.77.0.<last octet>",
                "give the gateway an address no host or node has",
            )
        )

    if inv.network.metallb.mode == "bgp" and GATEWAY in {h.name for h in inv.hosts}:
        problems.append(
            Problem(
                "hosts",
                f"a host is named {GATEWAY!r}, the name the twin gives the BGP gateway",
                "rename the host",
            )
        )
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
    network: IPv4Network = TWIN_NETWORK
    gateway: IPv4Address | None = None  # the BGP router, when MetalLB speaks BGP

    @property
    def pod_octet(self) -> int:
        """The second number of the pods' addresses: 127.<this>.<node octet>.<n>."""
        return self.network.network_address.packed[1] - POD_OCTET_OFFSET

    @property
    def service_network(self) -> IPv4Network:
        """The twin's ClusterIPs (k3s: 10.43.0.0/16): on loopback, beside the pods, so the
        twin's kube-proxy can listen on them; the cluster DNS keeps .10 as kube-dns does."""
        return IPv4Network(f"127.{self.pod_octet}.0.0/24")

    @classmethod
    def from_inventory(
        cls, inv: Inventory, directory: Path, network: IPv4Network = TWIN_NETWORK
    ) -> TwinTopology:
        """The twin's map onto `network` (a second twin beside the first takes another)."""
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
            network=network,
            gateway=twin_address(inv.network.gateway, network)
            if inv.network.metallb.mode == "bgp"
            else None,
        )

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.etcd)

    def etcd_on(self, host: str) -> list[EtcdSpec]:
        return [m for m in self.etcd if m.host == host]
