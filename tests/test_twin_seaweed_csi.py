"""The SeaweedFS CSI driver in the session's twin: installed from the rendered HelmRelease
by the twin's Flux stand-in, claims provisioned as filer directories, volumes attached
through VolumeAttachments and mounted into pods with the real `weed mount`, and an RWO
volume on a lost node released only by the force detach."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from kubernetes import client

from halab.context import Context
from halab.phases import phase2
from halab.seaweed import SeaweedFS
from halab.twin import supervisor
from halab.twin.kubelet.csi import mounts_under
from seaweed_storage import SHARED

from twinlab import TwinLab, eventually

pytestmark = pytest.mark.twin
DRIVER = "seaweedfs-csi-driver"


@pytest.fixture(scope="module")
def storage(twin: TwinLab, tmp_path_factory: pytest.TempPathFactory) -> Context:
    """SeaweedFS, shared with test_twin_seaweedfs (seaweed_storage)."""
    return SHARED.get(twin, tmp_path_factory.mktemp("csi"))


def _claim(core: Any, ns: str, name: str, mode: str = "ReadWriteOnce") -> str:
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": [mode],
                "storageClassName": "seaweedfs-ha",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    pvc = eventually(
        lambda: (
            (c := core.read_namespaced_persistent_volume_claim(name, ns)).status.phase == "Bound"
            and c
        ),
        60,
        f"claim {name} bound",
    )
    return str(pvc.spec.volume_name)


def _pod(name: str, claim: str, script: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "c",
                "image": "busybox:1.36",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "d", "mountPath": "/data"}],
            }
        ],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
    }
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name}, "spec": spec}


def _finished(core: Any, ns: str, name: str) -> Any:
    return eventually(
        lambda: (
            (p := core.read_namespaced_pod(name, ns)).status.phase in ("Succeeded", "Failed") and p
        ),
        90,
        f"pod {name} finished",
    )


def test_the_helmrelease_installs_the_driver(twin: TwinLab, storage: Context) -> None:
    api = twin.api()
    release = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "helm.toolkit.fluxcd.io", "v2", "seaweedfs", "helmreleases", DRIVER
    )
    (ready,) = release["status"]["conditions"]
    assert ready["status"] == "True", ready
    assert ready["message"] == (
        "Helm install succeeded for release seaweedfs/seaweedfs-csi-driver.v1 "
        "with chart seaweedfs-csi-driver@0.2.35"
    )
    storage_api = client.StorageV1Api(api)
    assert storage_api.read_csi_driver(DRIVER).spec.attach_required is True
    # Registered where the node DaemonSet runs: the nodes without a NoSchedule taint.
    workers = {
        n.name
        for n in storage.inventory.nodes
        if not any(t.effect == "NoSchedule" for t in n.taints)
    }
    checks = phase2.check_csi(storage, api)
    assert [c.status for c in checks] == ["pass"], checks[0].detail
    registered = {
        n.metadata.name
        for n in storage_api.list_csi_node().items
        if any(d.name == DRIVER for d in n.spec.drivers or [])
    }
    assert registered == workers
    pods = supervisor.status(twin.dir)["pods"]
    runs = [p["runs"] for p in pods if "/seaweedfs-csi-driver-node-" in p["pod"]]
    assert len(runs) == len(workers)
    assert all(r.startswith("stand-in: SeaweedFS CSI driver") for r in runs), runs


def test_a_pod_writes_through_weed_mount_into_seaweedfs(twin: TwinLab, storage: Context) -> None:
    api = twin.api()
    core = client.CoreV1Api(api)
    ns = twin.namespace()
    pv = _claim(core, ns, "data")
    volume = core.read_persistent_volume(pv)
    assert volume.spec.csi.volume_attributes["path"] == f"/buckets/{pv}"
    token = secrets.token_hex(8)
    core.create_namespaced_pod(
        ns, _pod("writer", "data", f"echo {token} > /data/f && mount | grep ' /data '")
    )
    done = _finished(core, ns, "writer")
    log = core.read_namespaced_pod_log("writer", ns)
    assert done.status.phase == "Succeeded", log
    assert "fuse.seaweedfs" in log  # the pod's /data is the real weed mount
    # What the pod wrote is in SeaweedFS: readable through the filer, in the volume's
    # collection, with the class's replication.
    sw = SeaweedFS(api, storage.inventory)
    assert sw.get(f"/buckets/{pv}/f") == f"{token}\n".encode()
    copies = sw.volume_copies()
    mine = copies[copies["collection"] == pv]
    assert set(mine["replication"]) == {
        storage.inventory.storage.seaweedfs.replication.rjust(3, "0")
    }
    # The pod ended: its mount is gone, and nothing is attached for it any more.
    pod_dir = twin.dir / "hosts"
    eventually(
        lambda: not [m for m in mounts_under(pod_dir) if done.metadata.uid in m],
        30,
        "the writer's mount gone",
    )
    core.delete_namespaced_pod("writer", ns, grace_period_seconds=0)
    storage_api = client.StorageV1Api(api)
    eventually(
        lambda: not [
            a for a in storage_api.list_volume_attachment().items
            if a.spec.source.persistent_volume_name == pv
        ],
        30,
        "the volume detached",
    )  # fmt: skip


def test_an_rwo_volume_on_a_lost_node_waits_for_the_force_detach(
    twin: TwinLab, storage: Context
) -> None:
    api = twin.api()
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    ns = twin.namespace()
    pv = _claim(core, ns, "home")
    token = secrets.token_hex(8)
    inv = storage.inventory
    sw = SeaweedFS(api, inv)
    # Write first, then start the app on a node whose host failing leaves a copy of the
    # file's volume, so the test is about attaching, not placement.
    core.create_namespaced_pod(ns, _pod("seed", "home", f"echo {token} > /data/f"))
    assert _finished(core, ns, "seed").status.phase == "Succeeded"
    core.delete_namespaced_pod("seed", ns, grace_period_seconds=0)
    (chunk,) = sw.chunks(f"/buckets/{pv}/f")
    holders = {inv.node(n).host for n in sw.lookup(int(chunk.split(",")[0]))}
    workers = [n for n in inv.nodes if not any(t.effect == "NoSchedule" for t in n.taints)]
    first = next(n for n in workers if holders - {n.host})
    second = next(n for n in workers if n.host != first.host)
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "app"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {
                        "affinity": {
                            "nodeAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [
                                        {
                                            "matchExpressions": [
                                                {
                                                    "key": "kubernetes.io/hostname",
                                                    "operator": "In",
                                                    "values": [first.name, second.name],
                                                }
                                            ]
                                        }
                                    ]
                                },
                                "preferredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "weight": 100,
                                        "preference": {
                                            "matchExpressions": [
                                                {
                                                    "key": "kubernetes.io/hostname",
                                                    "operator": "In",
                                                    "values": [first.name],
                                                }
                                            ]
                                        },
                                    }
                                ],
                            }
                        },
                        "containers": [
                            {
                                "name": "c",
                                "image": "busybox:1.36",
                                "command": ["sh", "-c", "cat /data/f; exec sleep 3600"],
                                "volumeMounts": [{"name": "d", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "home"}}],
                    },
                },
            },
        },
    )

    def running_on(node: str) -> Any:
        pods = core.list_namespaced_pod(ns, label_selector="app=app").items
        return next(
            (
                p
                for p in pods
                if p.spec.node_name == node
                and p.status.phase == "Running"
                and not p.metadata.deletion_timestamp
            ),
            None,
        )

    eventually(lambda: running_on(first.name), 90, f"the app running on {first.name}")
    try:
        twin.fail(first.host)
        moved = eventually(lambda: running_on(second.name), 180, f"the app on {second.name}")

        def reasons() -> set[str]:
            events = (
                core.list_namespaced_event(ns).items + core.list_namespaced_event("default").items
            )
            return {f"{e.reason}: {e.message}" for e in events}

        seen = reasons()
        assert any(
            r.startswith(f'FailedAttachVolume: Multi-Attach error for volume "{pv}"') for r in seen
        ), seen
        assert any(
            r.startswith(f"ForceDetach: volume detached from node {first.name}") for r in seen
        )
        # Meanwhile the new pod's kubelet said why it waited.
        waited = f"FailedMount: MountVolume.SetUp failed: volume {pv} is not attached to "
        assert any(r.startswith(waited) for r in seen), seen
        log = eventually(
            lambda: core.read_namespaced_pod_log(moved.metadata.name, ns).strip(), 30, "its log"
        )
        assert log == token  # the data, read back through a new weed mount on the new node
    finally:
        twin.recover(first.host)
        apps.delete_namespaced_deployment("app", ns)
    # The failed host's mounts went with it.
    assert not [m for m in mounts_under(twin.dir / "hosts" / first.host) if "/csi/" in m]


def test_a_chart_the_twin_has_no_copy_of_is_not_installed(twin: TwinLab, storage: Context) -> None:
    custom = client.CustomObjectsApi(twin.api())
    ns = twin.namespace()
    custom.create_namespaced_custom_object(
        "helm.toolkit.fluxcd.io",
        "v2",
        ns,
        "helmreleases",
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "monitoring"},
            "spec": {"chart": {"spec": {"chart": "kube-prometheus-stack", "version": "58.0.0"}}},
        },
    )

    def condition() -> Any:
        found = custom.get_namespaced_custom_object(
            "helm.toolkit.fluxcd.io", "v2", ns, "helmreleases", "monitoring"
        )
        return next(iter((found.get("status") or {}).get("conditions") or []), None)

    ready = eventually(condition, 30, "the HelmRelease's Ready condition")
    assert (ready["status"], ready["reason"]) == ("False", "ArtifactFailed")
    assert (
        "chart kube-prometheus-stack@58.0.0 is not in the twin's chart catalogue"
        in ready["message"]
    )
    assert not client.AppsV1Api(twin.api()).list_namespaced_deployment(ns).items
