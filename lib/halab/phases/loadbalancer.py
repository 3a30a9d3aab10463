"""MetalLB, the gateway's BGP sessions and a LoadBalancer Service reached from here: the
checks phases 0, 6 and 7 share.

- the configuration MetalLB runs with, against the inventory (pool, peer, ASNs, mode);
- a probe Service of type LoadBalancer: an address from the pool, and an HTTP answer at
  that address from this machine (MetalLB's own advice: test from outside the cluster);
- the gateway's BGP sessions, read from FRR on the gateway over SSH
  (`vtysh -c 'show bgp summary json'`): one Established per node, and its routes;
- a name resolved through the cluster DNS from a pod.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
import uuid
from ipaddress import IPv4Address
from typing import Any

from halab.context import Context
from halab.evidence import Check, timed
from halab.hosts import GATEWAY, HostError, Hosts
from halab.inventory import Node
from halab.inventory.addresses import parse_range
from halab.kube import ClusterError, wait_for
from halab.phases.cluster_checks import CHECK_NAMESPACE, Verdict, ensure_namespace

NS = "metallb-system"
GROUP = "metallb.io"
PROBE_IMAGE = "nginx:1.27-alpine"  # answers HTTP on 80 at home; a placeholder in the twin


def deployed(api: Any) -> bool:
    from kubernetes import client

    pods = client.CoreV1Api(api).list_pod_for_all_namespaces(
        label_selector="app.kubernetes.io/name=metallb", _request_timeout=10
    )
    return bool(pods.items)


def _objects(api: Any, version: str, plural: str) -> list[dict[str, Any]]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        found = client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, version, NS, plural
        )
    except ApiException as exc:
        if exc.status == 404:
            return []  # MetalLB's CRDs are not installed
        raise
    items: list[dict[str, Any]] = found.get("items", [])
    return items


def check_config(ctx: Context, api: Any) -> Check:
    """MetalLB's pools and peers are what the inventory says."""
    lb = ctx.inventory.network.metallb

    def run() -> Verdict:
        pools = _objects(api, "v1beta1", "ipaddresspools")
        if not pools:
            return "fail", f"no IPAddressPool in {NS}: deliver the rendered metallb-config.yaml"
        have = {str(a) for p in pools for a in (p.get("spec") or {}).get("addresses") or []}
        missing = [a for a in lb.pool if a not in have]
        if missing:
            return "fail", (
                f"the pool lacks {', '.join(missing)} (it has {', '.join(sorted(have))}): "
                "re-deliver metallb-config.yaml rendered from this inventory"
            )
        parts = [f"pool {', '.join(lb.pool)}"]
        if lb.mode == "l2":
            ads = _objects(api, "v1beta1", "l2advertisements")
            if not ads:
                return "fail", "mode l2 but no L2Advertisement: the pool is never announced"
            return "pass", "; ".join([*parts, "announced in L2 mode"])
        assert lb.bgp is not None
        peers = _objects(api, "v1beta2", "bgppeers")
        wanted = (lb.bgp.my_asn, lb.bgp.peer_asn, str(lb.bgp.peer_address))
        match = [
            p
            for p in peers
            if (
                (p.get("spec") or {}).get("myASN"),
                (p.get("spec") or {}).get("peerASN"),
                (p.get("spec") or {}).get("peerAddress"),
            )
            == wanted
        ]
        if not match:
            seen = [
                f"{p['metadata']['name']}: AS {p['spec'].get('myASN')} -> "
                f"{p['spec'].get('peerAddress')} AS {p['spec'].get('peerASN')}"
                for p in peers
            ] or ["none"]
            return "fail", (
                f"no BGPPeer AS {wanted[0]} -> {wanted[2]} AS {wanted[1]} (BGPPeers: "
                f"{'; '.join(seen)})"
            )
        if not _objects(api, "v1beta1", "bgpadvertisements"):
            return "fail", "no BGPAdvertisement: MetalLB assigns addresses but announces none"
        parts.append(
            f"peer {match[0]['metadata']['name']} {wanted[2]} AS {wanted[1]} (cluster AS "
            f"{wanted[0]})"
        )
        return "pass", "; ".join(parts)

    return timed("metallb-config", "MetalLB's pool and BGP peer are the inventory's", run)


def in_pool(ctx: Context, address: str) -> bool:
    """Whether an address is in the inventory's pool, as the target maps it."""
    assert ctx.target is not None
    for entry in ctx.inventory.network.metallb.pool:
        span = parse_range(entry)
        for n in range(int(span.first), int(span.last) + 1):
            if str(ctx.target.addresses.map(IPv4Address(n))) == address:
                return True
    return False


def check_probe_service(ctx: Context, api: Any, timeout: float = 90) -> Check:
    """A LoadBalancer Service gets an address from the pool and answers HTTP there."""
    title = "A LoadBalancer Service gets a pool address and answers from here"

    def run() -> Verdict:
        from kubernetes import client

        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        ensure_namespace(api)
        name = f"lb-probe-{uuid.uuid4().hex[:5]}"
        labels = {"app": name, "app.kubernetes.io/managed-by": "halab"}
        container = {"name": "web", "image": PROBE_IMAGE, "ports": [{"containerPort": 80}]}
        apps.create_namespaced_deployment(
            CHECK_NAMESPACE,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [container]},
                    },
                },
            },
        )
        core.create_namespaced_service(
            CHECK_NAMESPACE,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "type": "LoadBalancer",
                    "selector": {"app": name},
                    "ports": [{"port": 80, "targetPort": 80}],
                },
            },
        )
        start = time.monotonic()
        try:
            return _probe(ctx, core, name, start, timeout)
        finally:
            core.delete_namespaced_service(name, CHECK_NAMESPACE)
            apps.delete_namespaced_deployment(name, CHECK_NAMESPACE)

    return timed("loadbalancer", title, run)


def _probe(ctx: Context, core: Any, name: str, start: float, timeout: float) -> Verdict:
    def address() -> str | None:
        lb = core.read_namespaced_service(name, CHECK_NAMESPACE).status.load_balancer
        return str(lb.ingress[0].ip) if lb and lb.ingress else None

    try:
        ip = wait_for(address, timeout, f"an address for Service {name}", every=0.5)
    except ClusterError:
        said = [
            f"{e.reason}: {e.message}"
            for e in core.list_namespaced_event(CHECK_NAMESPACE).items
            if e.involved_object.name == name
        ]
        return "fail", (
            f"no address after {timeout:.0f} s (events: {'; '.join(said) or 'none'}); is "
            "MetalLB's controller running, and the pool not used up?"
        )
    got = time.monotonic() - start
    if not in_pool(ctx, ip):
        return (
            "fail",
            f"{ip} is not in the inventory's pool {', '.join(ctx.inventory.network.metallb.pool)}",
        )

    def answers() -> int | None:
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=3) as resp:
                return int(resp.status)
        except OSError:
            return None

    try:
        code = wait_for(answers, timeout, f"HTTP from {ip}:80", every=0.5)
    except ClusterError:
        return "fail", (
            f"{ip} was assigned in {got:.1f} s but nothing answers there from this machine: "
            "no speaker announces it (BGP session down, or no node elected in L2)"
        )
    answered = time.monotonic() - start
    return "pass", (
        f"{ip} assigned in {got:.1f} s, HTTP {code} from this machine "
        f"{answered:.1f} s after the Service was created; {_announcers(core.api_client, name)}"
    )


def _announcers(api: Any, name: str, timeout: float = 10) -> str:
    """Which nodes announce the Service, from the speakers' status objects (MetalLB 0.14
    and later: one ServiceL2Status or ServiceBGPStatus per announcing node)."""
    kinds = (("servicel2statuses", "L2"), ("servicebgpstatuses", "BGP"))

    def found() -> list[str] | None:
        nodes = [
            f"{obj['status']['node']} ({mode})"
            for plural, mode in kinds
            for obj in _objects(api, "v1beta1", plural)
            if (obj.get("status") or {}).get("serviceName") == name
            and (obj.get("status") or {}).get("serviceNamespace") == CHECK_NAMESPACE
            and (obj.get("status") or {}).get("node")
        ]
        return sorted(nodes) or None

    # Speakers write their status objects each on its own time: the answer is the set
    # once it has stopped growing for two seconds (or what there is at the timeout).
    deadline = time.monotonic() + timeout
    seen: list[str] | None = None
    steady_since = time.monotonic()
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a status list mid-change: look again
            now = found()
            if now != seen:
                seen, steady_since = now, time.monotonic()
            elif seen and time.monotonic() - steady_since >= 2.0:
                break
        time.sleep(0.25)
    if not seen:
        return "no speaker status object names it (MetalLB older than 0.14 has none)"
    return "announced by " + ", ".join(seen)


def bgp_summary(ctx: Context) -> dict[str, dict[str, Any]]:
    """The gateway's BGP peers (FRR's `show bgp summary json`), by address, over SSH."""
    assert ctx.target is not None
    with Hosts(ctx.inventory, ctx.target) as hosts:
        done = hosts[GATEWAY].run("vtysh -c 'show bgp summary json'", timeout=30)
    if not done.ok:
        raise HostError(
            f"{GATEWAY}: vtysh failed (exit {done.returncode}): {done.stderr.strip()[:200]}"
        )
    answer = json.loads(done.stdout or "{}")
    peers: dict[str, dict[str, Any]] = answer.get("ipv4Unicast", {}).get("peers", {})
    return peers


def sessions_table(ctx: Context) -> Any:
    """The gateway's BGP sessions as a table: node, address, state, routes, up for."""
    import pandas as pd

    columns = ["node", "address", "state", "routes received", "up for"]
    if ctx.target is None or ctx.inventory.network.metallb.mode != "bgp":
        return pd.DataFrame([], columns=columns)
    peers = bgp_summary(ctx)
    names = {str(ctx.target.addresses.map(n.address)): n.name for n in ctx.inventory.nodes}
    rows = [
        {
            "node": names.get(address, "(not in the inventory)"),
            "address": address,
            "state": p.get("state", ""),
            "routes received": p.get("pfxRcd", 0),
            "up for": p.get("peerUptime", ""),
        }
        for address, p in sorted(peers.items())
    ]
    return pd.DataFrame(rows, columns=columns)


def check_bgp_sessions(ctx: Context, nodes: list[Node], cid: str, title: str) -> Check:
    """The gateway has an Established BGP session with each of these nodes."""

    def run() -> Verdict:
        if ctx.inventory.network.metallb.mode != "bgp":
            return "skip", "MetalLB runs in L2 mode here: no BGP sessions to check"
        assert ctx.target is not None
        peers = bgp_summary(ctx)
        rows, down, unknown = [], [], []
        for node in nodes:
            address = str(ctx.target.addresses.map(node.address))
            peer = peers.get(address)
            state = str(peer.get("state", "?")) if peer else "not a neighbour"
            received = f", {peer.get('pfxRcd', 0)} routes" if peer else ""
            rows.append(f"{node.name} ({address}): {state}{received}")
            if peer is None:
                unknown.append(node.name)
            elif state != "Established":
                down.append(node.name)
        fixes = []
        if unknown:
            fixes.append(
                f"the gateway does not know {', '.join(unknown)}: upload the rendered "
                "external/udm/frr-bgp.conf"
            )
        if down:
            fixes.append(f"no session from {', '.join(down)}: is its MetalLB speaker running?")
        if fixes:
            return "fail", f"{'; '.join(rows)}. {' '.join(fixes)}"
        return "pass", "; ".join(rows)

    return timed(cid, title, run, required=False)


def check_cluster_dns(api: Any, timeout: float = 90) -> Check:
    """A pod resolves a Service name through the cluster DNS."""
    title = "A pod resolves kubernetes.default through the cluster DNS"

    def run() -> Verdict:
        from kubernetes import client

        core = client.CoreV1Api(api)
        ensure_namespace(api)
        name = f"dns-probe-{uuid.uuid4().hex[:5]}"
        core.create_namespaced_pod(
            CHECK_NAMESPACE,
            {
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "halab"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "dns",
                            "image": "busybox:1.36",
                            "command": ["nslookup", "kubernetes.default.svc.cluster.local"],
                        }
                    ],
                },
            },
        )
        try:

            def finished() -> Any:
                pod = core.read_namespaced_pod(name, CHECK_NAMESPACE)
                return pod if pod.status.phase in ("Succeeded", "Failed") else None

            pod = wait_for(finished, timeout, f"DNS probe pod {name} finished", every=0.5)
            log = core.read_namespaced_pod_log(name, CHECK_NAMESPACE).strip()
        finally:
            core.delete_namespaced_pod(name, CHECK_NAMESPACE, grace_period_seconds=0)
        lines = [ln for ln in log.splitlines() if ln.startswith("Address")]
        if pod.status.phase != "Succeeded":
            return "fail", f"nslookup failed: {log[-300:]!r}"
        return "pass", f"kubernetes.default.svc.cluster.local: {'; '.join(lines)}"

    return timed("cluster-dns", title, run, required=False)
