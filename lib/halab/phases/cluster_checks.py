"""Checks shared by the phases that talk to a live cluster: which of the inventory's
nodes a phase may expect, what the cluster has of them, and a test pod on a node."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from halab.context import Context
from halab.evidence import Check, Status
from halab.inventory import Node
from halab.inventory.model import App
from halab.kube import ClusterError, wait_for

CHECK_NAMESPACE = "halab-checks"
Verdict = tuple[Status, str]


def no_target(cid: str, title: str) -> Check:
    return Check(cid, title, "skip", "no target given (pass target=... to check the live cluster)")


def nothing_joins(cid: str, phase: int) -> Check:
    return Check(
        cid,
        f"Nodes that join in phase {phase}",
        "skip",
        f"the inventory's rollout brings no node in phase {phase}",
    )


@dataclass
class NodeScope:
    """One node as a phase sees it: what the inventory says, and what the cluster has."""

    ctx: Context
    name: str
    phase: int
    cluster: LiveNodes

    @property
    def live(self) -> Any:
        """The V1Node, or None when the cluster has no such node (listed on first use, so
        an API that does not answer fails the check that asked)."""
        return self.cluster.items.get(self.name)

    def absent(self) -> Verdict | None:
        """Why this node cannot be checked, at once; None when it is there to check."""
        inv = self.ctx.inventory
        if self.name not in {n.name for n in inv.nodes}:
            return "fail", f"{self.name} is not in the inventory ({self.ctx.inventory_path})"
        joins = inv.joins_in(self.name)
        if joins > self.phase:
            return "skip", (
                f"{self.name} joins in phase {joins} (the inventory's rollout), "
                f"after phase {self.phase}"
            )
        if self.live is None:
            return "fail", f"node {self.name} is not registered: has it joined the cluster?"
        return None

    def ready(self) -> Verdict:
        absent = self.absent()
        if absent is not None:
            return absent
        condition = next((c for c in self.live.status.conditions or [] if c.type == "Ready"), None)
        if condition is None:
            return "fail", "no Ready condition reported yet"
        ok = condition.status == "True"
        reason = f" ({condition.reason})" if condition.reason else ""
        return ("pass" if ok else "fail"), f"Ready={condition.status}{reason}"

    def not_ready(self) -> Verdict | None:
        """None when the node is Ready; else why nothing can run there."""
        status, detail = self.ready()
        if status == "pass":
            return None
        return status, detail if status == "skip" else f"no pod can run there: {detail}"


class LiveNodes:
    """The cluster's nodes, listed once for a group of checks."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._items: dict[str, Any] | None = None

    @property
    def items(self) -> dict[str, Any]:
        if self._items is None:
            from kubernetes import client

            listed = client.CoreV1Api(self.api).list_node().items
            self._items = {n.metadata.name: n for n in listed}
        return self._items

    def scope(self, ctx: Context, name: str, phase: int) -> NodeScope:
        return NodeScope(ctx, name, phase, self)


def ensure_namespace(api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": CHECK_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def test_pod_on(api: Any, target: Node, timeout: float = 180) -> Check:
    """A pod that must be scheduled (by the scheduler, not by nodeName) onto the node,
    run to completion and say so in its log; it is deleted afterwards. It tolerates the
    taints the inventory gives the node, so that a tainted node is tested too."""
    from kubernetes import client

    node = target.name
    tolerations = [
        {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
        if t.value
        else {"key": t.key, "operator": "Exists", "effect": t.effect}
        for t in target.taints
    ]
    core = client.CoreV1Api(api)
    ensure_namespace(api)
    name = f"schedule-{node}-{uuid.uuid4().hex[:5]}"
    marker = f"halab test pod on {node}"
    start = time.monotonic()
    core.create_namespaced_pod(
        CHECK_NAMESPACE,
        {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "halab"}},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": node},
                "tolerations": tolerations,
                "containers": [
                    {
                        "name": "check",
                        "image": "busybox:1.36",
                        "command": ["sh", "-c", f"echo {marker}"],
                    }
                ],
            },
        },
    )
    cid, title = f"test-pod-{node}", f"A test pod runs on {node}"

    def finished() -> Any:
        pod = core.read_namespaced_pod(name, CHECK_NAMESPACE)
        if pod.status.phase in ("Succeeded", "Failed"):
            return pod
        unschedulable = _unschedulable(pod)
        # The scheduler retries; a pod it still cannot place after a while never will be.
        if unschedulable and time.monotonic() - start > UNSCHEDULABLE_GRACE_S:
            return unschedulable
        return None

    try:
        pod = wait_for(finished, timeout, f"test pod on {node} finished", every=0.5)
        if isinstance(pod, str):
            return Check(cid, title, "fail", f"the scheduler cannot place it: {pod}")
        log = core.read_namespaced_pod_log(name, CHECK_NAMESPACE)
    except ClusterError as exc:
        return Check(cid, title, "fail", str(exc))
    finally:
        core.delete_namespaced_pod(name, CHECK_NAMESPACE, grace_period_seconds=0)
    seconds = time.monotonic() - start
    ok = pod.status.phase == "Succeeded" and pod.spec.node_name == node and marker in log
    where = f"scheduled on {pod.spec.node_name}, {pod.status.phase} in {seconds:.1f} s"
    detail = f"{where}, log: {log.strip()!r}"
    return Check(cid, title, "pass" if ok else "fail", detail)


UNSCHEDULABLE_GRACE_S = 10.0


def _unschedulable(pod: Any) -> str:
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
            return str(condition.message or "Unschedulable")
    return ""


def wait_bound(api: Any, namespace: str, claim: str, timeout: float) -> Any:
    """The claim once it is Bound (a ClusterError naming it when it does not bind)."""
    from kubernetes import client

    core = client.CoreV1Api(api)

    def bound() -> Any:
        found = core.read_namespaced_persistent_volume_claim(claim, namespace)
        return found if found.status.phase == "Bound" else None

    return wait_for(bound, timeout, f"claim {namespace}/{claim} Bound")


@dataclass
class PodRun:
    """How a one-off check pod ended: its phase, node and log."""

    phase: str
    node: str
    log: str


def run_pod(
    api: Any,
    namespace: str,
    name: str,
    script: str,
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    timeout: float = 120,
    node: str | None = None,
    tolerations: list[dict[str, Any]] | None = None,
) -> PodRun:
    """Run `script` (sh) in a busybox pod with these volumes, to completion, and delete
    it; a pod that cannot start (a volume that will not mount) ends in a ClusterError
    whose text quotes the pod's last Warning event."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "check",
                "image": "busybox:1.36",
                "command": ["sh", "-c", script],
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if node:
        spec["nodeName"] = node
    if tolerations:
        spec["tolerations"] = tolerations
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "halab"}},
            "spec": spec,
        },
    )

    def finished() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    try:
        try:
            pod = wait_for(finished, timeout, f"pod {namespace}/{name} finished", every=0.3)
        except ClusterError as exc:
            raise ClusterError(f"{exc}{_last_warning(core, namespace, name)}") from None
        log = core.read_namespaced_pod_log(name, namespace)
    finally:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    return PodRun(pod.status.phase, pod.spec.node_name or "", log)


def _last_warning(core: Any, namespace: str, pod: str) -> str:
    try:
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod}"
        ).items
    except Exception:  # the events are a courtesy; the timeout is the error
        return ""
    warnings = [e for e in events if e.type == "Warning"]
    return f"; its last warning: {warnings[-1].reason}: {warnings[-1].message}" if warnings else ""


def app_pods(api: Any, app: App) -> list[Any]:
    """The app's pods by the rendered name label, those being deleted left out."""
    from kubernetes import client

    selector = f"app.kubernetes.io/name={app.name}"
    found = client.CoreV1Api(api).list_namespaced_pod(app.namespace, label_selector=selector)
    return [p for p in found.items if p.metadata.deletion_timestamp is None]


def pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def ready_pods(api: Any, app: App) -> list[Any]:
    return [p for p in app_pods(api, app) if pod_ready(p)]
