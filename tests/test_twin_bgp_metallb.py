"""MetalLB in the twin, delivered from the rendered tree: addresses from the pool, the
real FRR on the gateway with a BGP session from every node's ExaBGP speaker and a route
per address, traffic from this machine, and an announcing host pulled.

(Named to run before test_twin_cli, whose `twin down` then checks that no bgpd, ExaBGP
or forwarding listener outlives the twin.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from halab.apply import apply_objects
from halab.context import open_context
from halab.inventory import load_inventory
from halab.inventory.addresses import parse_range
from halab.phases.phase0 import check_served_parts
from halab.phases.phase7 import unserved
from halab.render.infrastructure import metallb_config, metallb_controller
from halab.render.objects import namespace

from twinlab import TwinLab, eventually, http_body, namespace_gone

pytestmark = pytest.mark.twin
NS = "metallb-system"


def vtysh(lab: TwinLab, command: str) -> dict[str, Any]:
    """FRR's answer on the gateway, over SSH with the user's own client, as at home."""
    done = subprocess.run(
        ["ssh", "-F", str(lab.dir / "ssh_config"), "udm", f"vtysh -c '{command} json'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def sessions(lab: TwinLab) -> dict[str, str]:
    peers = vtysh(lab, "show bgp summary").get("ipv4Unicast", {}).get("peers", {})
    return {ip: p.get("state", "") for ip, p in peers.items()}


def routes(lab: TwinLab) -> dict[str, set[str]]:
    """Each prefix the gateway holds, with the next hops of its valid paths."""
    out: dict[str, set[str]] = {}
    for prefix, paths in vtysh(lab, "show ip bgp").get("routes", {}).items():
        out[prefix] = {hop["ip"] for p in paths if p.get("valid") for hop in p.get("nexthops", [])}
    return out


@pytest.fixture(scope="module")
def metallb(twin: TwinLab) -> Iterator[TwinLab]:
    """The rendered MetalLB release and configuration, delivered as Flux would."""
    api = twin.api()
    inv = load_inventory(twin.inventory)
    apply_objects(api, [namespace(NS), *metallb_controller()])

    def configured() -> bool:  # once the chart's CRDs serve the configuration's kinds
        return not any(unserved(c) for c in apply_objects(api, metallb_config(inv)))

    eventually(configured, 90, "the chart's CRDs accept the rendered MetalLB configuration")
    core = client.CoreV1Api(api)

    def speakers_ready() -> bool:
        pods = core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/component=speaker")
        ready = [
            p
            for p in pods.items
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return len(ready) == len(inv.nodes)

    eventually(speakers_ready, 90, "a ready speaker on every node (the rendered tolerations)")
    yield twin
    # The tests' LoadBalancer Services go, so no later MetalLB finds a pool address the
    # rendered tree pins (phase 8's orchestrator) held by one of them.
    for svc in core.list_service_for_all_namespaces().items:
        if svc.spec.type == "LoadBalancer" and svc.metadata.namespace.startswith("t-"):
            core.delete_namespaced_service(svc.metadata.name, svc.metadata.namespace)
    # The rest of the session runs without MetalLB's speakers (their ExaBGPs cost CPU).
    core.delete_namespace(NS)
    namespace_gone(api, NS)
    eventually(lambda: not exabgp_of(twin), 30, "every ExaBGP gone with its speaker pod")


def exabgp_of(lab: TwinLab) -> list[str]:
    """Command lines of this twin's ExaBGP processes."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "exabgp" in cmdline and str(lab.dir) in cmdline:
            found.append(cmdline)
    return found


def test_phase0_sees_metallb_and_the_cluster_dns(metallb: TwinLab, tmp_path: Path) -> None:
    """Phase 0's "Verify MetalLB + CoreDNS configuration", once MetalLB runs."""
    ctx = open_context(metallb.inventory, target=metallb.dir / "target.yaml", run_dir=tmp_path)
    found = {c.id: c for c in check_served_parts(ctx)}
    for cid in ("metallb-config", "loadbalancer", "coredns"):
        assert found[cid].status == "pass", found[cid]
    assert "HTTP 200" in found["loadbalancer"].detail
    assert "kubernetes.default.svc.cluster.local" in found["coredns"].detail


def test_clusterplex_from_the_rendered_tree_meets_its_unraid_worker(
    metallb: TwinLab, tmp_path: Path
) -> None:
    """Phase 8's first steps on the twin: the rendered orchestrator gets its pinned
    address, the Unraid Docker worker from the rendered compose file (`docker compose up
    -d` over SSH) registers through that address, a synthetic job runs on it, and the k8s
    worker asking for the plan's GPU resource name stays Pending, as at home."""
    from halab.clusterplex import Orchestrator
    from halab.hosts import Hosts
    from halab.render.apps import orchestrator_ip, workload
    from halab.render.external import compose
    from halab.target import load_target

    api = metallb.api()
    core = client.CoreV1Api(api)
    inv = load_inventory(metallb.inventory)
    orchestrator = next(a for a in inv.apps if a.role == "orchestrator")
    workers = [a for a in inv.apps if a.role == "worker"]
    docker = next(a for a in workers if a.kind == "docker")
    in_k8s = [a for a in workers if a.kind != "docker"]
    ns = orchestrator.namespace
    apply_objects(api, [namespace(ns), *workload(orchestrator, inv)])
    home = orchestrator_ip(inv)
    lb = f"127.77.0.{home.rsplit('.', 1)[1]}"  # the twin's one rule
    got = eventually(lambda: ingress(core, ns, orchestrator.name), 60, "the orchestrator's address")
    assert got == lb
    url = f"http://{lb}:{orchestrator.ports[0]}"
    eventually(lambda: _healthy(url), 90, f"{url}/health through MetalLB and kube-proxy")
    remote = f"/mnt/user/appdata/{docker.name}/docker-compose.yml"
    local = tmp_path / "docker-compose.yml"
    local.write_text(compose(inv, docker.host))
    with Hosts(inv, load_target(metallb.dir / "target.yaml"), connect_timeout=5) as hosts:
        host = hosts[docker.host]
        host.upload(local, remote, mode=0o644)
        try:
            host.run(["docker", "compose", "-f", remote, "up", "-d"], check=True)
            eventually(
                lambda: Orchestrator(url).metrics().workers_active == 1,
                90,
                "the Unraid worker registered through the orchestrator's address",
            )
            logs = host.run(["docker", "logs", docker.name], check=True).stdout
            assert "Worker connected on socket " in logs
            job = Orchestrator(url).post_job(timeout=60)
            assert job.result is True
            assert (
                "Starting test of waiting for 5 seconds"
                in host.run(["docker", "logs", docker.name], check=True).stdout
            )
            for app in in_k8s:
                apply_objects(api, workload(app, inv))
            for app in in_k8s:
                wanted = [r for r in app.resources.limits if "gpu" in r]
                if wanted and not any(
                    wanted[0] in (n.status.allocatable or {}) for n in core.list_node().items
                ):
                    message = eventually(
                        lambda app=app: _unschedulable(core, ns, app.name), 60, "Pending"
                    )
                    assert f"Insufficient {wanted[0]}" in message
        finally:
            host.run(["docker", "compose", "-f", remote, "down"], check=True)
            core.delete_namespace(ns)
    namespace_gone(api, ns)


def _healthy(url: str) -> bool:
    from halab.clusterplex import ClusterPlexError, Orchestrator

    try:
        return Orchestrator(url, timeout=3).healthy()
    except ClusterPlexError:
        return False


def _unschedulable(core: client.CoreV1Api, ns: str, app: str) -> str | None:
    for pod in core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/name={app}").items:
        for c in pod.status.conditions or []:
            if c.type == "PodScheduled" and c.reason == "Unschedulable":
                return str(c.message)
    return None


def web(core: client.CoreV1Api, apps: client.AppsV1Api, ns: str, name: str, **meta: Any) -> None:
    labels = {"app": name}
    container = {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": name, **meta},
            "spec": {
                "type": "LoadBalancer",
                "selector": labels,
                "ports": [{"port": 8080, "targetPort": 80}],
            },
        },
    )


def ingress(core: client.CoreV1Api, ns: str, name: str) -> str | None:
    lb = core.read_namespaced_service(name, ns).status.load_balancer
    return lb.ingress[0].ip if lb and lb.ingress else None


def events(core: client.CoreV1Api, ns: str, name: str) -> list[tuple[str, str]]:
    return [
        (e.reason, e.message)
        for e in core.list_namespaced_event(ns).items
        if e.involved_object.name == name
    ]


def test_addresses_sessions_routes_and_traffic(metallb: TwinLab) -> None:
    lab = metallb
    api = lab.api()
    core, apps, ns = client.CoreV1Api(api), client.AppsV1Api(api), lab.namespace()
    inv = load_inventory(lab.inventory)
    nodes = {
        n.metadata.name: next(a.address for a in n.status.addresses if a.type == "InternalIP")
        for n in core.list_node().items
    }
    eventually(
        lambda: (
            set(sessions(lab)) == set(nodes.values())
            and set(sessions(lab).values()) == {"Established"}
        ),
        60,
        "a BGP session Established with the gateway from every node",
    )
    web(core, apps, ns, "web")
    address = eventually(lambda: ingress(core, ns, "web"), 30, "web gets a LoadBalancer address")
    homes = pool_addresses(inv.network.metallb.pool)
    assert address in {f"127.77.0.{h.rsplit('.', 1)[1]}" for h in homes}  # the pool, moved
    # The controller writes the address, then records the event.
    eventually(
        lambda: ("IPAllocated", f'Assigned IP ["{address}"]') in events(core, ns, "web"),
        10,
        "the IPAllocated event",
    )
    answer = eventually(lambda: http_body(address, 8080), 60, f"{address}:8080 answers from here")
    assert "placeholder for nginx" in answer
    eventually(
        lambda: routes(lab).get(f"{address}/32") == set(nodes.values()),
        30,
        f"the gateway has {address}/32 from every node",
    )
    expected = {f'announcing from node "{n}" with protocol "bgp"' for n in nodes}
    eventually(
        lambda: {m for r, m in events(core, ns, "web") if r == "nodeAssigned"} == expected,
        10,
        "a nodeAssigned event from every node",
    )

    def mine() -> list[dict[str, Any]]:
        # A speaker creates its ServiceBGPStatus, then writes its status (as MetalLB's
        # does, two calls): one read between them sees an object without status yet.
        statuses = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "metallb.io", "v1beta1", NS, "servicebgpstatuses"
        )["items"]
        return [s for s in statuses if (s.get("status") or {}).get("serviceNamespace") == ns]

    eventually(
        lambda: {s["status"]["node"] for s in mine()} == set(nodes),
        10,
        "a ServiceBGPStatus with its status from every node",
    )
    assert all(s["status"]["peers"] == ["gateway"] for s in mine())
    pool = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "metallb.io", "v1beta1", NS, "ipaddresspools", "default"
    )
    assert pool["status"]["assignedIPv4"] >= 1
    size = len(pool_addresses(inv.network.metallb.pool))
    assert pool["status"]["assignedIPv4"] + pool["status"]["availableIPv4"] == size


def pool_addresses(pool: list[str]) -> list[str]:
    """The inventory pool's addresses, as the home network has them."""
    out = []
    for entry in pool:
        span = parse_range(entry)
        out += [str(IPv4Address(n)) for n in range(int(span.first), int(span.last) + 1)]
    return out


def test_a_requested_address_is_honoured_and_a_taken_one_refused(metallb: TwinLab) -> None:
    api = metallb.api()
    core, apps, ns = client.CoreV1Api(api), client.AppsV1Api(api), metallb.namespace()
    inv = load_inventory(metallb.inventory)
    home = pool_addresses(inv.network.metallb.pool)[-1]
    # The annotation names a home address, as the rendered tree does; the twin moves it
    # onto its own network by its one rule (the last octet kept).
    asked = {"annotations": {"metallb.io/loadBalancerIPs": home}}
    web(core, apps, ns, "pinned", **asked)
    got = eventually(lambda: ingress(core, ns, "pinned"), 30, "the pinned Service's address")
    assert got == f"127.77.0.{home.rsplit('.', 1)[1]}"
    web(core, apps, ns, "second", **asked)
    expected = (
        f'Failed to allocate IP for "{ns}/second": can\'t change sharing key for '
        f'"{ns}/second", address also in use by {ns}/pinned'
    )
    eventually(
        lambda: ("AllocationFailed", expected) in events(core, ns, "second"),
        30,
        "the second Service is refused the taken address with MetalLB's words",
    )
    assert ingress(core, ns, "second") is None


def test_the_address_survives_its_announcing_host_and_the_session_returns(
    metallb: TwinLab,
) -> None:
    lab = metallb
    api = lab.api()
    core, apps, ns = client.CoreV1Api(api), client.AppsV1Api(api), lab.namespace()
    inv = load_inventory(lab.inventory)
    # The Pi's node holds no pod of this Service: the host that goes is one that only
    # announces (the Service's pod elsewhere keeps answering).
    victim = next(n for n in inv.nodes if n.arch == "arm64")
    victim_ip = next(
        a.address for a in core.read_node(victim.name).status.addresses if a.type == "InternalIP"
    )
    web(core, apps, ns, "ha")
    address = eventually(lambda: ingress(core, ns, "ha"), 30, "ha gets an address")
    eventually(lambda: http_body(address, 8080), 60, "ha answers")
    eventually(
        lambda: victim_ip in routes(lab).get(f"{address}/32", set()),
        30,
        f"{victim.name} announces {address}",
    )
    lab.fail(victim.host)
    try:
        eventually(
            lambda: sessions(lab).get(victim_ip) != "Established",
            30,
            f"the gateway drops {victim.name}'s session when its host's plug is pulled",
        )
        assert victim_ip not in routes(lab).get(f"{address}/32", set())
        for _ in range(10):  # every connection, wherever the kernel sends it
            assert http_body(address, 8080) is not None, "the address stopped answering"
    finally:
        lab.recover(victim.host)
    eventually(
        lambda: sessions(lab).get(victim_ip) == "Established",
        90,
        f"{victim.name}'s session is back once its host is",
    )

    def statuses_of_victim() -> list[dict[str, Any]]:
        items = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "metallb.io", "v1beta1", NS, "servicebgpstatuses"
        )["items"]
        return [
            s
            for s in items
            if s["status"].get("node") == victim.name and s["status"].get("serviceName") == "ha"
        ]

    # Its speaker starts afresh: one status for the Service, none left from before.
    eventually(lambda: len(statuses_of_victim()) == 1, 30, f"one ServiceBGPStatus of {victim.name}")
