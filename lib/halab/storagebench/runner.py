"""Run the storage benchmark on a cluster: one fio Job after another on one node, each
with the volume under test at /bench, the node's local disk (emptyDir) first as the
baseline. A SeaweedFS claim is made for the run and removed with its volume after; the
NFS claim is the rendered read-write one (the transcode export), the Job working in a
directory of its own there and removing it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from halab.context import Context
from halab.errors import StepError
from halab.inventory import Node
from halab.render import storage
from halab.storagebench.fio import IMAGE, FioSpec, parse
from halab.storagebench.results import StorageResult, Subject

SUBJECTS = ("local", "seaweedfs", "nfs")


class StorageBenchError(StepError):
    pass


def bench_node(ctx: Context, phase: int) -> Node:
    """The first node present by `phase` that takes ordinary pods (no NoSchedule taint),
    a worker before a server."""
    present = ctx.inventory.nodes_present(phase)
    for node in sorted(present, key=lambda n: n.is_server):
        if not any(t.effect == "NoSchedule" for t in node.taints):
            return node
    raise StorageBenchError(f"no node present by phase {phase} takes pods without tolerations")


def section(
    ctx: Context, api: Any, subjects: tuple[str, ...], spec: FioSpec, phase: int, name: str
) -> StorageResult | None:
    """A phase notebook's benchmark: run, and save as <name>.storage.json in the run
    directory; None without a target."""
    if api is None:
        return None
    result = run(ctx, api, subjects, spec, phase=phase)
    result.save(ctx.run_dir / f"{name}.storage.json")
    return result


def seaweed_class(ctx: Context) -> str:
    """The class the inventory's apps claim SeaweedFS volumes with (RWO first)."""
    vols = [v for a in ctx.inventory.apps for v in a.volumes if v.kind == "seaweedfs"]
    rwo = [v.storage_class for v in vols if v.access == "RWO"]
    return (rwo or [v.storage_class for v in vols] or ["seaweedfs-ha"])[0]


def run(
    ctx: Context,
    api: Any,
    subjects: tuple[str, ...] = SUBJECTS,
    spec: FioSpec | None = None,
    phase: int = 9,
    node: str | None = None,
    timeout: float = 600,
    say: Callable[[str], None] | None = None,
) -> StorageResult:
    from kubernetes import client

    from halab.phases.cluster_checks import CHECK_NAMESPACE, ensure_namespace

    spec = spec or FioSpec()
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown:
        raise StorageBenchError(f"no subject {', '.join(unknown)}: choose from {SUBJECTS}")
    where = node or bench_node(ctx, phase).name
    core = client.CoreV1Api(api)
    ensure_namespace(api)
    result = StorageResult(
        ctx.inventory.cluster.name, where, {"size": spec.size, "runtime_s": spec.runtime_s},
        datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
    order = ["local", *(s for s in subjects if s != "local")] if "local" in subjects else []
    for name in order or list(subjects):
        if say:
            say(f"fio on {name} ({where}) ...")
        if name == "local":
            volume = {"name": "bench", "emptyDir": {}}
            figures = _job(api, CHECK_NAMESPACE, where, volume, "/bench/fio", spec, timeout)
            result.subjects.append(Subject("local", "emptyDir", f"emptyDir on {where}", figures))
        elif name == "seaweedfs":
            result.subjects.append(_seaweedfs(ctx, api, core, where, spec, timeout))
        else:
            result.subjects.append(_nfs(ctx, api, where, spec, timeout))
        if say:
            last = result.subjects[-1].figures
            say(f"  {name}: read {last.seq_read_mbps:.0f} MB/s, write {last.seq_write_mbps:.0f}"
                f" MB/s, {last.rand_read_iops:.0f}/{last.rand_write_iops:.0f} IOPS")  # fmt: skip
    return result


def _seaweedfs(
    ctx: Context, api: Any, core: Any, node: str, spec: FioSpec, timeout: float
) -> Subject:
    from halab.phases.cluster_checks import CHECK_NAMESPACE, wait_bound
    from halab.phases.seaweed_claims import remove_claim

    klass = seaweed_class(ctx)
    claim = f"storage-bench-{uuid.uuid4().hex[:5]}"
    core.create_namespaced_persistent_volume_claim(
        CHECK_NAMESPACE,
        {"metadata": {"name": claim}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": klass,
            "resources": {"requests": {"storage": "4Gi"}}}},
    )  # fmt: skip
    try:
        wait_bound(api, CHECK_NAMESPACE, claim, 120)
        volume = {"name": "bench", "persistentVolumeClaim": {"claimName": claim}}
        figures = _job(api, CHECK_NAMESPACE, node, volume, "/bench/fio", spec, timeout)
    finally:
        remove_claim(ctx, api, core, claim)
    return Subject("seaweedfs", klass, f"a {klass} claim (CSI, weed mount)", figures)


def _nfs(ctx: Context, api: Any, node: str, spec: FioSpec, timeout: float) -> Subject:
    nfs = ctx.inventory.storage.nfs
    rw = [e for e in nfs.exports if not e.read_only] if nfs else []
    if not rw:
        raise StorageBenchError("the inventory has no read-write NFS export to measure")
    export = rw[0]
    ns = next(n for x, n, _ in storage.nfs_claims(ctx.inventory) if x == export.name)
    volume = {"name": "bench", "persistentVolumeClaim": {"claimName": export.name}}
    work = f"/bench/.halab-fio-{uuid.uuid4().hex[:6]}"
    figures = _job(api, ns, node, volume, work, spec, timeout)
    return Subject("nfs", "nfs", f"{ns}/{export.name} ({export.path})", figures)


def _job(
    api: Any,
    namespace: str,
    node: str,
    volume: dict[str, Any],
    directory: str,
    spec: FioSpec,
    timeout: float,
) -> Any:
    from kubernetes import client

    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    name = f"fio-{uuid.uuid4().hex[:8]}"
    batch.create_namespaced_job(
        namespace,
        {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "halab"}},
         "spec": {"backoffLimit": 0, "template": {"spec": {
             "restartPolicy": "Never",
             "nodeSelector": {"kubernetes.io/hostname": node},
             "containers": [{"name": "fio", "image": IMAGE,
                             "command": ["sh", "-c", spec.script(directory)],
                             "volumeMounts": [{"name": "bench", "mountPath": "/bench"}]}],
             "volumes": [volume]}}}},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
            done = [p for p in pods if p.status.phase in ("Succeeded", "Failed")]
            if done:
                pod = done[0]
                break
            if time.monotonic() > deadline:
                raise StorageBenchError(
                    f"fio Job {namespace}/{name} did not finish in {timeout:.0f} s"
                )
            time.sleep(0.5)
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        if pod.status.phase != "Succeeded":
            raise StorageBenchError(f"fio Job {namespace}/{name} failed: {log.strip()[-400:]}")
        return parse(log)
    finally:
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
