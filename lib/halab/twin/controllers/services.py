"""Endpoints for every Service with a selector: ready pod addresses, and the not-ready
ones apart, with target ports resolved by name as the endpoints controller does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from halab.twin.client import ClientError, path
from halab.twin.controllers.manager import is_terminating, pod_ready

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager


def _target(port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    for c in pod["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


def subsets(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    selector = service["spec"].get("selector") or {}
    ports = service["spec"].get("ports") or []
    chosen = [
        p
        for p in pods
        if p["metadata"].get("namespace") == service["metadata"]["namespace"]
        and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        and p.get("status", {}).get("podIP")
        and not is_terminating(p)
    ]
    # publishNotReadyAddresses: every pod counts as ready for its Service (headless
    # peers that must find each other before they are ready, such as SeaweedFS masters).
    publish = bool(service["spec"].get("publishNotReadyAddresses"))
    out = []
    for port in ports:
        ready: list[dict[str, Any]] = []
        not_ready: list[dict[str, Any]] = []
        resolved = None
        for pod in sorted(chosen, key=lambda p: p["status"]["podIP"]):
            number = _target(port, pod)
            if number is None:
                continue
            resolved = number
            addr = {
                "ip": pod["status"]["podIP"],
                "nodeName": pod["spec"].get("nodeName"),
                "targetRef": {
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "namespace": pod["metadata"]["namespace"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            spec = pod["spec"]
            if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
                addr["hostname"] = spec["hostname"]  # <hostname>.<svc> resolves in DNS
            (ready if publish or pod_ready(pod) else not_ready).append(addr)
        if resolved is None:
            continue
        subset: dict[str, Any] = {
            "ports": [
                {
                    k: v
                    for k, v in (
                        ("name", port.get("name")),
                        ("port", resolved),
                        ("protocol", port.get("protocol", "TCP")),
                    )
                    if v
                }
            ]
        }
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        out.append(subset)
    return out


async def reconcile(cm: Manager) -> None:
    pods = cm.cache("pods")
    for svc in cm.cache("services"):
        if not svc["spec"].get("selector") or is_terminating(svc):
            continue
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        want = subsets(svc, pods)
        current = cm.get("endpoints", ns, name)
        if current is not None and (current.get("subsets") or []) == want:
            continue
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(svc["metadata"].get("labels") or {}),
            },
        }
        if want:
            body["subsets"] = want
        try:
            if current is None:
                await cm.client.create(path("v1", "endpoints", ns), body)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await cm.client.update(path("v1", "endpoints", ns, name), body)
        except ClientError:
            continue
