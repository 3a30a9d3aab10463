"""A host process's control socket: what the commands on its machines (hostshim.py) ask of
it. The hypervisor's guests (list, start, stop, shut down), a machine's memory in use, the
host's own power (by the supervisor's own `twin fail`/`recover`, so the state file says
what happened), the NFS server's exports (exportfs) and the Docker engine's containers.

HTTP over a Unix socket in the host's directory, bound into each of its machines' worlds
at /run/halab/control/sock; nothing listens on the network for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from halab.twin.docker_engine import DockerEngine, DockerError
from halab.twin.guests import Guest, Guests, descendants, rss_bytes

log = logging.getLogger("halab.twin.control")
LATER = 0.5  # s: the answer reaches the guest's SSH session before the guest goes


class HostControl:
    def __init__(
        self,
        directory: Path,
        host: str,
        guests: Guests | None,
        nfs_running: Callable[[], bool],
        exports: Callable[[], list[dict[str, str]]],
        reload_exports: Callable[[], list[dict[str, str]]],
        docker: DockerEngine | None = None,
    ) -> None:
        self.dir = directory
        self.host = host
        self.guests = guests
        self.nfs_running = nfs_running
        self.exports = exports
        self.reload_exports = reload_exports
        self.docker = docker
        self.socket_dir = directory / "hosts" / host / "control"
        self._later: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/guests", self._list)
        app.router.add_post("/guests/{name}/{action}", self._act)
        app.router.add_get("/machines/{name}", self._machine)
        app.router.add_post("/poweroff", self._poweroff)
        app.router.add_post("/reboot", self._reboot)
        app.router.add_get("/exports", self._exports)
        app.router.add_post("/exports/reload", self._reload)
        app.router.add_post("/docker/compose/{verb}", self._compose)
        app.router.add_get("/docker/containers", self._containers)
        app.router.add_get("/docker/containers/{name}/logs", self._container_logs)
        app.router.add_post("/docker/containers/{name}/{action}", self._container_act)
        return app

    async def start(self) -> web.AppRunner:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        path = self.socket_dir / "sock"
        path.unlink(missing_ok=True)
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.UnixSite(runner, str(path)).start()
        path.chmod(0o666)
        return runner

    def _row(self, guest: Guest) -> dict[str, Any]:
        node = guest.node
        return {
            "name": node.name,
            "vmid": guest.vmid,
            "kind": node.kind,
            "running": guest.running,
            "domain_id": guest.domain_id,
            "pid": guest.process.pid if guest.running and guest.process else None,
            "memory_mb": int(node.memory_gib * 1024),
            "disk_gb": float(node.os_disk_gib),
        }

    async def _list(self, request: web.Request) -> web.Response:
        rows = [self._row(g) for g in self.guests.guests.values()] if self.guests else []
        return web.json_response(rows)

    async def _act(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        guest = self.guests.find(name) if self.guests else None
        if guest is None or self.guests is None:
            return web.json_response({"error": f"no guest {name} on {self.host}"}, status=404)
        guests = self.guests

        def do() -> None:
            if action == "start":
                guests.start(guest)
            elif action in ("stop", "shutdown"):
                guests.stop(guest, graceful=action == "shutdown")
            elif action == "reboot":
                guests.stop(guest, graceful=True)
                guests.start(guest)
            log.info("guest %s: %s", guest.node.name, action)

        if action not in ("start", "stop", "shutdown", "reboot"):
            return web.json_response({"error": f"unknown action {action}"}, status=400)
        if request.query.get("later"):
            # Asked from inside the guest (its own poweroff): answer, then act.
            async def later() -> None:
                await asyncio.sleep(LATER)
                await asyncio.to_thread(do)

            task = asyncio.create_task(later())
            self._later.add(task)
            task.add_done_callback(self._later.discard)
            return web.json_response(self._row(guest), status=202)
        await asyncio.to_thread(do)
        return web.json_response(self._row(guest))

    async def _machine(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        guest = self.guests.find(name) if self.guests else None
        if guest is not None:
            used = guest.memory_used()
        else:
            me = os.getpid()
            guest_pids = set()
            for g in self.guests.guests.values() if self.guests else []:
                if g.running and g.process is not None:
                    guest_pids |= {g.process.pid, *descendants(g.process.pid)}
            used = rss_bytes([me, *(p for p in descendants(me) if p not in guest_pids)])
        return web.json_response({"memory_used": used, "nfs_running": self.nfs_running()})

    def _twin(self, *verbs: str) -> None:
        # Run by a grandchild that init adopts at once: neither in this host's process
        # group nor below it, so `twin fail` does not kill the very process running it.
        twin = f"{sys.executable} -m halab.cli twin --dir {self.dir}"
        script = " && sleep 1 && ".join(f"{twin} {verb} {self.host}" for verb in verbs)
        log_file = self.dir / "hosts" / self.host / "power.log"
        subprocess.run(
            ["sh", "-c", f"(sleep {LATER} && {script}) >>{log_file} 2>&1 </dev/null &"],
            start_new_session=True,
            check=False,
        )

    async def _poweroff(self, request: web.Request) -> web.Response:
        log.info("%s: poweroff asked over SSH", self.host)
        self._twin("fail")
        return web.json_response({"host": self.host, "state": "powering off"}, status=202)

    async def _reboot(self, request: web.Request) -> web.Response:
        log.info("%s: reboot asked over SSH", self.host)
        self._twin("fail", "recover")
        return web.json_response({"host": self.host, "state": "rebooting"}, status=202)

    async def _exports(self, request: web.Request) -> web.Response:
        return web.json_response({"exports": self.exports()})

    async def _reload(self, request: web.Request) -> web.Response:
        try:
            lines = await asyncio.to_thread(self.reload_exports)
        except (ValueError, RuntimeError, OSError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"exports": lines})

    # -- Docker (Unraid) --

    def _engine(self) -> DockerEngine:
        if self.docker is None:
            raise DockerError(f"{self.host} runs no Docker engine")
        return self.docker

    async def _compose(self, request: web.Request) -> web.Response:
        """docker compose VERB: the file's text comes from the host's shell (its world)."""
        verb = request.match_info["verb"]
        body = await request.json()
        text, file, project = body["text"], body["file"], body.get("project")
        only = [str(s) for s in body.get("services") or []]
        try:
            engine = self._engine()
            if verb == "up":
                env = {str(k): str(v) for k, v in (body.get("environment") or {}).items()}
                events = await engine.up(text, file, project, only, env)
                return web.json_response({"events": events})
            if verb == "down":
                return web.json_response({"events": await engine.down(text, file, project)})
            name = engine.project_of(text, file, project)
            if verb == "ps":
                rows = engine.rows(bool(body.get("all")), name)
                return web.json_response([r for r in rows if not only or r["Service"] in only])
            if verb == "logs":
                rows = [r for r in engine.rows(True, name) if not only or r["Service"] in only]
                return web.json_response(
                    [{"service": r["Service"], "text": engine.logs(r["Name"])} for r in rows]
                )
            if verb in ("start", "stop", "restart"):
                rows = [r for r in engine.rows(True, name) if not only or r["Service"] in only]
                for row in rows:
                    await engine.act(row["Name"], verb)
                return web.json_response({"containers": [r["Name"] for r in rows]})
        except DockerError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"error": f"unknown command: docker compose {verb}"}, status=400)

    async def _containers(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self._engine().rows(bool(request.query.get("all"))))
        except DockerError as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def _container_logs(self, request: web.Request) -> web.Response:
        try:
            text = self._engine().logs(request.match_info["name"])
        except DockerError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response({"text": text})

    async def _container_act(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("start", "stop", "restart"):
            return web.json_response({"error": f"unknown command: docker {action}"}, status=400)
        try:
            await self._engine().act(request.match_info["name"], action)
        except DockerError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response({"name": request.match_info["name"]})

    async def stop(self) -> None:
        for task in list(self._later):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._later, return_exceptions=True)


def query(directory: Path, host: str, path: str, timeout: float = 2.0) -> Any:
    """GET `path` of a running host's control socket (for `twin status`)."""
    import http.client
    import json
    import socket

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(str(directory / "hosts" / host / "control" / "sock"))
            self.sock = sock

    conn = Connection("twin", timeout=timeout)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()
