"""StatefulSets (stable names, volumeClaimTemplates, ordered start, and at most one pod
per identity: a pod stuck Terminating on a lost node is not replaced until someone
force-deletes it) and DaemonSets (one pod per eligible node)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from halab.twin.client import ClientError, path
from halab.twin.controllers.manager import (
    is_terminating,
    owned_by,
    owner_ref,
    pod_active,
    pod_ready,
)
from halab.twin.controllers.scheduler import _node_affinity_ok, tolerates
from halab.twin.controllers.workloads import (
    _set_status,
    owned_pods,
    pod_from_template,
    template_hash,
)

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager

REVISION_LABEL = "controller-revision-hash"


def _revision(owner: dict[str, Any]) -> str:
    return f"{owner['metadata']['name']}-{template_hash(owner['spec']['template'])}"


async def reconcile_statefulsets(cm: Manager) -> None:
    live = [s for s in cm.cache("statefulsets") if not is_terminating(s)]
    await cm.each("statefulset-controller", live, lambda sts: _statefulset(cm, sts))


async def _statefulset(cm: Manager, sts: dict[str, Any]) -> None:
    ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
    spec = sts["spec"]
    replicas = int(spec.get("replicas", 1))
    ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    revision = _revision(sts)
    pods = {p["metadata"]["name"]: p for p in owned_pods(cm, sts)}
    for ordinal in range(replicas):
        pod_name = f"{name}-{ordinal}"
        pod = pods.get(pod_name)
        if pod is not None:
            if pod.get("status", {}).get("phase") == "Failed" and not is_terminating(pod):
                await _delete(cm, ns, pod_name)
                return
            if ordered and not (pod_ready(pod) and pod_active(pod)):
                break  # the next ordinal waits for this one
            continue
        if cm.get("pods", ns, pod_name) is not None:
            break  # a pod of that name exists (Terminating, or not ours): at most one
        await _claims(cm, sts, ordinal)
        body = pod_from_template(
            sts,
            spec["template"],
            {
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(ordinal),
                REVISION_LABEL: revision,
            },
            name=pod_name,
        )
        body["spec"]["hostname"] = pod_name
        if spec.get("serviceName"):
            body["spec"]["subdomain"] = spec["serviceName"]
        for tmpl in spec.get("volumeClaimTemplates") or []:
            claim = f"{tmpl['metadata']['name']}-{name}-{ordinal}"
            vols = body["spec"].setdefault("volumes", [])
            vols[:] = [v for v in vols if v.get("name") != tmpl["metadata"]["name"]]
            vols.append(
                {"name": tmpl["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}}
            )
        try:
            await cm.client.create(path("v1", "pods", ns), body)
        except ClientError as exc:
            if exc.status != 409:
                await cm.event(
                    sts,
                    "FailedCreate",
                    f"create Pod {pod_name} in StatefulSet {name} failed: {exc}",
                    "Warning",
                    "statefulset-controller",
                )
            break
        await cm.event(
            sts,
            "SuccessfulCreate",
            f"create Pod {pod_name} in StatefulSet {name} successful",
            source="statefulset-controller",
        )
        if ordered:
            break
    # Scale down from the highest ordinal, and roll pods of an old revision one at a time.
    extra = sorted(
        (p for n, p in pods.items() if _ordinal(n, name) >= replicas and not is_terminating(p)),
        key=lambda p: -_ordinal(p["metadata"]["name"], name),
    )
    for pod in extra[:1] if ordered else extra:
        await _delete(cm, ns, pod["metadata"]["name"])
    live = [p for p in pods.values() if pod_active(p)]
    if not extra and all(pod_ready(p) for p in live) and len(live) == replicas:
        stale = sorted(
            (p for p in live if p["metadata"].get("labels", {}).get(REVISION_LABEL) != revision),
            key=lambda p: -_ordinal(p["metadata"]["name"], name),
        )
        if (
            stale
            and (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        ):
            await _delete(cm, ns, stale[0]["metadata"]["name"])
    ready = sum(1 for p in live if pod_ready(p))
    updated = sum(
        1 for p in live if p["metadata"].get("labels", {}).get(REVISION_LABEL) == revision
    )
    status = {
        "observedGeneration": sts["metadata"].get("generation", 1),
        "replicas": len(live),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": updated,
        "updatedReplicas": updated,
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    }
    await _set_status(cm, sts, "statefulsets", "apps/v1", status)


def _ordinal(pod_name: str, sts_name: str) -> int:
    tail = pod_name[len(sts_name) + 1 :]
    return int(tail) if tail.isdigit() else -1


async def _claims(cm: Manager, sts: dict[str, Any], ordinal: int) -> None:
    ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
    for tmpl in sts["spec"].get("volumeClaimTemplates") or []:
        claim = f"{tmpl['metadata']['name']}-{name}-{ordinal}"
        if cm.get("pvcs", ns, claim) is not None:
            continue
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim,
                "namespace": ns,
                "labels": dict(sts["spec"]["selector"].get("matchLabels") or {}),
            },
            "spec": copy.deepcopy(tmpl.get("spec") or {}),
        }
        try:
            await cm.client.create(path("v1", "persistentvolumeclaims", ns), body)
        except ClientError as exc:
            if exc.status != 409:
                raise


async def _delete(cm: Manager, ns: str, name: str) -> None:
    try:
        await cm.client.delete(path("v1", "pods", ns, name))
    except ClientError:
        return


# -- DaemonSets ------------------------------------------------------------------------------

DS_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def eligible(ds: dict[str, Any], node: dict[str, Any]) -> bool:
    pod_spec = ds["spec"]["template"].get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    if not _node_affinity_ok({"spec": pod_spec}, node):
        return False
    tolerations = (pod_spec.get("tolerations") or []) + DS_TOLERATIONS
    return all(
        tolerates(tolerations, t)
        for t in node.get("spec", {}).get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
        and t.get("key") not in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    )


async def reconcile_daemonsets(cm: Manager) -> None:
    live = [d for d in cm.cache("daemonsets") if not is_terminating(d)]
    await cm.each("daemonset-controller", live, lambda ds: _daemonset(cm, ds))


async def _daemonset(cm: Manager, ds: dict[str, Any]) -> None:
    ns = ds["metadata"]["namespace"]
    revision = _revision(ds)
    nodes = {n["metadata"]["name"]: n for n in cm.cache("nodes")}
    wanted = {n for n, node in nodes.items() if eligible(ds, node)}
    pods = [p for p in owned_pods(cm, ds) if pod_active(p)]
    by_node: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        target = _target_node(pod)
        by_node.setdefault(target, []).append(pod)
    for node_name in sorted(wanted - set(by_node)):
        body = pod_from_template(ds, ds["spec"]["template"], {REVISION_LABEL: revision})
        spec = body["spec"]
        spec["tolerations"] = (spec.get("tolerations") or []) + DS_TOLERATIONS
        spec["affinity"] = {
            **(spec.get("affinity") or {}),
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [node_name]}
                            ]
                        }
                    ]
                }
            },
        }
        try:
            await cm.client.create(path("v1", "pods", ns), body)
        except ClientError:
            break
    for node_name, on_node in by_node.items():
        doomed = on_node if node_name not in wanted else on_node[1:]
        if (
            node_name in wanted
            and on_node
            and on_node[0]["metadata"].get("labels", {}).get(REVISION_LABEL) != revision
        ):
            doomed = on_node  # the template changed: replace it
        for pod in doomed:
            await _delete(cm, ns, pod["metadata"]["name"])
    ready = sum(1 for p in pods if pod_ready(p))
    status = {
        "observedGeneration": ds["metadata"].get("generation", 1),
        "desiredNumberScheduled": len(wanted),
        "currentNumberScheduled": len(set(by_node) & wanted),
        "numberMisscheduled": len(set(by_node) - wanted),
        "numberReady": ready,
        "numberAvailable": ready,
        "updatedNumberScheduled": sum(
            1 for p in pods if p["metadata"].get("labels", {}).get(REVISION_LABEL) == revision
        ),
    }
    if len(wanted) > ready:
        status["numberUnavailable"] = len(wanted) - ready
    await _set_status(cm, ds, "daemonsets", "apps/v1", status)


def _target_node(pod: dict[str, Any]) -> str:
    if pod["spec"].get("nodeName"):
        return str(pod["spec"]["nodeName"])
    terms = (
        ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return ""


__all__ = ["eligible", "owned_by", "owner_ref", "reconcile_daemonsets", "reconcile_statefulsets"]
