"""Pulling plugs on the twin: the VIP moves, acknowledged writes survive, quorum loss
refuses writes, a lost node's pods are evicted and replaced (StatefulSet pods are not,
until force-deleted). Its own twin, since these tests kill hosts."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from halab.render.objects import hostname_affinity
from halab.twin import supervisor
from halab.twin.etcd import EtcdClient

from twinlab import TwinLab, eventually, through_vip

pytestmark = [pytest.mark.twin, pytest.mark.slow]

HOST_OF = {"k3s-cp1": "proxmox", "k3s-cp2": "unraid", "k3s-cp3": "pi"}
API_OF = {"proxmox": "127.77.0.11", "unraid": "127.77.0.21", "pi": "127.77.0.30"}


@pytest.fixture
def lab(twin: TwinLab) -> TwinLab:
    """The session's twin: twins share 127.77.0.x, so there is one at a time."""
    return twin


@pytest.fixture(autouse=True)
def _all_hosts_back(lab: TwinLab) -> Iterator[None]:
    yield
    back = time.time()
    for host in ("proxmox", "unraid", "pi"):
        lab.recover(host)
    core = client.CoreV1Api(lab.api())
    leases = client.CoordinationV1Api(lab.api())

    def all_back() -> bool:
        # Ready as the API says is not enough: a node failed a moment ago still shows its
        # old Ready until the grace passes. Its kubelet must have renewed its lease since.
        renewed = {
            lease.metadata.name
            for lease in leases.list_namespaced_lease("kube-node-lease").items
            if lease.spec.renew_time and lease.spec.renew_time.timestamp() > back
        }
        return all(
            n.metadata.name in renewed
            and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
            for n in core.list_node().items
        )

    eventually(all_back, 90, "every node Ready again, heartbeating since the recovery")
    # Each API server reads its own etcd member: after every failure they must agree.
    etcd = EtcdClient(lab.etcd_endpoints(), timeout=5.0)
    eventually(lambda: all(etcd.status(e) for e in etcd.endpoints), 30, "every member answers")
    found = etcd.divergence()
    assert found is None, found


def vip_holder(lab: TwinLab) -> str:
    lease = client.CoordinationV1Api(lab.api()).read_namespaced_lease(
        "plndr-cp-lock", "kube-system"
    )
    return str(lease.spec.holder_identity)


def test_vip_moves_to_another_host(lab: TwinLab) -> None:
    holder = vip_holder(lab)
    lab.fail(HOST_OF[holder])
    new = eventually(
        lambda: (h := vip_holder(lab)) != holder and h, 30, "another host holds the VIP"
    )
    assert new in HOST_OF and new != holder
    # The API answers through the VIP again, served by the new holder.
    assert client.VersionApi(lab.api()).get_code().git_version


def test_vip_moves_when_its_holder_hangs(lab: TwinLab) -> None:
    """A hung holder keeps its socket on the VIP while another host wins the lease; once it
    wakes, sees the lease lost and lets go, the new holder binds the VIP."""
    holder = vip_holder(lab)
    lab.freeze(HOST_OF[holder], 16)  # far longer than the lease
    # Connections the hung holder had accepted are reset when it lets go: look again.
    eventually(
        lambda: client.VersionApi(lab.api()).get_code().git_version and vip_holder(lab) != holder,
        30,
        "another host serves the API through the VIP after the hung holder woke",
        every=0.5,
    )


def test_acknowledged_writes_survive_each_host_failing(lab: TwinLab) -> None:
    core = client.CoreV1Api(lab.api())
    ns = lab.namespace()
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            name = f"w{n}"
            try:
                core.create_namespaced_config_map(
                    ns, {"metadata": {"name": name}, "data": {"n": str(n)}}
                )
                acknowledged.append(name)
                n += 1
            except ApiException as exc:
                if exc.status == 409:  # an earlier attempt went through after all
                    acknowledged.append(name)
                    n += 1
                else:
                    time.sleep(0.05)
            except Exception:
                time.sleep(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for host in ("proxmox", "unraid", "pi"):
            count = len(acknowledged)
            eventually(lambda c=count: len(acknowledged) > c + 20, 30, "writes go on")
            lab.fail(host)
            count = len(acknowledged)
            eventually(
                lambda c=count: len(acknowledged) > c + 20, 60, f"writes resume with {host} down"
            )
            lab.recover(host)
            eventually(
                lambda h=host: h in supervisor.running_hosts(supervisor.TwinPaths(lab.dir)),
                10,
                "host back",
            )
            # The next round fails another host only once this one has rejoined.
            eventually(lambda h=host: _member_ok(lab, h), 30, f"{host}'s etcd member rejoined")
    finally:
        stop.set()
        thread.join(10)
    stored = {c.metadata.name for c in core.list_namespaced_config_map(ns).items}
    lost = [name for name in acknowledged if name not in stored]
    assert acknowledged and not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"


def _member_ok(lab: TwinLab, host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{API_OF[host]}:6443/readyz", timeout=1) as resp:
            ok = resp.status == 200
        body = json.dumps({"metadata": {"name": f"probe-{time.time_ns()}"}}).encode()
        request = urllib.request.Request(
            f"http://{API_OF[host]}:6443/api/v1/namespaces/default/configmaps",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=3) as resp:
            return ok and resp.status == 201
    except (OSError, urllib.error.URLError):
        return False


def test_two_hosts_down_refuses_writes(lab: TwinLab) -> None:
    lab.fail("proxmox")
    lab.fail("unraid")
    request = urllib.request.Request(
        f"http://{API_OF['pi']}:6443/api/v1/namespaces/default/configmaps",
        data=json.dumps({"metadata": {"name": "no-quorum"}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=15)
    assert refused.value.code in (503, 504)
    status: dict[str, Any] = json.loads(refused.value.read())
    assert status["kind"] == "Status" and status["status"] == "Failure"


def test_lost_node_pods_are_evicted_and_replaced(lab: TwinLab) -> None:
    api = lab.api()
    core, apps, ns = client.CoreV1Api(api), client.AppsV1Api(api), lab.namespace()
    pin = hostname_affinity(["k3s-w1", "k3s-w2"])
    template = {"spec": {"affinity": pin, "containers": [{"name": "c", "image": "nginx"}]}}
    for kind, extra in (("web", {}), ("db", {"serviceName": "db"})):
        labels = {"app": kind}
        body = {
            "metadata": {"name": kind},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, **template},
                **extra,
            },
        }
        if kind == "web":
            through_vip(apps.create_namespaced_deployment, ns, body)
        else:
            through_vip(apps.create_namespaced_stateful_set, ns, body)

    def ready_pods() -> list[Any] | None:
        pods = [
            p
            for p in core.list_namespaced_pod(ns).items
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return pods if len(pods) == 4 else None

    eventually(ready_pods, 60, "four ready pods")
    on_w2 = {
        p.metadata.name for p in core.list_namespaced_pod(ns).items if p.spec.node_name == "k3s-w2"
    }
    if not on_w2:
        pytest.skip("the scheduler put nothing on k3s-w2")
    lab.fail("unraid")  # k3s-w2 and k3s-cp2

    def node_unreachable() -> bool:
        node = core.read_node("k3s-w2")
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        taints = {(t.key, t.effect) for t in node.spec.taints or []}
        return (
            ready.status == "Unknown" and ("node.kubernetes.io/unreachable", "NoExecute") in taints
        )

    # Within the 4 s grace, or (when k3s-cp2 led the controller manager) once another
    # server has waited out its 15 s lease and taken over.
    eventually(node_unreachable, 60, "k3s-w2 goes Unknown with the unreachable taint")
    eventually(
        lambda: all(core.read_namespaced_pod(n, ns).metadata.deletion_timestamp for n in on_w2),
        30,
        "its pods are evicted after their 3 s toleration",
    )

    def web_replaced() -> bool:
        live = [
            p
            for p in core.list_namespaced_pod(ns, label_selector="app=web").items
            if not p.metadata.deletion_timestamp
        ]
        return len(live) == 2 and all(
            p.spec.node_name == "k3s-w1" and p.status.phase == "Running" for p in live
        )

    eventually(web_replaced, 60, "the Deployment's pods run again, on k3s-w1")
    stuck = [n for n in on_w2 if n.startswith("db-")]
    for name in stuck:
        # At most one pod per StatefulSet identity: no replacement while it is Terminating.
        pod = core.read_namespaced_pod(name, ns)
        assert pod.metadata.deletion_timestamp and pod.spec.node_name == "k3s-w2"
    live_db = [
        p
        for p in core.list_namespaced_pod(ns, label_selector="app=db").items
        if not p.metadata.deletion_timestamp
    ]
    assert len(live_db) == 2 - len(stuck)
    if stuck:
        core.delete_namespaced_pod(stuck[0], ns, grace_period_seconds=0)
        eventually(
            lambda: (p := core.read_namespaced_pod(stuck[0], ns)).spec.node_name == "k3s-w1" and p,
            60,
            "a force delete lets the StatefulSet make it again, elsewhere",
        )


def test_status_reports_hosts_members_and_vip(lab: TwinLab) -> None:
    doc = supervisor.status(lab.dir)
    # The gateway is a host too (MetalLB speaks BGP here): its bgpd and sshd.
    assert doc["running"] and set(doc["hosts"]) == {"proxmox", "unraid", "pi", "udm"}
    # One group a host: its process and sshd; each guest (VM or LXC) its own process and
    # sshd, a server's with its etcd member; the NFS host adds ganesha and its private
    # rpcbind. Proxmox: 2 + cp1 3 + w1 2 + w3 2; Unraid: 2 + 2 NFS + cp2 3 + w2 2; the
    # Pi (bare metal): its process, sshd and etcd member.
    assert {h: i["processes"] for h, i in doc["hosts"].items()} == {
        "proxmox": 9,
        "unraid": 9,
        "pi": 3,
        "udm": 3,
    }
    assert doc["gateway"]["up"] and doc["gateway"]["address"] == "127.77.0.1"
    assert doc["guests"]["k3s-w3"] == {
        "host": "proxmox", "id": 102, "kind": "lxc-privileged", "running": True
    }  # fmt: skip
    assert all(s["up"] for s in doc["ssh"].values()), doc["ssh"]
    assert "arch" in doc["ssh"]["pi"]["from_inventory"]
    assert doc["nfs"] == {
        "host": "unraid",
        "address": "127.77.0.29",
        "up": True,
        "exports": ["/mnt/user/media (ro)", "/mnt/user/transcode (rw)"],
    }
    assert doc["etcd"]["leader"] in HOST_OF and doc["vip_holder"] in HOST_OF
    assert all(doc["nodes"].values()) and len(doc["nodes"]) == 6
    assert Path(lab.dir / "target.yaml").read_text().startswith("# Written by `halab twin up`")
