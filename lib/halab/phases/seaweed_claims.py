"""Phase 2's checks of the CSI driver: registered on the nodes that run pods, and a test
claim of its StorageClass bound, written by one pod and read back by another."""

from __future__ import annotations

import hashlib
import uuid
from functools import partial
from typing import Any

from halab.context import Context
from halab.evidence import Check, timed
from halab.explain import explain
from halab.kube import wait_for
from halab.phases.cluster_checks import Verdict, no_target, wait_bound

CSI_DRIVER = "seaweedfs-csi-driver"


def check_csi(ctx: Context, api: Any, phase: int, timeout: float = 60) -> list[Check]:
    """The CSI driver registered (a CSINode entry) on every node that runs pods."""
    from kubernetes import client

    title = f"The CSI driver ({CSI_DRIVER}) registered on the workers"
    if api is None or ctx.target is None:
        return [no_target("csi-registered", title)]
    if why := ctx.target.lacks("csi"):
        return [Check("csi-registered", title, "skip", why)]

    workers = [
        n.name
        for n in ctx.inventory.nodes_present(phase)
        if not any(t.effect == "NoSchedule" for t in n.taints)
    ]

    def missing_on() -> list[str]:
        """The workers the driver is missing on."""
        storage_api = client.StorageV1Api(api)
        missing = []
        for name in workers:
            try:
                drivers = storage_api.read_csi_node(name).spec.drivers or []
            except Exception as exc:  # no CSINode for the node at all
                missing.append(f"{name} ({explain(exc)})")
                continue
            if not any(d.name == CSI_DRIVER for d in drivers):
                missing.append(name)
        return missing

    def run() -> Verdict:
        # The driver's node pods register a few seconds after its HelmRelease installs.
        try:
            wait_for(lambda: not missing_on(), timeout, "the CSI driver registered")
        except Exception:  # say where it is missing
            return "fail", f"not registered on {', '.join(missing_on())}"
        return "pass", f"registered on {', '.join(workers)}"

    return [timed("csi-registered", title, run)]


def check_claim(ctx: Context, api: Any, timeout: float = 120) -> list[Check]:
    """A test claim of the RWO class binds, a pod writes a file to it and a second pod
    reads it back with the same checksum."""
    from kubernetes import client

    titles = {
        "pvc-binds": "A test PVC of seaweedfs-ha binds",
        "pvc-write-read": "A pod writes to the PVC and another reads it back",
    }
    if api is None or ctx.target is None:
        return [no_target(cid, title) for cid, title in titles.items()]
    if why := ctx.target.lacks("csi"):
        return [Check(cid, title, "skip", why) for cid, title in titles.items()]
    from halab.phases.cluster_checks import CHECK_NAMESPACE, ensure_namespace

    core = client.CoreV1Api(api)
    ensure_namespace(api)
    name = f"seaweedfs-probe-{uuid.uuid4().hex[:5]}"
    core.create_namespaced_persistent_volume_claim(
        CHECK_NAMESPACE,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "seaweedfs-ha",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    checks = []
    try:
        bound = timed(
            "pvc-binds",
            titles["pvc-binds"],
            lambda: _bound(core, name, timeout),
        )
        checks.append(bound)
        if bound.status != "pass":
            checks.append(
                Check("pvc-write-read", titles["pvc-write-read"], "fail", "the claim did not bind")
            )
            return checks
        checks.append(
            timed(
                "pvc-write-read", titles["pvc-write-read"], lambda: _write_read(core, name, timeout)
            )
        )
    finally:
        remove_claim(ctx, api, core, name)
    return checks


def remove_claim(ctx: Context, api: Any, core: Any, claim: str) -> None:
    """Delete the test claim and, since the classes Retain their volumes, the volume too:
    the PV, its filer directory and its collection (each probe's collection holds volume
    slots; left behind, repeated runs would fill the servers)."""
    from halab.phases.cluster_checks import CHECK_NAMESPACE
    from halab.seaweed import SeaweedError, SeaweedFS

    try:
        pv = core.read_namespaced_persistent_volume_claim(claim, CHECK_NAMESPACE).spec.volume_name
    except Exception:  # already gone
        pv = None
    core.delete_namespaced_persistent_volume_claim(claim, CHECK_NAMESPACE)
    if not pv:
        return
    volume = core.read_persistent_volume(pv)
    attributes = (volume.spec.csi.volume_attributes or {}) if volume.spec.csi else {}
    core.delete_persistent_volume(pv)
    sw = SeaweedFS(api, ctx.inventory)
    sw.delete(attributes.get("path", f"/buckets/{pv}"))
    try:
        sw.delete_collection(attributes.get("collection") or pv)
    except SeaweedError as exc:
        # The filer drops a /buckets/<name> directory's collection with the directory
        # (buckets are collections); a path elsewhere leaves it, hence the call.
        if "does not exist" not in str(exc):
            raise


def _bound(core: Any, claim: str, timeout: float) -> Verdict:
    from halab.phases.cluster_checks import CHECK_NAMESPACE

    pvc = wait_bound(core.api_client, CHECK_NAMESPACE, claim, timeout)
    return "pass", f"{claim} bound to {pvc.spec.volume_name}"


def _finished(core: Any, pod: str) -> Any:
    from halab.phases.cluster_checks import CHECK_NAMESPACE

    found = core.read_namespaced_pod(pod, CHECK_NAMESPACE)
    return found if found.status.phase in ("Succeeded", "Failed") else None


def _write_read(core: Any, claim: str, timeout: float) -> Verdict:
    from halab.phases.cluster_checks import CHECK_NAMESPACE

    token = uuid.uuid4().hex
    outputs = []
    for step, script in (
        # sync: weed mount writes back behind close(), and the plan asks what a second
        # pod reads, not what the writer's page cache shows.
        ("write", f"echo {token} > /data/probe && sync && sha256sum /data/probe"),
        ("read", "sha256sum /data/probe"),
    ):
        pod = f"{claim}-{step}"
        core.create_namespaced_pod(
            CHECK_NAMESPACE,
            {
                "metadata": {"name": pod},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "probe",
                            "image": "busybox:1.36",
                            "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        )
        try:
            done = wait_for(
                partial(_finished, core, pod),
                timeout,
                f"{step} pod finished",
            )
            outputs.append((done.status.phase, core.read_namespaced_pod_log(pod, CHECK_NAMESPACE)))
        finally:
            core.delete_namespaced_pod(pod, CHECK_NAMESPACE, grace_period_seconds=0)
    expected = hashlib.sha256(f"{token}\n".encode()).hexdigest()
    (wrote, writer_saw), (read, reader_saw) = outputs
    # The verdict is the plan's: the writer finished and a second pod read the same bytes.
    # What the writer read back itself is shown too (a stale view would be worth knowing).
    ok = wrote == "Succeeded" and read == "Succeeded" and expected in reader_saw
    detail = f"sha256 {expected[:12]}...: " + "; ".join(
        f"{step} {phase}: {log.strip()[:40]}"
        for step, (phase, log) in zip(("writer", "reader"), outputs, strict=True)
    )
    if wrote == "Succeeded" and expected not in writer_saw:
        detail += " (the writer read its own file back differently)"
    return ("pass" if ok else "fail"), detail
