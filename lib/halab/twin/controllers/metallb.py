"""MetalLB's controller, done by the twin's controller manager while MetalLB's controller
pod runs (images/metallb.py): LoadBalancer Services get addresses from the IPAddressPools.

As MetalLB's allocator: an address asked for with `metallb.io/loadBalancerIPs` (or
spec.loadBalancerIP) must be in a pool and free, or shared by Services that all carry
the same `metallb.io/allow-shared-ip` key on other ports; otherwise the first free address
of an auto-assigning pool (the one `metallb.io/address-pool` names, if any). A Service
keeps its address while it stays valid. The pools' status counts what is assigned.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from halab.inventory.addresses import parse_range
from halab.twin.client import ClientError, path
from halab.twin.images import metallb

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager

log = logging.getLogger("halab.twin.metallb")
SOURCE = "metallb-controller"
CONFIG_TTL = 1.0  # seconds a read of the MetalLB CRs is reused across passes


@dataclass
class Pool:
    name: str
    addresses: list[str]
    auto_assign: bool
    obj: dict[str, Any]


@dataclass
class _Memory:
    """What this controller said last, so an event is recorded once per change."""

    read_at: float = 0.0
    pools: list[Pool] = field(default_factory=list)
    namespace: str = ""
    said: dict[str, str] = field(default_factory=dict)  # service uid -> last message


def _memory(cm: Manager) -> _Memory:
    """This manager's memory: a new leader starts afresh, as a restarted controller."""
    return cm.memory("metallb", _Memory)


def controller_namespace(cm: Manager) -> str | None:
    """MetalLB's namespace while its controller pod runs and is ready, else None."""
    from halab.twin.controllers.manager import pod_ready

    for pod in cm.cache("pods"):
        images = [str(c.get("image", "")) for c in pod["spec"].get("containers") or []]
        if any(metallb.is_controller(i) for i in images) and pod_ready(pod):
            return str(pod["metadata"]["namespace"])
    return None


def pool_addresses(pool: dict[str, Any], to_twin: Any) -> list[str]:
    """A pool's addresses in order, each moved onto the twin's network (to_twin)."""
    out: list[str] = []
    for entry in (pool.get("spec") or {}).get("addresses") or []:
        try:
            span = parse_range(str(entry))
        except ValueError:
            continue  # MetalLB refuses the config; the twin just skips the entry
        for n in range(int(span.first), int(span.last) + 1):
            mapped = to_twin(str(IPv4Address(n)))
            if mapped and mapped not in out:
                out.append(mapped)
    return out


async def _read_pools(cm: Manager, namespace: str) -> list[Pool]:
    memory = _memory(cm)
    if memory.namespace == namespace and time.monotonic() - memory.read_at < CONFIG_TTL:
        return memory.pools
    version, plural = metallb.api("IPAddressPool")
    listed = await cm.client.get(path(version, plural, namespace))
    pools = [
        Pool(
            p["metadata"]["name"],
            pool_addresses(p, cm.settings.address_map),
            bool((p.get("spec") or {}).get("autoAssign", True)),
            p,
        )
        for p in listed.get("items", [])
    ]
    memory.pools, memory.namespace, memory.read_at = pools, namespace, time.monotonic()
    return pools


def _key(svc: dict[str, Any]) -> str:
    return f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"


def _ingress(svc: dict[str, Any]) -> list[str]:
    found = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in found if i.get("ip")]


def _ports(svc: dict[str, Any]) -> set[str]:
    return {
        f"{p.get('protocol', 'TCP')}/{p['port']}"
        for p in (svc.get("spec") or {}).get("ports") or []
    }


def _sharing(svc: dict[str, Any]) -> str:
    return str((svc["metadata"].get("annotations") or {}).get(metallb.ANNOTATION_SHARED, ""))


def asked_for(svc: dict[str, Any], to_twin: Any) -> tuple[list[str], str]:
    """(the addresses a Service asks for, moved onto the twin; the raw request)."""
    raw = str((svc["metadata"].get("annotations") or {}).get(metallb.ANNOTATION_IPS, ""))
    raw = raw or str((svc.get("spec") or {}).get("loadBalancerIP") or "")
    wanted = [a.strip() for a in raw.split(",") if a.strip()]
    return [to_twin(a) or a for a in wanted], raw


def check_sharing(
    svc: dict[str, Any], ip: str, users: dict[str, list[dict[str, Any]]]
) -> str | None:
    """MetalLB's sharing rule for one address, or None when svc may have it."""
    others = [o for o in users.get(ip, []) if _key(o) != _key(svc)]
    if not others:
        return None
    mine = _sharing(svc)
    if any(not _sharing(o) for o in others) or not mine:
        who = ",".join(_key(o) for o in others)
        return f'can\'t change sharing key for "{_key(svc)}", address also in use by {who}'
    for other in others:
        if _sharing(other) != mine:
            return f'sharing key "{mine}" does not match existing sharing key "{_sharing(other)}"'
        clash = sorted(_ports(svc) & _ports(other))
        if clash:
            return f'port {clash[0]} is already in use on "{ip}"'
    return None


def allocate(
    svc: dict[str, Any], pools: list[Pool], users: dict[str, list[dict[str, Any]]], to_twin: Any
) -> tuple[list[str] | None, str]:
    """(the Service's addresses, or None and MetalLB's reason it has none)."""
    wanted, _raw = asked_for(svc, to_twin)
    by_address = {a: p for p in pools for a in p.addresses}
    pool_name = str((svc["metadata"].get("annotations") or {}).get(metallb.ANNOTATION_POOL, ""))
    if wanted:
        if any(a not in by_address for a in wanted):
            return None, f"{_go_ips(wanted)} is not allowed in config"
        for ip in wanted:
            refused = check_sharing(svc, ip, users)
            if refused:
                return None, refused
        if pool_name and by_address[wanted[0]].name != pool_name:
            return None, (
                f"requested loadBalancer IP(s) {_go_ips(wanted)} is not compatible with "
                f"requested address pool {pool_name}"
            )
        return wanted, ""
    candidates = [p for p in pools if (p.name == pool_name if pool_name else p.auto_assign)]
    if pool_name and not candidates:
        return None, f'unknown pool "{pool_name}"'
    for pool in candidates:
        for ip in pool.addresses:
            if check_sharing(svc, ip, users) is None and (not users.get(ip) or _sharing(svc)):
                return [ip], ""
    if pool_name:
        return None, f"no available IPs in pool {pool_name}"
    return None, "no available IPs"


def _go_ips(ips: list[str]) -> str:
    """Go's %q of a []net.IP, as MetalLB's messages print one."""
    return "[" + " ".join(f'"{ip}"' for ip in ips) + "]"


async def reconcile(cm: Manager) -> None:
    namespace = controller_namespace(cm)
    if namespace is None:
        return  # no controller running: Services stay <pending>, as at home
    pools = await _read_pools(cm, namespace)
    valid = {a for p in pools for a in p.addresses}
    services = sorted(
        (
            s
            for s in cm.cache("services")
            if (s.get("spec") or {}).get("type") == "LoadBalancer"
            and not (s.get("spec") or {}).get("loadBalancerClass")
            and not s["metadata"].get("deletionTimestamp")
        ),
        key=lambda s: (s["metadata"].get("creationTimestamp", ""), _key(s)),
    )
    users: dict[str, list[dict[str, Any]]] = {}
    for svc in services:  # who holds what now, first come first kept
        for ip in _ingress(svc):
            if ip in valid and check_sharing(svc, ip, users) is None:
                users.setdefault(ip, []).append(svc)
    for svc in services:
        await _converge(cm, svc, pools, users)
    said = _memory(cm).said
    for uid in set(said) - {s["metadata"]["uid"] for s in services}:
        del said[uid]  # a Service gone (or no longer a LoadBalancer): forget it
    await _pool_status(cm, pools, users)


async def _converge(
    cm: Manager, svc: dict[str, Any], pools: list[Pool], users: dict[str, list[dict[str, Any]]]
) -> None:
    current = _ingress(svc)
    wanted, _raw = asked_for(svc, cm.settings.address_map)
    holding = all(svc in users.get(ip, []) for ip in current)
    if current and holding and (not wanted or wanted == current):
        return
    for ip in current:  # let go of an address no longer valid for it
        if svc in users.get(ip, []):
            users[ip].remove(svc)
    ips, reason = allocate(svc, pools, users, cm.settings.address_map)
    uid = svc["metadata"]["uid"]
    if ips is None:
        message = f'Failed to allocate IP for "{_key(svc)}": {reason}'
        if current:
            await _set_ingress(cm, svc, [])
        said = _memory(cm).said
        if said.get(uid) != message:
            said[uid] = message
            log.info("%s", message)
            await cm.event(svc, "AllocationFailed", message, "Warning", SOURCE)
        return
    for ip in ips:
        users.setdefault(ip, []).append(svc)
    if await _set_ingress(cm, svc, ips):
        message = f"Assigned IP {_go_ips(ips)}"
        _memory(cm).said[uid] = message
        await cm.event(svc, "IPAllocated", message, "Normal", SOURCE)


async def _set_ingress(cm: Manager, svc: dict[str, Any], ips: list[str]) -> bool:
    meta = svc["metadata"]
    body = {
        **svc,
        "status": {
            **(svc.get("status") or {}),
            "loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]} if ips else {},
        },
    }
    try:
        await cm.client.update(
            path("v1", "services", meta["namespace"], meta["name"], "status"), body
        )
    except ClientError as exc:
        log.debug("service %s status: %s", _key(svc), exc)
        return False
    return True


async def _pool_status(
    cm: Manager, pools: list[Pool], users: dict[str, list[dict[str, Any]]]
) -> None:
    version, plural = metallb.api("IPAddressPool")
    for pool in pools:
        assigned = sum(1 for a in pool.addresses if users.get(a))
        status = {
            "assignedIPv4": assigned,
            "availableIPv4": len(pool.addresses) - assigned,
            "assignedIPv6": 0,
            "availableIPv6": 0,
        }
        if (pool.obj.get("status") or {}) == status:
            continue
        meta = pool.obj["metadata"]
        try:
            updated = await cm.client.update(
                path(version, plural, meta["namespace"], meta["name"], "status"),
                {**pool.obj, "status": status},
            )
            pool.obj = updated
        except ClientError as exc:
            log.debug("pool %s status: %s", meta["name"], exc)
            _memory(cm).read_at = 0.0  # read it again next pass
