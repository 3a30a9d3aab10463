"""Cordon, uncordon and drain a node as `kubectl drain --ignore-daemonsets
--delete-emptydir-data` does: the node marked unschedulable, then every pod on it that is
not a DaemonSet's or a static (mirror) pod evicted through the eviction API, so that
PodDisruptionBudgets are honoured, and waited for until it is gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from halab.kube import ClusterError

MIRROR = "kubernetes.io/config.mirror"


def set_unschedulable(api: Any, node: str, value: bool) -> bool:
    """Cordon (True) or uncordon (False); whether the node changed."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    current = bool(core.read_node(node).spec.unschedulable)
    if current == value:
        return False
    core.patch_node(node, {"spec": {"unschedulable": value or None}})
    return True


def _drainable(pod: Any) -> bool:
    owners = pod.metadata.owner_references or []
    if any(o.kind == "DaemonSet" for o in owners):
        return False
    if MIRROR in (pod.metadata.annotations or {}):
        return False
    return pod.status.phase not in ("Succeeded", "Failed")


def pods_to_drain(api: Any, node: str) -> list[Any]:
    from kubernetes import client

    found = client.CoreV1Api(api).list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node}"
    )
    return [p for p in found.items if _drainable(p)]


def drain(
    api: Any, node: str, timeout: float = 300, said: Callable[[str], None] = lambda _: None
) -> list[str]:
    """Evict what runs on `node` (it must be cordoned first) and wait until it is gone;
    the pods evicted, as namespace/name. A PodDisruptionBudget's refusal (429) is tried
    again until the timeout, as kubectl does."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    evicted: dict[str, str] = {}  # ns/name -> uid
    while True:
        waiting = [p for p in pods_to_drain(api, node) if f"{_key(p)}" not in evicted]
        for pod in waiting:
            body = client.V1Eviction(
                metadata=client.V1ObjectMeta(
                    name=pod.metadata.name, namespace=pod.metadata.namespace
                )
            )
            try:
                core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
            except client.ApiException as exc:
                if exc.status == 404:
                    continue
                if exc.status == 429 and time.monotonic() < deadline:
                    continue  # a disruption budget says not yet: the next round asks again
                raise ClusterError(
                    f"evicting {_key(pod)} from {node}: {exc.status} {exc.reason}"
                ) from None
            evicted[_key(pod)] = pod.metadata.uid
            said(f"evicted {_key(pod)}")
        left = [p for p in pods_to_drain(api, node) if evicted.get(_key(p)) == p.metadata.uid]
        refused = [p for p in pods_to_drain(api, node) if _key(p) not in evicted]
        if not left and not refused:
            return sorted(evicted)
        if time.monotonic() > deadline:
            names = ", ".join(_key(p) for p in left + refused)
            raise ClusterError(f"draining {node}: still there after {timeout:.0f} s: {names}")
        time.sleep(0.5)


def _key(pod: Any) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"
