"""The scheduler: filter nodes as kube-scheduler's default plugins do, score what is
left, bind through pods/binding, and say why when nothing fits ("0/6 nodes are
available: ...", as FailedScheduling events read)."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from halab.inventory.quantity import parse_quantity
from halab.twin.api.selectors import matches_selector
from halab.twin.client import ClientError, path
from halab.twin.controllers.manager import is_terminating, pod_active

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager


def _q(value: Any) -> Decimal:
    try:
        return parse_quantity(value)
    except ValueError:
        return Decimal(0)


def requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for c in pod["spec"].get("containers") or []:
        res = c.get("resources") or {}
        # A resource with only a limit is requested at its limit (API defaulting).
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for key, value in merged.items():
            total[key] = total.get(key, Decimal(0)) + _q(value)
    return total


def _add(into: dict[str, Decimal], more: dict[str, Decimal]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, Decimal(0)) + value


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def _expr_matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    have = labels.get(key) if key else None
    if op == "In":
        return have in values
    if op == "NotIn":
        return have not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and have is not None and values:
        try:
            return int(have) > int(values[0]) if op == "Gt" else int(have) < int(values[0])
        except ValueError:
            return False
    return False


def _term_matches(term: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    return all(_expr_matches(e, labels) for e in term.get("matchExpressions") or []) and all(
        _expr_matches(e, fields) for e in term.get("matchFields") or []
    )


def _affinity(pod: dict[str, Any]) -> dict[str, Any]:
    aff: dict[str, Any] = pod["spec"].get("affinity") or {}
    return aff


def _node_affinity_ok(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    required = (_affinity(pod).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    return any(_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def _anti_affinity_ok(
    pod: dict[str, Any], node: dict[str, Any], placed: list[tuple[dict[str, Any], dict[str, Any]]]
) -> bool:
    terms = (_affinity(pod).get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    labels = node["metadata"].get("labels") or {}
    for term in terms:
        key = term.get("topologyKey", "kubernetes.io/hostname")
        if key not in labels:
            continue
        for other, other_node in placed:
            if other["metadata"].get("namespace") != pod["metadata"].get("namespace"):
                continue
            if (other_node["metadata"].get("labels") or {}).get(key) != labels[key]:
                continue
            if matches_selector(term.get("labelSelector"), other["metadata"].get("labels") or {}):
                return False
    return True


def _preferred_score(pod: dict[str, Any], node: dict[str, Any]) -> int:
    prefs = (_affinity(pod).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return sum(
        int(p.get("weight", 0)) for p in prefs if _term_matches(p.get("preference") or {}, node)
    )


def reasons_for(
    pod: dict[str, Any],
    node: dict[str, Any],
    used: dict[str, dict[str, Decimal]],
    counts: Counter[str],
    placed: list[tuple[dict[str, Any], dict[str, Any]]],
    wanted: dict[str, Decimal] | None = None,
) -> str | None:
    """Why pod cannot go to node (kube-scheduler's wording), or None when it fits.
    `wanted` is requests(pod), when the caller has it already."""
    spec, name = pod["spec"], node["metadata"]["name"]
    tolerations = spec.get("tolerations") or []
    if node.get("spec", {}).get("unschedulable") and not tolerates(
        tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        return "node(s) were unschedulable"
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            value = f"={taint['value']}" if taint.get("value") else ""
            return f"node(s) had untolerated taint {{{taint['key']}{value}}}"
    labels = node["metadata"].get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()) or not _node_affinity_ok(pod, node):
        return "node(s) didn't match Pod's node affinity/selector"
    allocatable = node.get("status", {}).get("allocatable") or {}
    if counts[name] + 1 > int(_q(allocatable.get("pods", "110"))):
        return "Too many pods"
    for resource, amount in (wanted if wanted is not None else requests(pod)).items():
        if amount <= 0:
            continue
        free = _q(allocatable.get(resource, "0")) - used[name].get(resource, Decimal(0))
        if amount > free:
            return f"Insufficient {resource}"
    if not _anti_affinity_ok(pod, node, placed):
        return "node(s) didn't match pod anti-affinity rules"
    return None


async def reconcile(cm: Manager) -> None:
    nodes = {n["metadata"]["name"]: n for n in cm.cache("nodes")}
    pods = cm.cache("pods")
    used: dict[str, dict[str, Decimal]] = {n: {} for n in nodes}
    counts: Counter[str] = Counter()
    placed: list[tuple[dict[str, Any], dict[str, Any]]] = []
    # Pods of each owner per node, for spreading replicas (kept up to date as we place).
    by_owner: dict[str, Counter[str]] = {}
    for pod in pods:
        node_name = pod["spec"].get("nodeName")
        if node_name in nodes and pod_active(pod):
            _add(used[node_name], requests(pod))
            counts[node_name] += 1
            placed.append((pod, nodes[node_name]))
            owner = _owner_uid(pod)
            if owner:
                by_owner.setdefault(owner, Counter())[node_name] += 1
    pending = sorted(
        (
            p
            for p in pods
            if not p["spec"].get("nodeName")
            and not is_terminating(p)
            and p["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"
            and p.get("status", {}).get("phase", "Pending") == "Pending"
        ),
        key=lambda p: p["metadata"].get("creationTimestamp", ""),
    )
    decisions: list[tuple[dict[str, Any], str]] = []
    for pod in pending:
        fits: list[str] = []
        why: Counter[str] = Counter()
        wanted = requests(pod)
        for name, node in nodes.items():
            reason = reasons_for(pod, node, used, counts, placed, wanted)
            if reason is None:
                fits.append(name)
            else:
                why[reason] += 1
        if not fits:
            await _unschedulable(cm, pod, len(nodes), why)
            continue
        owner = _owner_uid(pod)
        spread = by_owner.setdefault(owner or "", Counter())

        def score(
            n: str, pod: dict[str, Any] = pod, spread: Counter[str] = spread
        ) -> tuple[int, int, int, str]:
            cpu_free = _q(nodes[n]["status"].get("allocatable", {}).get("cpu", "0")) - used[n].get(
                "cpu", Decimal(0)
            )
            return (_preferred_score(pod, nodes[n]), -spread[n], int(cpu_free * 1000), n)

        best = max(fits, key=score)
        _add(used[best], wanted)
        counts[best] += 1
        placed.append((pod, nodes[best]))
        if owner:
            spread[best] += 1
        decisions.append((pod, best))
    # Decisions are made one pod at a time (each sees the ones before); the bindings and
    # events then go to the API together.
    gate = asyncio.Semaphore(16)
    await asyncio.gather(*(_bind(cm, gate, pod, node) for pod, node in decisions))


async def _bind(cm: Manager, gate: asyncio.Semaphore, pod: dict[str, Any], node: str) -> None:
    meta = pod["metadata"]
    async with gate:
        try:
            await cm.client.create(
                path("v1", "pods", meta["namespace"], meta["name"], "binding"),
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                },
            )
        except ClientError as exc:
            if exc.status in (404, 409):
                return
            raise
        await cm.event(
            pod,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            source="default-scheduler",
        )


def _owner_uid(pod: dict[str, Any]) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


async def _unschedulable(cm: Manager, pod: dict[str, Any], total: int, why: Counter[str]) -> None:
    detail = ", ".join(f"{n} {r}" for r, n in sorted(why.items()))
    message = f"0/{total} nodes are available: {detail}."
    conds = pod.get("status", {}).get("conditions") or []
    current = next((c for c in conds if c.get("type") == "PodScheduled"), None)
    if current and current.get("message") == message:
        return
    meta = pod["metadata"]
    new_conds = [c for c in conds if c.get("type") != "PodScheduled"]
    new_conds.append(
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": meta.get("creationTimestamp"),
        }
    )
    body = {**pod, "status": {**pod.get("status", {}), "conditions": new_conds}}
    try:
        await cm.client.update(path("v1", "pods", meta["namespace"], meta["name"], "status"), body)
    except ClientError:
        return
    await cm.event(pod, "FailedScheduling", message, "Warning", "default-scheduler")
