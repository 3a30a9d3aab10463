"""Deployments (rolling update and recreate, with the status kubectl rollout status
reads), ReplicaSets (pods to the replica count, terminating pods not counted) and Jobs."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from halab.twin.api.admission import now
from halab.twin.client import ClientError, path
from halab.twin.controllers.manager import (
    is_terminating,
    owned_by,
    owner_ref,
    pod_active,
    pod_ready,
)

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "".join(
        "bcdfghjklmnpqrstvwxz2456789"[int(digest[i : i + 2], 16) % 27] for i in range(0, 20, 2)
    )


def _strip_hash(template: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(template)
    labels = out.get("metadata", {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return out


def pod_from_template(
    owner: dict[str, Any],
    template: dict[str, Any],
    extra_labels: dict[str, str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    meta = template.get("metadata") or {}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "labels": {**(meta.get("labels") or {}), **(extra_labels or {})},
            "annotations": dict(meta.get("annotations") or {}),
            "namespace": owner["metadata"]["namespace"],
            "ownerReferences": [owner_ref(owner)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
    if name:
        body["metadata"]["name"] = name
    else:
        body["metadata"]["generateName"] = f"{owner['metadata']['name']}-"
    return body


async def _set_status(
    cm: Manager, obj: dict[str, Any], plural: str, api_version: str, status: dict[str, Any]
) -> None:
    if obj.get("status") == status:
        return
    meta = obj["metadata"]
    try:
        await cm.client.update(
            path(api_version, plural, meta["namespace"], meta["name"], "status"),
            {**obj, "status": status},
        )
    except ClientError:
        return


# -- ReplicaSets -----------------------------------------------------------------------------


def owned_pods(cm: Manager, owner: dict[str, Any]) -> list[dict[str, Any]]:
    ns = owner["metadata"]["namespace"]
    return [
        p for p in cm.cache("pods") if p["metadata"].get("namespace") == ns and owned_by(p, owner)
    ]


def _deletion_order(pod: dict[str, Any]) -> tuple[int, int, str]:
    # Unscheduled first, then not ready, then the newest (what the RS controller prefers).
    return (
        0 if not pod["spec"].get("nodeName") else 1,
        0 if not pod_ready(pod) else 1,
        "".join(chr(255 - ord(c)) for c in pod["metadata"].get("creationTimestamp", "")),
    )


async def _create_pods(cm: Manager, rs: dict[str, Any], count: int) -> None:
    """Create pods in parallel, a batch at a time (the ReplicaSet controller's slow start:
    a batch that fails stops the rest, so a bad template does not flood the API)."""
    ns = rs["metadata"]["namespace"]
    batch = 1
    while count > 0:
        size = min(batch, count)
        results = await asyncio.gather(
            *(
                cm.client.create(
                    path("v1", "pods", ns), pod_from_template(rs, rs["spec"]["template"])
                )
                for _ in range(size)
            ),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await cm.event(
                rs,
                "FailedCreate",
                f"Error creating: {failed[0]}",
                "Warning",
                "replicaset-controller",
            )
            return
        count -= size
        batch *= 2


async def reconcile_replicasets(cm: Manager) -> None:
    live = [rs for rs in cm.cache("replicasets") if not is_terminating(rs)]
    await cm.each("replicaset-controller", live, lambda rs: _replicaset(cm, rs))


async def _replicaset(cm: Manager, rs: dict[str, Any]) -> None:
    pods = owned_pods(cm, rs)
    active = [p for p in pods if pod_active(p)]
    want = int(rs["spec"].get("replicas", 1))
    ns = rs["metadata"]["namespace"]
    if len(active) < want:
        await _create_pods(cm, rs, want - len(active))
    elif len(active) > want:
        for pod in sorted(active, key=_deletion_order)[: len(active) - want]:
            try:
                await cm.client.delete(path("v1", "pods", ns, pod["metadata"]["name"]))
            except ClientError:
                continue
    ready = sum(1 for p in active if pod_ready(p))
    status = {
        "replicas": len(active),
        "fullyLabeledReplicas": len(active),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    if not ready:
        del status["readyReplicas"], status["availableReplicas"]
    await _set_status(cm, rs, "replicasets", "apps/v1", status)


# -- Deployments -----------------------------------------------------------------------------


def _resolve(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = total * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


async def reconcile_deployments(cm: Manager) -> None:
    live = [d for d in cm.cache("deployments") if not is_terminating(d)]
    await cm.each("deployment-controller", live, lambda dep: _deployment(cm, dep))


async def _deployment(cm: Manager, dep: dict[str, Any]) -> None:
    ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
    spec = dep["spec"]
    replicas = int(spec.get("replicas", 1))
    template = spec["template"]
    owned = [
        rs
        for rs in cm.cache("replicasets")
        if rs["metadata"].get("namespace") == ns and owned_by(rs, dep)
    ]
    new = next(
        (rs for rs in owned if _strip_hash(rs["spec"]["template"]) == _strip_hash(template)), None
    )
    old = [rs for rs in owned if rs is not new]
    revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned]
    if new is None:
        h = template_hash(template)
        tmpl = copy.deepcopy(template)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        body: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{h}",
                "namespace": ns,
                "labels": {**(tmpl["metadata"].get("labels") or {})},
                "annotations": {REVISION: str(max(revisions, default=0) + 1)},
                "ownerReferences": [owner_ref(dep)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": tmpl},
        }
        try:
            new = await cm.client.create(path("apps/v1", "replicasets", ns), body)
        except ClientError as exc:
            if exc.status != 409:
                if not cm.failing("deployment-controller", dep):  # one event, not one a pass
                    await cm.event(
                        dep,
                        "ReplicaSetCreateError",
                        f'Failed to create new replica set "{body["metadata"]["name"]}": {exc}',
                        "Warning",
                        "deployment-controller",
                    )
                raise
            return
        await cm.event(
            dep,
            "ScalingReplicaSet",
            f'Created new replica set "{body["metadata"]["name"]}"',
            source="deployment-controller",
        )
        return  # the next pass sees it in the cache
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        for rs in old:
            await _scale(cm, dep, rs, 0)
        still = [
            p
            for rs in old
            for p in owned_pods(cm, rs)
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        ]
        if not still:
            await _scale(cm, dep, new, replicas)
    else:
        rolling = strategy.get("rollingUpdate") or {}
        surge = _resolve(rolling.get("maxSurge", "25%"), replicas, True)
        unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        total = sum(int(rs["spec"].get("replicas", 0)) for rs in owned)
        new_count = int(new["spec"].get("replicas", 0))
        if new_count > replicas:
            await _scale(cm, dep, new, replicas)
        elif new_count < replicas:
            room = replicas + surge - total
            if room > 0:
                await _scale(cm, dep, new, min(replicas, new_count + room))
        available = sum(int(rs.get("status", {}).get("availableReplicas", 0)) for rs in owned)
        can_remove = available - (replicas - unavailable)
        for rs in sorted(old, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            count = int(rs["spec"].get("replicas", 0))
            if count == 0:
                continue
            unhealthy = count - int(rs.get("status", {}).get("availableReplicas", 0))
            cut = min(count, unhealthy + max(can_remove, 0))
            if cut > 0:
                can_remove -= max(cut - unhealthy, 0)
                await _scale(cm, dep, rs, count - cut)
    await _cleanup(cm, dep, old)
    await _deployment_status(cm, dep, new, owned)


async def _scale(cm: Manager, dep: dict[str, Any], rs: dict[str, Any], count: int) -> None:
    if int(rs["spec"].get("replicas", 0)) == count:
        return
    meta = rs["metadata"]
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": {"replicas": count}}
    try:
        await cm.client.patch(path("apps/v1", "replicasets", meta["namespace"], meta["name"]), body)
    except ClientError:
        return
    verb = "up" if count > int(rs["spec"].get("replicas", 0)) else "down"
    await cm.event(
        dep,
        "ScalingReplicaSet",
        f"Scaled {verb} replica set {meta['name']} from {rs['spec'].get('replicas', 0)} to {count}",
        source="deployment-controller",
    )


async def _cleanup(cm: Manager, dep: dict[str, Any], old: list[dict[str, Any]]) -> None:
    limit = int(dep["spec"].get("revisionHistoryLimit", 10))
    idle = [
        rs
        for rs in old
        if int(rs["spec"].get("replicas", 0)) == 0 and not rs.get("status", {}).get("replicas")
    ]
    idle.sort(key=lambda r: int(r["metadata"].get("annotations", {}).get(REVISION, "0")))
    for rs in idle[: max(len(idle) - limit, 0)]:
        meta = rs["metadata"]
        try:
            await cm.client.delete(path("apps/v1", "replicasets", meta["namespace"], meta["name"]))
        except ClientError:
            continue


async def _deployment_status(
    cm: Manager, dep: dict[str, Any], new: dict[str, Any], owned: list[dict[str, Any]]
) -> None:
    replicas = int(dep["spec"].get("replicas", 1))

    def st(rs: dict[str, Any], key: str) -> int:
        return int(rs.get("status", {}).get(key, 0))

    total = sum(st(rs, "replicas") for rs in owned)
    ready = sum(st(rs, "readyReplicas") for rs in owned)
    available = sum(st(rs, "availableReplicas") for rs in owned)
    updated = st(new, "replicas")
    rolling = (dep["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    min_available = replicas - _resolve(rolling.get("maxUnavailable", "25%"), replicas, False)
    previous = {c["type"]: c for c in dep.get("status", {}).get("conditions") or []}
    complete = (
        updated == replicas
        and total == replicas
        and available >= replicas
        and st(new, "availableReplicas") == replicas
    )

    def cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        old = previous.get(kind)
        value = "True" if ok else "False"
        same = old is not None and old.get("status") == value and old.get("reason") == reason
        stamp = now()
        return {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastUpdateTime": old["lastUpdateTime"] if same and old else stamp,
            "lastTransitionTime": old["lastTransitionTime"]
            if old and old.get("status") == value
            else stamp,
        }

    rs_name = new["metadata"]["name"]
    status: dict[str, Any] = {
        "observedGeneration": dep["metadata"].get("generation", 1),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(replicas - available, 0) if total else replicas,
        "conditions": [
            cond(
                "Available",
                available >= min_available,
                "MinimumReplicasAvailable"
                if available >= min_available
                else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available >= min_available
                else "Deployment does not have minimum availability.",
            ),
            cond(
                "Progressing",
                True,
                "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" has successfully progressed.'
                if complete
                else f'ReplicaSet "{rs_name}" is progressing.',
            ),
        ],
    }
    for key in (
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "updatedReplicas",
        "replicas",
    ):
        if not status[key]:
            del status[key]
    await _set_status(cm, dep, "deployments", "apps/v1", status)


# -- Jobs ------------------------------------------------------------------------------------


async def reconcile_jobs(cm: Manager) -> None:
    live = [j for j in cm.cache("jobs") if not is_terminating(j)]
    await cm.each("job-controller", live, lambda job: _job(cm, job))


async def _job(cm: Manager, job: dict[str, Any]) -> None:
    spec, ns = job["spec"], job["metadata"]["namespace"]
    pods = owned_pods(cm, job)
    active = [p for p in pods if pod_active(p)]
    succeeded = sum(1 for p in pods if p.get("status", {}).get("phase") == "Succeeded")
    failed = sum(1 for p in pods if p.get("status", {}).get("phase") == "Failed")
    completions = int(spec.get("completions") or 1)
    status = dict(job.get("status") or {})
    conds = {c["type"]: c for c in status.get("conditions") or []}
    finished = any(conds.get(k, {}).get("status") == "True" for k in ("Complete", "Failed"))
    stamp = now()
    status.setdefault("startTime", stamp)
    if not finished:
        if succeeded >= completions:
            status["completionTime"] = stamp
            status["conditions"] = [
                {
                    "type": t,
                    "status": "True",
                    "reason": r,
                    "message": m,
                    "lastProbeTime": stamp,
                    "lastTransitionTime": stamp,
                }
                for t, r, m in (
                    (
                        "SuccessCriteriaMet",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    ),
                    ("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
                )
            ]
            finished = True
        elif failed > int(spec.get("backoffLimit", 6)):
            status["conditions"] = [
                {
                    "type": t,
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastProbeTime": stamp,
                    "lastTransitionTime": stamp,
                }
                for t in ("FailureTarget", "Failed")
            ]
            finished = True
            await cm.event(
                job,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                "Warning",
                "job-controller",
            )
        elif not spec.get("suspend"):
            want = min(int(spec.get("parallelism") or 1), completions - succeeded) - len(active)
            for _ in range(max(want, 0)):
                try:
                    await cm.client.create(
                        path("v1", "pods", ns), pod_from_template(job, spec["template"])
                    )
                except ClientError:
                    break
    if finished:
        for pod in active:
            try:
                await cm.client.delete(path("v1", "pods", ns, pod["metadata"]["name"]))
            except ClientError:
                continue
        active = []
    status.update(
        {
            "active": len(active),
            "succeeded": succeeded,
            "failed": failed,
            "ready": sum(1 for p in active if pod_ready(p)),
        }
    )
    for key in ("active", "succeeded", "failed"):
        if not status[key]:
            del status[key]
    await _set_status(cm, job, "jobs", "batch/v1", status)
