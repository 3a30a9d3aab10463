"""Subresources with behaviour of their own: pods/log (from the node's kubelet),
scale, pods/eviction (honouring PodDisruptionBudgets) and pods/binding."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from halab.twin.api.admission import now
from halab.twin.api.patch import json_patch, merge_patch
from halab.twin.api.resources import Resource
from halab.twin.api.selectors import matches_selector
from halab.twin.api.status import ApiError, bad_request

if TYPE_CHECKING:
    from halab.twin.api.server import ApiServer


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


async def pod_log(
    api: ApiServer, request: web.Request, ns: str | None, name: str
) -> web.StreamResponse:
    pod = (await api.objects.get(api.resource("", "v1", "pods"), ns, name)).obj
    containers = [c["name"] for c in pod["spec"].get("containers", [])]
    container = request.query.get("container")
    if not container:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(containers)}]"
            )
        container = containers[0]
    elif container not in containers + [c["name"] for c in pod["spec"].get("initContainers") or []]:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node_name = pod["spec"].get("nodeName")
    if not node_name:
        raise bad_request(f'pod "{name}" is not yet scheduled to a node')
    node = (await api.objects.get(api.resource("", "v1", "nodes"), None, node_name)).obj
    addrs = {a["type"]: a["address"] for a in node.get("status", {}).get("addresses", [])}
    port = node.get("status", {}).get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port")
    if not addrs.get("InternalIP") or not port:
        raise ApiError(500, f"node {node_name} has no kubelet endpoint")
    keep = {
        k: v
        for k, v in request.query.items()
        if k in ("follow", "tailLines", "previous", "timestamps", "limitBytes", "sinceSeconds")
    }
    url = f"http://{addrs['InternalIP']}:{port}/containerLogs/{ns}/{name}/{container}"
    session = await api.http()
    try:
        upstream = await session.get(
            url, params=keep, timeout=aiohttp.ClientTimeout(total=None, connect=3, sock_read=None)
        )
    except aiohttp.ClientError as exc:
        raise ApiError(
            500,
            f'Get "https://{addrs["InternalIP"]}:{port}/containerLogs/{ns}/{name}/{container}": '
            f"{exc}",
        ) from None
    async with upstream:
        if upstream.status != 200:
            raise ApiError(
                upstream.status if upstream.status < 500 else 500, (await upstream.text()).strip()
            )
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (ConnectionResetError, aiohttp.ClientError):
            pass
        return response


async def scale(
    api: ApiServer, request: web.Request, res: Resource, ns: str | None, name: str
) -> dict[str, Any]:
    def as_scale(obj: dict[str, Any]) -> dict[str, Any]:
        from halab.twin.api.selectors import selector_to_text

        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {
                "replicas": obj.get("status", {}).get("replicas", 0),
                "selector": selector_to_text(obj.get("spec", {}).get("selector")),
            },
        }

    if request.method == "GET":
        return as_scale((await api.objects.get(res, ns, name)).obj)
    if request.method not in ("PUT", "PATCH"):
        raise ApiError(405, "the server does not allow this method on the requested resource")
    body = await api._body(request)
    ctype = request.headers.get("Content-Type", "")

    def change(current: dict[str, Any]) -> dict[str, Any]:
        wanted = as_scale(current)
        if request.method == "PUT":
            wanted = body
        elif "json-patch" in ctype:
            wanted = json_patch(wanted, body)
        else:
            wanted = merge_patch(wanted, body)
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422, f'Scale.autoscaling "{name}" is invalid: spec.replicas: must be >= 0'
            )
        rv = (wanted.get("metadata") or {}).get("resourceVersion")
        current.setdefault("spec", {})["replicas"] = replicas
        if rv and request.method == "PUT":
            current["metadata"]["resourceVersion"] = rv
        return current

    return as_scale(await api.objects.mutate(res, ns, name, change))


def _selected_by(selector: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: matches_selector(selector, obj["metadata"].get("labels") or {})


def _budget(pdb: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(disruptions allowed, healthy, desired healthy) for one budget over its pods."""
    spec = pdb.get("spec") or {}
    expected = len(pods)
    healthy = sum(1 for p in pods if pod_ready(p) and not p["metadata"].get("deletionTimestamp"))

    def count(value: Any) -> int:
        if isinstance(value, str) and value.endswith("%"):
            return math.ceil(expected * int(value[:-1]) / 100)
        return int(value)

    if spec.get("maxUnavailable") is not None:
        desired = max(expected - count(spec["maxUnavailable"]), 0)
    else:
        desired = count(spec.get("minAvailable", 1))
    return healthy - desired, healthy, desired


async def evict(api: ApiServer, body: Any, ns: str | None, name: str) -> dict[str, Any]:
    pods_res = api.resource("", "v1", "pods")
    pod = (await api.objects.get(pods_res, ns, name)).obj
    labels = pod["metadata"].get("labels") or {}
    if pod_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
        pdbs = await api.objects.list(
            api.resource("policy", "v1", "poddisruptionbudgets"), ns, lambda o: True
        )
        for pdb in pdbs.items:
            selector = (pdb.get("spec") or {}).get("selector")
            if not selector or not matches_selector(selector, labels):
                continue
            covered = await api.objects.list(
                pods_res,
                ns,
                _selected_by(selector),
            )
            allowed, healthy, desired = _budget(pdb, covered.items)
            if allowed < 1:
                pdb_name = pdb["metadata"]["name"]
                raise ApiError(
                    429,
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    details={
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {pdb_name} needs {desired} "
                                f"healthy pods and has {healthy} currently",
                            }
                        ]
                    },
                )
    options = (body or {}).get("deleteOptions") or {}
    await api.objects.delete(pods_res, ns, name, options)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


async def bind(api: ApiServer, body: Any, ns: str | None, name: str) -> dict[str, Any]:
    target = ((body or {}).get("target") or {}).get("name")
    if not target:
        raise ApiError(422, f'Binding "{name}" is invalid: target.name: Required value')

    def change(pod: dict[str, Any]) -> dict[str, Any]:
        current = pod["spec"].get("nodeName")
        if current:
            raise ApiError(409, f'pod {name} is already assigned to node "{current}"')
        pod["spec"]["nodeName"] = target
        conds = [
            c
            for c in pod.setdefault("status", {}).get("conditions", [])
            if c.get("type") != "PodScheduled"
        ]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now(),
            }
        )
        pod["status"]["conditions"] = conds
        return pod

    await api.objects.mutate(api.resource("", "v1", "pods"), ns, name, change, sub="binding")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
