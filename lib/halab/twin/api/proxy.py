"""The API server's proxy subresource: `services/[scheme:]NAME[:PORT]/proxy/PATH` and
`pods/NAME[:PORT]/proxy/PATH`, as kube-apiserver forwards them.

It lets a client that holds only a kubeconfig talk HTTP to a Service or a pod inside the
cluster (`kubectl get --raw /api/v1/namespaces/seaweedfs/services/x:9333/proxy/dir/status`);
the kit's SeaweedFS adapter reaches the masters this way at home and in the twin alike.
The error texts are kube-apiserver's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from halab.twin.api.status import ApiError

if TYPE_CHECKING:
    from halab.twin.api.server import ApiServer

# Hop-by-hop and framing headers are the proxy's own, not the upstream's.
_DROP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


def split_target(raw: str) -> tuple[str, str, str]:
    """'https:name:port' -> (scheme, name, port); scheme and port may be empty."""
    parts = raw.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", parts[0], ""


async def _service_address(api: ApiServer, ns: str, name: str, port: str) -> str:
    service = (await api.objects.get(api.resource("", "v1", "services"), ns, name)).obj
    ports = service.get("spec", {}).get("ports") or []
    chosen = next((p for p in ports if port in ("", str(p.get("port")), p.get("name", ""))), None)
    if chosen is None:
        raise ApiError(503, f'no endpoints available for service "{name}"', "ServiceUnavailable")
    try:
        endpoints = (await api.objects.get(api.resource("", "v1", "endpoints"), ns, name)).obj
    except ApiError:
        endpoints = {}
    for subset in endpoints.get("subsets") or []:
        numbers = {p.get("name", ""): p.get("port") for p in subset.get("ports") or []}
        target = numbers.get(chosen.get("name", "")) or next(iter(numbers.values()), None)
        for address in subset.get("addresses") or []:
            if target:
                return f"{address['ip']}:{target}"
    raise ApiError(503, f'no endpoints available for service "{name}"', "ServiceUnavailable")


async def _pod_address(api: ApiServer, ns: str, name: str, port: str) -> str:
    pod = (await api.objects.get(api.resource("", "v1", "pods"), ns, name)).obj
    ip = pod.get("status", {}).get("podIP")
    if not ip:
        raise ApiError(503, f'pod "{name}" has no IP address yet', "ServiceUnavailable")
    declared = [p for c in pod["spec"].get("containers") or [] for p in c.get("ports") or []]
    if not port:
        port = str(declared[0]["containerPort"]) if declared else "80"
    elif not port.isdigit():
        named = {p.get("name"): p["containerPort"] for p in declared}
        if port not in named:
            raise ApiError(503, f'no port named "{port}" on pod "{name}"', "ServiceUnavailable")
        port = str(named[port])
    return f"{ip}:{port}"


async def forward(
    api: ApiServer, request: web.Request, kind: str, ns: str, raw_name: str, rest: str
) -> web.StreamResponse:
    scheme, name, port = split_target(raw_name)
    if kind == "services":
        where = await _service_address(api, ns, name, port)
    else:
        where = await _pod_address(api, ns, name, port)
    url = f"{scheme or 'http'}://{where}/{rest}"
    headers: dict[str, Any] = {
        k: v for k, v in request.headers.items() if k.lower() not in _DROP | {"authorization"}
    }
    session = await api.http()
    try:
        async with session.request(
            request.method,
            url,
            params=request.query,
            data=await request.read() or None,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=60, connect=5),
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
            return web.Response(body=body, status=upstream.status, headers=out)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(
            503, f"error trying to reach service: dial tcp {where}: {exc}", "ServiceUnavailable"
        ) from None
