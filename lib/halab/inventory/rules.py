"""The cluster's own rules over a well-typed inventory.

Each rule yields `(path, message, hint)` for every violation it finds, so one run
reports every problem of the file at once. Paths are tuples into the YAML data;
the loader turns them into `nodes[3].address` and a line number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

from halab.inventory.addresses import AddressRange, parse_range
from halab.inventory.model import Inventory
from halab.inventory.scheduling import misfit_reasons
from halab.inventory.yaml_source import PathKey
from halab.replication import ReplicationCodeError, parse_replication

Violation = tuple[PathKey, str, str]
Rule = Callable[[Inventory], Iterator[Violation]]


def unique_names(inv: Inventory) -> Iterator[Violation]:
    groups: list[tuple[str, list[str]]] = [
        ("hosts", [h.name for h in inv.hosts]),
        ("nodes", [n.name for n in inv.nodes]),
        ("apps", [a.name for a in inv.apps]),
    ]
    if inv.storage.nfs is not None:
        groups.append(("storage.nfs.exports", [e.name for e in inv.storage.nfs.exports]))
    for section, names in groups:
        seen: dict[str, int] = {}
        for index, name in enumerate(names):
            if name in seen:
                path: PathKey = (*section.split("."), index, "name")
                yield (
                    path,
                    f"name {name!r} is used twice (also {section}[{seen[name]}])",
                    "give every entry its own name",
                )
            else:
                seen[name] = index


def unique_addresses(inv: Inventory) -> Iterator[Violation]:
    owners: dict[IPv4Address, tuple[PathKey, str]] = {}
    for i, host in enumerate(inv.hosts):
        owners.setdefault(host.address, (("hosts", i, "address"), f"host {host.name}"))
    for i, node in enumerate(inv.nodes):
        path: PathKey = ("nodes", i, "address")
        if node.address not in owners:
            owners[node.address] = (path, f"node {node.name}")
            continue
        _other_path, other = owners[node.address]
        # A bare-metal node *is* its host (the Pi): one address for both is right.
        if node.kind == "bare-metal" and other == f"host {node.host}":
            continue
        yield (
            path,
            f"address {node.address} is already used by {other}",
            "give every node its own static address (DHCP reservation)",
        )
    for i, host in enumerate(inv.hosts):
        first = owners[host.address]
        if first[0] != ("hosts", i, "address"):
            yield (
                ("hosts", i, "address"),
                f"address {host.address} is already used by {first[1]}",
                "give every host its own static address",
            )


def addresses_in_subnet(inv: Inventory) -> Iterator[Violation]:
    subnet = inv.network.subnet
    hint = f"use an address inside {subnet} or change network.subnet"
    for i, host in enumerate(inv.hosts):
        if host.address not in subnet:
            yield (("hosts", i, "address"), f"{host.address} is outside the subnet {subnet}", hint)
    for i, node in enumerate(inv.nodes):
        if node.address not in subnet:
            yield (("nodes", i, "address"), f"{node.address} is outside the subnet {subnet}", hint)
    for key in ("gateway", "vip"):
        address = getattr(inv.network, key)
        if address not in subnet:
            yield (("network", key), f"{address} is outside the subnet {subnet}", hint)
    if inv.network.metallb.mode == "l2":
        # Layer 2 answers ARP for the pool, so the pool must sit on the node subnet.
        for i, entry in enumerate(inv.network.metallb.pool):
            rng = parse_range(entry)
            if rng.first not in subnet or rng.last not in subnet:
                yield (
                    ("network", "metallb", "pool", i),
                    f"{entry} is outside the subnet {subnet}; L2 mode needs it inside",
                    hint,
                )


def vip_and_pool_clear(inv: Inventory) -> Iterator[Violation]:
    used: list[tuple[IPv4Address, str]] = [(h.address, f"host {h.name}") for h in inv.hosts]
    used += [(n.address, f"node {n.name}") for n in inv.nodes]
    used.append((inv.network.gateway, "the gateway"))
    vip = inv.network.vip
    for address, owner in used:
        if address == vip:
            yield (
                ("network", "vip"),
                f"the VIP {vip} is also the address of {owner}",
                "pick a free address for the VIP, outside DHCP and the MetalLB pool",
            )
    ranges: list[AddressRange] = []
    for i, entry in enumerate(inv.network.metallb.pool):
        path: PathKey = ("network", "metallb", "pool", i)
        rng = parse_range(entry)
        if vip in rng:
            yield (
                path,
                f"the MetalLB pool {entry} contains the VIP {vip}",
                "MetalLB would hand the API's VIP to a Service; shrink the pool",
            )
        for address, owner in used:
            if address in rng:
                yield (
                    path,
                    f"the MetalLB pool {entry} contains {address} ({owner})",
                    "keep the pool clear of every host, node and the gateway",
                )
        for j, other in enumerate(ranges):
            if rng.overlaps(other):
                yield (
                    path,
                    f"pool entry {entry} overlaps pool entry {j} ({other})",
                    "merge or separate the two ranges",
                )
        ranges.append(rng)


def control_plane_quorum(inv: Inventory) -> Iterator[Violation]:
    servers = inv.servers
    count = len(servers)
    if count % 2 == 0:
        yield (
            ("nodes",),
            f"{count} control-plane (k3s_role: server) nodes; etcd needs an odd "
            "number (an even one tolerates no more failures than one fewer)",
            "use 3 servers on 3 physical hosts",
        )
    elif count < 3:
        yield (
            ("nodes",),
            f"only {count} control-plane node; HA needs 3 or more",
            "make three nodes k3s_role: server, one per physical host",
        )


def hosts_exist(inv: Inventory) -> Iterator[Violation]:
    names = {h.name for h in inv.hosts}
    listing = ", ".join(sorted(names))
    for i, node in enumerate(inv.nodes):
        if node.host not in names:
            yield (
                ("nodes", i, "host"),
                f"host {node.host!r} is not in hosts",
                f"use one of: {listing}",
            )
    if inv.storage.nfs is not None and inv.storage.nfs.host not in names:
        yield (
            ("storage", "nfs", "host"),
            f"host {inv.storage.nfs.host!r} is not in hosts",
            f"use one of: {listing}",
        )
    for i, app in enumerate(inv.apps):
        if app.kind == "docker" and app.host not in names:
            yield (
                ("apps", i, "host"),
                f"host {app.host!r} is not in hosts",
                f"use one of: {listing}",
            )


def hardware_consistent(inv: Inventory) -> Iterator[Violation]:
    hosts = {h.name: h for h in inv.hosts}
    for i, node in enumerate(inv.nodes):
        host = hosts.get(node.host)
        if host is None:
            continue
        if node.gpu is not None and host.gpu is None:
            yield (
                ("nodes", i, "gpu"),
                f"node {node.name} has a GPU but its host {host.name} has none to pass through",
                f"add gpu: to hosts entry {host.name}",
            )
        if host.kind == "raspberry-pi" and node.arch != "arm64":
            yield (
                ("nodes", i, "arch"),
                f"node {node.name} runs on a Raspberry Pi but says arch {node.arch}",
                "set arch: arm64",
            )
    for i, app in enumerate(inv.apps):
        maps_gpu = any(d.startswith("/dev/dri") for d in app.devices)
        if app.kind == "docker" and maps_gpu and app.host in hosts and hosts[app.host].gpu is None:
            yield (
                ("apps", i, "devices"),
                f"app {app.name} maps /dev/dri but host {app.host} has no GPU",
                f"add gpu: to hosts entry {app.host}",
            )


def workloads_schedulable(inv: Inventory) -> Iterator[Violation]:
    for i, app in enumerate(inv.apps):
        if app.kind in ("docker", "daemonset") or app.replicas == 0:
            continue
        reasons = {n.name: misfit_reasons(app, n) for n in inv.nodes}
        if any(not r for r in reasons.values()):
            continue
        why = "; ".join(f"{name}: {', '.join(r)}" for name, r in reasons.items())
        yield (
            ("apps", i, "placement"),
            f"app {app.name} fits no node ({why})",
            "relax its node selector or affinity, add a toleration, or lower its requests",
        )


def volumes_resolve(inv: Inventory) -> Iterator[Violation]:
    exports = {e.name for e in inv.storage.nfs.exports} if inv.storage.nfs else set()
    for i, app in enumerate(inv.apps):
        for j, vol in enumerate(app.volumes):
            if vol.kind == "nfs" and vol.export not in exports:
                known = ", ".join(sorted(exports)) or "none defined"
                yield (
                    ("apps", i, "volumes", j, "export"),
                    f"NFS export {vol.export!r} is not in storage.nfs.exports",
                    f"use one of: {known}",
                )


def seaweedfs_sound(inv: Inventory) -> Iterator[Violation]:
    sw = inv.storage.seaweedfs
    codes: list[tuple[PathKey, str]] = [(("storage", "seaweedfs", "replication"), sw.replication)]
    if sw.target is not None:
        codes.append((("storage", "seaweedfs", "target", "replication"), sw.target.replication))
    for path, code in codes:
        try:
            parse_replication(code)
        except ReplicationCodeError as exc:
            yield (
                path,
                str(exc),
                "write three digits xyz: x other data centers, y other "
                'racks, z other servers in the same rack, e.g. "010"',
            )
    masters = inv.seaweed_masters
    if len(masters) % 2 == 0:
        names = ", ".join(m.name for m in masters) or "none"
        yield (
            ("nodes",),
            f"{len(masters)} SeaweedFS masters ({names}); SeaweedFS refuses an "
            "even count: 'Only odd number of masters are supported'",
            "run 1 or 3 masters (seaweedfs.master: true on an odd number of nodes)",
        )
    if not inv.seaweed_volume_servers:
        yield (
            ("nodes",),
            "no SeaweedFS volume server (seaweedfs.volume_gib > 0 on no node)",
            "give at least one node a seaweedfs.volume_gib",
        )


def claims_resolve(inv: Inventory) -> Iterator[Violation]:
    hosts = {h.name for h in inv.hosts}
    apps = {a.name for a in inv.apps}
    for i, claim in enumerate(inv.claims):
        for j, host in enumerate(claim.hosts):
            if host not in hosts:
                yield (
                    ("claims", i, "hosts", j),
                    f"host {host!r} is not in hosts",
                    f"use one of: {', '.join(sorted(hosts))}",
                )
        if claim.app and claim.app not in apps:
            yield (
                ("claims", i, "app"),
                f"app {claim.app!r} is not in apps",
                f"use one of: {', '.join(sorted(apps))}",
            )
        if (
            claim.about
            in (
                "api_when_hosts_down",
                "seaweedfs_readable_when_host_down",
                "workload_moves_when_host_down",
            )
            and not claim.hosts
        ):
            yield (
                ("claims", i, "hosts"),
                f"a {claim.about} claim names the hosts that fail",
                "add hosts: [proxmox] (for example)",
            )
        if claim.about == "workload_moves_when_host_down" and not claim.app:
            yield (
                ("claims", i, "app"),
                "a workload_moves_when_host_down claim names its app",
                "add app: plex (for example)",
            )


def secrets_distinct(inv: Inventory) -> Iterator[Violation]:
    counts = Counter(ref.env for ref in inv.secrets.values())
    for name, ref in inv.secrets.items():
        if counts[ref.env] > 1:
            yield (
                ("secrets", name, "env"),
                f"environment variable {ref.env} is named by more than one secret",
                "give each secret its own variable",
            )


def rollout_sound(inv: Inventory) -> Iterator[Violation]:
    """Every node joins in exactly one phase, and nothing joins before a server exists
    for it to join."""
    if not inv.rollout:
        return
    known = {n.name for n in inv.nodes}
    listing = ", ".join(n.name for n in inv.nodes)
    placed: dict[str, int] = {}
    phases: dict[int, int] = {}
    for i, step in enumerate(inv.rollout):
        if step.phase in phases:
            yield (
                ("rollout", i, "phase"),
                f"phase {step.phase} is listed twice (also rollout[{phases[step.phase]}])",
                "list each phase once, with all the nodes it brings in",
            )
        phases.setdefault(step.phase, i)
        for j, name in enumerate(step.nodes):
            if name not in known:
                yield (
                    ("rollout", i, "nodes", j),
                    f"node {name!r} is not in nodes",
                    f"use one of: {listing}",
                )
            elif name in placed:
                yield (
                    ("rollout", i, "nodes", j),
                    f"node {name} joins in phase {step.phase} and again in phase "
                    f"{inv.rollout[placed[name]].phase}",
                    "a node joins the cluster once: keep it in one phase",
                )
            else:
                placed[name] = i
    for node in inv.nodes:
        if node.name not in placed:
            yield (
                ("rollout",),
                f"node {node.name} joins in no phase",
                "add it to the nodes of the phase that brings it in (phase 0: there already)",
            )
    first_server = min(
        (inv.rollout[placed[n.name]].phase for n in inv.servers if n.name in placed), default=None
    )
    for i, step in enumerate(inv.rollout):
        if first_server is not None and step.phase >= first_server:
            continue
        early = [name for name in step.nodes if name in known]
        if early:
            when = f"phase {first_server}" if first_server is not None else "no phase"
            yield (
                ("rollout", i, "nodes"),
                f"{', '.join(early)} join in phase {step.phase}, but the first server "
                f"(k3s_role: server) comes in {when}: there is nothing to join yet",
                "bring a server in first (the one that starts with --cluster-init)",
            )


RULES: tuple[Rule, ...] = (
    unique_names,
    unique_addresses,
    addresses_in_subnet,
    vip_and_pool_clear,
    control_plane_quorum,
    hosts_exist,
    hardware_consistent,
    workloads_schedulable,
    volumes_resolve,
    seaweedfs_sound,
    claims_resolve,
    secrets_distinct,
    rollout_sound,
)


def check_rules(inv: Inventory) -> list[Violation]:
    found: list[Violation] = []
    for rule in RULES:
        found.extend(rule(inv))
    return found
