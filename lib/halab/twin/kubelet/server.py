"""The kubelet's HTTP endpoint: container logs (what `kubectl logs` reaches through the
API server's pods/log) and a health check."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

LogLookup = Callable[[str, str, str], Path | None]


def kubelet_app(lookup: LogLookup) -> web.Application:
    async def logs(request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        found = lookup(ns, pod, container)
        if found is None:
            return web.Response(
                status=404, text=f'container "{container}" in pod "{pod}" has no logs yet'
            )
        follow = request.query.get("follow") in ("1", "true")
        tail = request.query.get("tailLines")
        data = found.read_bytes()
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :]) if int(tail) > 0 else b""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if follow:
            offset = found.stat().st_size
            try:
                while lookup(ns, pod, container) is not None:
                    size = found.stat().st_size
                    if size > offset:
                        with found.open("rb") as fh:
                            fh.seek(offset)
                            await response.write(fh.read(size - offset))
                        offset = size
                    await asyncio.sleep(0.2)
            except (ConnectionResetError, FileNotFoundError):
                pass
        return response

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", logs)
    app.router.add_get("/healthz", healthz)
    return app
