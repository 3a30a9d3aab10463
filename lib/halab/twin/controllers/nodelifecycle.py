"""Node lifecycle: a node whose kubelet stops renewing its Lease goes Unknown after
--node-monitor-grace-period and gets the unreachable NoExecute/NoSchedule taints; pods
on it are marked not ready and evicted once their tolerationSeconds run out (taint-based
eviction). A node that reports Ready again loses the taints."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from halab.twin.api.admission import now
from halab.twin.client import ClientError, path
from halab.twin.controllers.leader import parse_micro
from halab.twin.controllers.manager import pod_active
from halab.twin.controllers.scheduler import tolerates

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
OURS = (UNREACHABLE, NOT_READY)

log = logging.getLogger("halab.twin.controllers.nodelifecycle")


def ready_status(node: dict[str, Any]) -> str:
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status"))
    return "Unknown"


def _last_heartbeat(cm: Manager, node: dict[str, Any]) -> float:
    name = node["metadata"]["name"]
    lease = cm.get("leases", "kube-node-lease", name)
    beats = [parse_micro((lease or {}).get("spec", {}).get("renewTime"))]
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            beats.append(parse_micro(cond.get("lastHeartbeatTime")))
    # A newly elected controller manager gives every node a full grace period first.
    first = cm.first_seen.setdefault(name, time.time())
    return max([*beats, first])


# kube-controller-manager's --unhealthy-zone-threshold and --large-cluster-size-threshold.
UNHEALTHY_ZONE_THRESHOLD = 0.55
LARGE_CLUSTER_SIZE = 50
NORMAL, PARTIAL, FULL = "Normal", "PartialDisruption", "FullDisruption"


def zone_key(node: dict[str, Any]) -> str:
    labels = node.get("metadata", {}).get("labels") or {}
    region = labels.get("topology.kubernetes.io/region", "")
    zone = labels.get("topology.kubernetes.io/zone", "")
    return f"{region}:\x00:{zone}" if region or zone else ""


def zone_state(ready: int, not_ready: int) -> str:
    """As the node lifecycle controller judges a zone: no Ready node is a full
    disruption; more than two not Ready and at least the threshold of them, partial."""
    if ready == 0 and not_ready > 0:
        return FULL
    if not_ready > 2 and not_ready / (ready + not_ready) >= UNHEALTHY_ZONE_THRESHOLD:
        return PARTIAL
    return NORMAL


def may_taint_no_execute(state: str, size: int, everywhere_full: bool) -> bool:
    """Whether nodes of a zone in `state` get their NoExecute taint (and so have pods
    evicted). A partly disrupted small zone gets none: the controller's eviction rate
    drops to zero there. All zones down is taken for the control plane's own trouble
    ("master disruption"): nothing is tainted and the taints already set come off."""
    if everywhere_full:
        return False
    return state != PARTIAL or size > LARGE_CLUSTER_SIZE


async def reconcile(cm: Manager) -> None:
    grace = cm.settings.node_monitor_grace
    by_node: dict[str, list[dict[str, Any]]] = {}
    for pod in cm.cache("pods"):
        by_node.setdefault(pod["spec"].get("nodeName") or "", []).append(pod)
    seen: list[tuple[dict[str, Any], str]] = []
    for node in cm.cache("nodes"):
        name = node["metadata"]["name"]
        status = ready_status(node)
        silent = time.time() - _last_heartbeat(cm, node)
        if status != "Unknown" and silent > grace:
            log.info("node %s: no heartbeat for %.1f s, marking it Unknown", name, silent)
            node = await _mark_unknown(cm, node) or node
            status = "Unknown"
        seen.append((node, status))
    zones: dict[str, list[str]] = {}
    for node, status in seen:
        zones.setdefault(zone_key(node), []).append(status)
    states = {
        key: zone_state(s.count("True"), len(s) - s.count("True")) for key, s in zones.items()
    }
    everywhere_full = bool(states) and all(state == FULL for state in states.values())
    _say_zone_states(cm, states, everywhere_full)
    for node, status in seen:
        key = zone_key(node)
        allowed = may_taint_no_execute(states[key], len(zones[key]), everywhere_full)
        await _sync_taints(cm, node, status, allowed, clear_no_execute=everywhere_full)
        if status != "True":
            await _mark_pods_not_ready(cm, by_node.get(node["metadata"]["name"], []))
    if not everywhere_full:
        await _evict(cm)


def _say_zone_states(cm: Manager, states: dict[str, str], everywhere_full: bool) -> None:
    """Log each zone's change of state, and entering or leaving master disruption."""
    known: dict[str, str] = cm.memory("node-lifecycle-zones", dict)
    for key, state in states.items():
        if known.get(key, NORMAL) != state:
            log.info("Controller detected that zone %r is now in state %s.", key, state)
        known[key] = state
    master: list[bool] = cm.memory("node-lifecycle-master-disruption", lambda: [False])
    if everywhere_full and not master[0]:
        log.info(
            "Controller detected that all Nodes are not-Ready. Entering master disruption mode."
        )
    elif master[0] and not everywhere_full:
        log.info("Controller detected that some Nodes are Ready. Exiting master disruption mode.")
    master[0] = everywhere_full


async def _mark_unknown(cm: Manager, node: dict[str, Any]) -> dict[str, Any] | None:
    stamp = now()
    conds = []
    for cond in node.get("status", {}).get("conditions") or []:
        conds.append(
            {
                **cond,
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastTransitionTime": stamp,
            }
        )
    body = {**node, "status": {**node.get("status", {}), "conditions": conds}}
    try:
        fresh = await cm.client.update(
            path("v1", "nodes", None, node["metadata"]["name"], "status"), body
        )
    except ClientError:
        return None
    await cm.event(
        fresh,
        "NodeNotReady",
        f"Node {node['metadata']['name']} status is now: NodeNotReady",
        source="node-controller",
    )
    return fresh


async def _sync_taints(
    cm: Manager,
    node: dict[str, Any],
    status: str,
    no_execute: bool = True,
    clear_no_execute: bool = False,
) -> None:
    """The node's not-ready/unreachable taints as its Ready status says: NoSchedule
    always, NoExecute only where `no_execute` (the zone's disruption allows it), and
    every NoExecute one of ours taken off on `clear_no_execute`."""
    taints = node.get("spec", {}).get("taints") or []
    want_key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(status)
    keep = [
        t
        for t in taints
        if t.get("key") not in OURS
        or (t.get("key") == want_key and not (clear_no_execute and t.get("effect") == "NoExecute"))
    ]
    have = {(t["key"], t["effect"]) for t in keep}
    added = False
    if want_key:
        for effect in ("NoSchedule", "NoExecute") if no_execute else ("NoSchedule",):
            if (want_key, effect) not in have:
                taint = {"key": want_key, "effect": effect}
                if effect == "NoExecute":
                    taint["timeAdded"] = now()
                keep.append(taint)
                added = True
    if not added and len(keep) == len(taints):
        return
    body = {
        "spec": {"taints": keep or None},
        "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
    }
    try:
        await cm.client.patch(path("v1", "nodes", None, node["metadata"]["name"]), body)
    except ClientError:
        return
    log.info(
        "node %s (Ready %s): taints now %s",
        node["metadata"]["name"],
        status,
        sorted(t["key"] + ":" + t["effect"] for t in keep) or "none",
    )


async def _mark_pods_not_ready(cm: Manager, pods: list[dict[str, Any]]) -> None:
    for pod in pods:
        conds = pod.get("status", {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            continue
        new = [
            {**c, "status": "False", "lastTransitionTime": now()} if c.get("type") == "Ready" else c
            for c in conds
        ]
        meta = pod["metadata"]
        body = {**pod, "status": {**pod.get("status", {}), "conditions": new}}
        try:
            await cm.client.update(
                path("v1", "pods", meta["namespace"], meta["name"], "status"), body
            )
        except ClientError:
            continue


def eviction_due(pod: dict[str, Any], taints: list[dict[str, Any]], at: float) -> bool:
    """True when a NoExecute taint is untolerated, or its toleration has run out."""
    tolerations = pod["spec"].get("tolerations") or []
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        matching = [t for t in tolerations if tolerates([t], taint)]
        if not matching:
            return True
        limits = [
            t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None
        ]
        # Tolerated for good unless every matching toleration has a time limit.
        expired = at - parse_micro(taint.get("timeAdded")) >= max(min(limits, default=0), 0)
        if limits and len(limits) == len(matching) and expired:
            return True
    return False


async def _evict(cm: Manager) -> None:
    tainted = {
        n["metadata"]["name"]: [
            t for t in n.get("spec", {}).get("taints") or [] if t.get("effect") == "NoExecute"
        ]
        for n in cm.cache("nodes")
    }
    at = time.time()
    for pod in cm.cache("pods"):
        taints = tainted.get(pod["spec"].get("nodeName") or "")
        if not taints or not pod_active(pod) or not eviction_due(pod, taints, at):
            continue
        meta = pod["metadata"]
        try:
            await cm.client.delete(path("v1", "pods", meta["namespace"], meta["name"]))
        except ClientError:
            continue
        log.info(
            "evicted pod %s/%s from node %s",
            meta["namespace"],
            meta["name"],
            pod["spec"].get("nodeName"),
        )
        await cm.event(
            pod,
            "TaintManagerEviction",
            f"Marking for deletion Pod {meta['namespace']}/{meta['name']}",
            source="taint-eviction-controller",
        )
