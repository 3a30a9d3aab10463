"""The twin's scheduler and workload controllers, seen through the official client."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from halab.inventory import load_inventory
from halab.render.infrastructure import gpu_plugin

from twinlab import TwinLab, eventually

pytestmark = pytest.mark.twin


def pod(name: str, **spec: Any) -> dict[str, Any]:
    body = {"containers": [{"name": "c", "image": "nginx:1.27"}], **spec}
    return {"metadata": {"name": name, "labels": {"app": name}}, "spec": body}


def node_of(core: client.CoreV1Api, ns: str, name: str, timeout: float = 20) -> str:
    found: str = eventually(
        lambda: core.read_namespaced_pod(name, ns).spec.node_name, timeout, f"{name} is scheduled"
    )
    return found


def unschedulable_message(core: client.CoreV1Api, ns: str, name: str) -> str:
    def message() -> str | None:
        for cond in core.read_namespaced_pod(name, ns).status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False":
                return str(cond.message)
        return None

    return eventually(message, 20, f"{name} is reported unschedulable")


def test_node_selector_and_inventory_labels(twin: TwinLab) -> None:
    core, ns = client.CoreV1Api(twin.api()), twin.namespace()
    arm = {"kubernetes.io/arch": "arm64"}
    core.create_namespaced_pod(ns, pod("arm", node_selector=arm))
    # The Pi is the only arm64 node, and the inventory taints it (the plan's master taint).
    assert "untolerated taint {node-role.kubernetes.io/master}" in unschedulable_message(
        core, ns, "arm"
    )
    master = [{"key": "node-role.kubernetes.io/master", "operator": "Exists"}]
    core.create_namespaced_pod(ns, pod("arm-ok", node_selector=arm, tolerations=master))
    assert node_of(core, ns, "arm-ok") == "k3s-cp3"
    core.create_namespaced_pod(ns, pod("nowhere", node_selector={"role": "no-such-role"}))
    message = unschedulable_message(core, ns, "nowhere")
    assert message.startswith("0/6 nodes are available:")
    assert "didn't match Pod's node affinity/selector" in message


GPU_TOLERATION = [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]


def gpu_allocatable(core: client.CoreV1Api, resource: str) -> dict[str, str]:
    return {
        n.metadata.name: (n.status.allocatable or {})[resource]
        for n in core.list_node().items
        if resource in (n.status.allocatable or {})
    }


def test_resources_and_gpu(twin: TwinLab) -> None:
    """The GPU appears with the device plugin's pod and leaves with it; a container given
    it sees the plugin's device nodes, which open nothing (there is no GPU here)."""
    core, ns = client.CoreV1Api(twin.api()), twin.namespace()
    apps = client.AppsV1Api(twin.api())
    inv = load_inventory(twin.inventory)
    with_gpu = {n.name: n.gpu for n in inv.nodes if n.gpu is not None}
    assert set(with_gpu) == {"k3s-w3"}  # the LXC the plan passes the iGPU to
    resource = with_gpu["k3s-w3"].resource_name
    slots = str(with_gpu["k3s-w3"].shared_dev_num)
    # No plugin runs, so no node offers one (a node the plugin ran on earlier in the
    # session keeps the resource at 0, as the kubelet's device manager does).
    assert not {n: v for n, v in gpu_allocatable(core, resource).items() if v != "0"}
    wants = {"limits": {resource: "1"}}
    ffmpeg = [{"name": "c", "image": "jellyfin/ffmpeg", "resources": wants}]
    core.create_namespaced_pod(ns, pod("gpu", containers=ffmpeg, tolerations=GPU_TOLERATION))
    assert f"Insufficient {resource}" in unschedulable_message(core, ns, "gpu")
    (plugin,) = gpu_plugin(inv)
    apps.create_namespaced_daemon_set("kube-system", plugin)
    try:
        eventually(
            lambda: gpu_allocatable(core, resource) == {"k3s-w3": slots},
            30,
            f"k3s-w3 offers {slots} x {resource} while the plugin runs, and no other node does",
        )
        assert node_of(core, ns, "gpu", timeout=30) == "k3s-w3"
        # The plan shares the GPU with one container at a time (-shared-dev-num=1).
        core.delete_namespaced_pod("gpu", ns, grace_period_seconds=0)
        ls = {
            "name": "c",
            "image": "busybox",
            "command": ["sh", "-c", "ls /dev/dri; cat /dev/dri/renderD128 || echo rc=$?"],
            "resources": wants,
        }
        core.create_namespaced_pod(
            ns, pod("dri", containers=[ls], tolerations=GPU_TOLERATION, restartPolicy="Never")
        )
        eventually(
            lambda: core.read_namespaced_pod("dri", ns).status.phase == "Succeeded",
            30,
            "the /dev/dri pod finishes",
        )
        out = core.read_namespaced_pod_log("dri", ns)
        assert "card0" in out and "renderD128" in out, out
        assert "No such device or address" in out and "rc=1" in out, out  # no driver here
        # The plan's resource name is offered by nobody: the scheduler says so.
        wrong = [{"name": "c", "image": "busybox", "resources": {"limits": {"intel.com/gpu": "1"}}}]
        core.create_namespaced_pod(ns, pod("plan", containers=wrong, tolerations=GPU_TOLERATION))
        message = unschedulable_message(core, ns, "plan")
        assert message.startswith(f"0/{len(inv.nodes)} nodes are available:"), message
        assert "Insufficient intel.com/gpu" in message, message
    finally:
        apps.delete_namespaced_daemon_set(plugin["metadata"]["name"], "kube-system")
    eventually(
        lambda: gpu_allocatable(core, resource) == {"k3s-w3": "0"},
        30,
        "the GPU is no longer allocatable once the plugin's pod is gone",
    )
    huge = {"requests": {"cpu": "64"}}
    core.create_namespaced_pod(
        ns, pod("huge", containers=[{"name": "c", "image": "nginx", "resources": huge}])
    )
    assert "Insufficient cpu" in unschedulable_message(core, ns, "huge")


def test_taints_tolerations_and_anti_affinity(twin: TwinLab) -> None:
    core, ns = client.CoreV1Api(twin.api()), twin.namespace()
    workers = ("k3s-w1", "k3s-w2", "k3s-w3")
    plain = core.api_client.sanitize_for_serialization
    before = {n: plain(core.read_node(n).spec.taints) or [] for n in workers}
    extra = {"key": "t", "value": "x", "effect": "NoSchedule"}
    for node in workers:
        core.patch_node(node, {"spec": {"taints": [*before[node], extra]}})
    try:
        tolerated = [
            {"key": "t", "operator": "Equal", "value": "x", "effect": "NoSchedule"},
            {"key": "gpu", "operator": "Exists"},
        ]
        core.create_namespaced_pod(ns, pod("plain"))
        core.create_namespaced_pod(
            ns,
            pod(
                "tol",
                tolerations=tolerated,
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "node-role.kubernetes.io/control-plane",
                                            "operator": "DoesNotExist",
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                },
            ),
        )
        assert node_of(core, ns, "plain").startswith("k3s-cp")
        assert node_of(core, ns, "tol").startswith("k3s-w")
        anti = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"tier": "x"}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
        for i in range(2):
            body = pod(f"anti{i}", affinity=anti)
            body["metadata"]["labels"]["tier"] = "x"
            core.create_namespaced_pod(ns, body)
        assert node_of(core, ns, "anti0") != node_of(core, ns, "anti1")
    finally:
        for node in workers:
            core.patch_node(node, {"spec": {"taints": before[node] or None}})


def test_statefulset_names_claims_and_order(twin: TwinLab) -> None:
    api = twin.api()
    core, apps, ns = client.CoreV1Api(api), client.AppsV1Api(api), twin.namespace()
    labels = {"app": "db"}
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 3,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "postgres:16"}]},
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
    )
    eventually(
        lambda: (apps.read_namespaced_stateful_set("db", ns).status.ready_replicas or 0) == 3,
        60,
        "3 ready replicas",
    )
    names = sorted(p.metadata.name for p in core.list_namespaced_pod(ns).items)
    assert names == ["db-0", "db-1", "db-2"]
    claims = {
        c.metadata.name: c.status.phase
        for c in core.list_namespaced_persistent_volume_claim(ns).items
    }
    assert claims == {"data-db-0": "Bound", "data-db-1": "Bound", "data-db-2": "Bound"}
    starts = [core.read_namespaced_pod(f"db-{i}", ns).metadata.creation_timestamp for i in range(3)]
    assert starts == sorted(starts)  # OrderedReady: one after another


def test_daemonset_and_job(twin: TwinLab) -> None:
    api = twin.api()
    apps, batch, ns = client.AppsV1Api(api), client.BatchV1Api(api), twin.namespace()
    labels = {"app": "agent"}
    apps.create_namespaced_daemon_set(
        ns,
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "agent:1"}]},
                },
            },
        },
    )

    def ready_everywhere_allowed() -> bool:
        st = apps.read_namespaced_daemon_set("agent", ns).status
        return bool(st.number_ready == st.desired_number_scheduled == 4)

    # Six nodes, but the GPU worker and the Pi carry NoSchedule taints the pods do not tolerate.
    try:
        eventually(ready_everywhere_allowed, 60, "one ready pod on each of the 4 untainted nodes")
    except AssertionError:
        pods = client.CoreV1Api(api).list_namespaced_pod(ns).items
        raise AssertionError(
            f"{apps.read_namespaced_daemon_set('agent', ns).status}\n"
            + "\n".join(f"{p.metadata.name} {p.spec.node_name} {p.status.phase}" for p in pods)
        ) from None
    batch.create_namespaced_job(
        ns,
        {
            "metadata": {"name": "count"},
            "spec": {
                "completions": 2,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "c", "image": "busybox", "command": ["sh", "-c", "echo ok"]}
                        ],
                    }
                },
            },
        },
    )

    def complete() -> bool:
        conds = batch.read_namespaced_job("count", ns).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conds)

    eventually(complete, 60, "the job completes")
    assert batch.read_namespaced_job("count", ns).status.succeeded == 2


def test_service_endpoints_follow_ready_pods(twin: TwinLab) -> None:
    api = twin.api()
    core, apps, ns = client.CoreV1Api(api), client.AppsV1Api(api), twin.namespace()
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "c",
                                "image": "nginx",
                                "ports": [{"name": "http", "containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        },
    )
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )

    def addresses() -> list[str] | None:
        subsets = core.read_namespaced_endpoints("web", ns).subsets or []
        found = [a.ip for s in subsets for a in s.addresses or [] if s.ports[0].port == 8080]
        return found if len(found) == 2 else None

    ips = eventually(addresses, 30, "two ready endpoints on the named port")
    assert all(ip.startswith("127.42.") for ip in ips)


def test_a_deployment_the_api_refuses_holds_back_no_other(twin: TwinLab) -> None:
    """Controllers sync each object on its own: a Deployment whose ReplicaSet the API
    refuses (its name would pass 253 characters) gets the deployment controller's event
    and is retried, while one created after it rolls out as usual."""
    core, apps, ns = client.CoreV1Api(twin.api()), client.AppsV1Api(twin.api()), twin.namespace()

    def deployment(name: str) -> dict[str, Any]:
        labels = {"app": "refused" if len(name) > 63 else name}
        return {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod("x")["spec"]},
            },
        }

    long_name = "refused-" + "x" * 240  # valid for a Deployment, too long for its ReplicaSet
    apps.create_namespaced_deployment(ns, deployment(long_name))

    def refusal() -> str | None:
        for event in core.list_namespaced_event(ns).items:
            if event.reason == "ReplicaSetCreateError" and event.involved_object.name == long_name:
                return str(event.message)
        return None

    message = eventually(refusal, 30, "the refused ReplicaSet is reported on its Deployment")
    assert "must be no more than 253 characters" in message
    apps.create_namespaced_deployment(ns, deployment("after"))
    eventually(
        lambda: (apps.read_namespaced_deployment("after", ns).status.available_replicas or 0) == 1,
        60,
        "the Deployment created after the refused one becomes available",
    )
    assert not apps.list_namespaced_replica_set(ns, label_selector="app=refused").items
    # Still refused, and said once: the controller retries it without an event a pass.
    events = [
        e for e in core.list_namespaced_event(ns).items if e.reason == "ReplicaSetCreateError"
    ]
    assert len(events) == 1


def _container(core: client.CoreV1Api, ns: str, name: str) -> Any:
    statuses = core.read_namespaced_pod(name, ns).status.container_statuses or []
    return statuses[0] if statuses else None


def test_a_startup_probe_holds_readiness_off_then_lets_it_run_at_once(twin: TwinLab) -> None:
    """As the kubelet runs them: no readiness probe before the startup probe succeeds
    (the container not `started`, not Ready), then readiness at once, not a period later
    (its period here is five minutes); a startup probe that keeps failing has its
    container killed and restarted."""
    core, ns = client.CoreV1Api(twin.api()), twin.namespace()
    tcp = {"tcpSocket": {"port": 8080}}
    late = {
        "name": "c",
        "image": "debian:12",
        # Bound to its own address: others in the session may hold 8080 on theirs.
        "command": ["sh", "-c", 'sleep 4; exec python3 -m http.server --bind "$POD_IP" 8080'],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "startupProbe": {**tcp, "periodSeconds": 1, "failureThreshold": 60},
        "readinessProbe": {**tcp, "periodSeconds": 300},
    }
    core.create_namespaced_pod(ns, {"metadata": {"name": "late"}, "spec": {"containers": [late]}})
    eventually(lambda: _container(core, ns, "late"), 30, "late's container running")
    early = _container(core, ns, "late")
    assert early.started is False and early.ready is False, early
    done = eventually(
        lambda: (c := _container(core, ns, "late")) is not None and c.ready and c, 60, "late Ready"
    )
    assert done.started is True and done.restart_count == 0, done
    # Another port all the same, so that nothing of late's could ever answer for it.
    never = {
        "name": "c",
        "image": "debian:12",
        "command": ["sleep", "600"],
        "startupProbe": {"tcpSocket": {"port": 8089}, "periodSeconds": 1, "failureThreshold": 2},
    }
    core.create_namespaced_pod(ns, {"metadata": {"name": "never"}, "spec": {"containers": [never]}})
    restarted = eventually(
        lambda: (c := _container(core, ns, "never")) is not None and c.restart_count >= 1 and c,
        60,
        "never's container killed and restarted by its failing startup probe",
    )
    assert restarted.started is False and restarted.ready is False, restarted
