"""Stand-in for ClusterPlex's worker (the clusterplex_worker_dockermod on linuxserver/plex,
v1.4.15), run as a pod's process or a compose service:
`python -m halab.twin.images.clusterplex.worker --listen ADDRESS`.

As the real worker does (reference/clusterplex-real.md): it benchmarks its CPU once at start
(`Computed CPU ops => N`), connects to ORCHESTRATOR_URL over Socket.IO and announces
`{workerId, host}`, reports `{cpu, tasks, ops}` every STAT_CPU_INTERVAL from this machine's
CPU use, answers `/health` on LISTENING_PORT, and runs each task's argv with
TRANSCODER_PATH + TRANSCODER_NAME in the task's cwd, streaming the transcoder's output into
its log, with the real `received`/`inprogress`/`done` updates and the `testpayload` hook.
FFMPEG_HWACCEL replaces the task's `-hwaccel`, as the real one does.

Its bug kept: setting STAT_CPU_OPS_DURATION hangs the real worker's start-up benchmark
forever (a string added to a number), so it hangs this one's too.

What differs, said where it shows: the CPU ops figure is a Python loop's count, not node's,
so it compares between stand-in workers only; the transcoder is whatever the image gives
at TRANSCODER_PATH (in the twin, the machine's ffmpeg: there is no Plex Transcoder here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web

from halab.clusterplex import js_hwaccel

# Copied into a real task's environment from the worker's own, as the real worker does.
WORKER_ENV_KEYS = ("PLEX_ARCH", "PLEX_MEDIA_SERVER_INFO_MODEL", "FFMPEG_EXTERNAL_LIBS")
TEST_PAYLOAD_S = 5.0
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(line: str) -> None:
    print(line, flush=True)


def cpu_ops(duration_s: float) -> int:
    """Iterations of a fixed arithmetic loop in `duration_s`: a relative CPU figure."""
    deadline = time.perf_counter() + duration_s
    ops, x = 0, 0.0
    while time.perf_counter() < deadline:
        for _ in range(1000):
            x = (x + 1.000001) * 0.999999
        ops += 1000
    return ops


def _cpu_times() -> tuple[int, int]:
    """Busy and total jiffies of the whole machine, as `os.cpus()` gives node."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


async def cpu_percent(sample_s: float) -> float:
    busy0, total0 = _cpu_times()
    await asyncio.sleep(sample_s)
    busy1, total1 = _cpu_times()
    return 100.0 * (busy1 - busy0) / max(total1 - total0, 1)


def with_hwaccel(args: list[str], hwaccel: str) -> list[str]:
    """`-hwaccel` set to the worker's choice. The real one looks for an index above 0, so
    an argv that starts with `-hwaccel` gets a second pair in front."""
    out = list(args)
    index = out.index("-hwaccel") if "-hwaccel" in out else -1
    if index > 0:
        if index + 1 < len(out):
            out[index + 1] = hwaccel
        else:
            out.append(hwaccel)
        return out
    return ["-hwaccel", hwaccel, *out]


def _js_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Worker:
    def __init__(self, env: dict[str, str], default_transcoder: str = "") -> None:
        self.env = env
        self.worker_id = str(uuid.uuid4())
        self.host = env.get("HOSTNAME", "undefined")  # the real one's text without it
        self.interval_s = int(env.get("STAT_CPU_INTERVAL", "2000")) / 1000
        self.transcoder = env.get("TRANSCODER_PATH", "/usr/lib/plexmediaserver/") + env.get(
            "TRANSCODER_NAME", "Plex Transcoder"
        )
        if default_transcoder and not ({"TRANSCODER_PATH", "TRANSCODER_NAME"} & set(env)):
            self.transcoder = default_transcoder
        self.hwaccel = js_hwaccel(env.get("FFMPEG_HWACCEL", ""))
        self.ops = 0
        self.tasks: dict[str, asyncio.subprocess.Process] = {}
        self._followers: set[asyncio.Task[None]] = set()
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=1)
        self.sio.on("connect", self.on_connect)
        self.sio.on("worker.task.request", self.on_task_request)
        self.sio.on("worker.task.kill", self.on_task_kill)
        self.sio.on("disconnect", self.on_disconnect)

    async def on_connect(self) -> None:
        log(f"Worker connected on socket {self.sio.get_sid()}")
        await self.sio.emit("worker.announce", {"workerId": self.worker_id, "host": self.host})

    async def stats_loop(self) -> None:
        while True:
            cpu = await cpu_percent(self.interval_s)
            if self.sio.connected:
                with contextlib.suppress(socketio.exceptions.SocketIOError):
                    stats = {"cpu": f"{cpu:.2f}", "tasks": len(self.tasks), "ops": self.ops}
                    await self.sio.emit("worker.stats", stats)

    async def _update(self, task_id: str, status: str, **more: Any) -> None:
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await self.sio.emit("worker.task.update", {"taskId": task_id, "status": status, **more})

    def _task_env(self, env: Any) -> dict[str, str]:
        """The job's environment with the worker's own PLEX_ARCH and friends (those it
        does not have are left out, as node drops undefined values)."""
        out = {str(k): str(v) for k, v in (env or {}).items()}
        out.update({k: self.env[k] for k in WORKER_ENV_KEYS if k in self.env})
        return out

    async def on_task_request(self, data: dict[str, Any]) -> None:
        task_id = str(data["taskId"])
        payload = data.get("payload") or {}
        args = [str(a) for a in payload.get("args") or []]
        log("Received task request")
        await self._update(task_id, "received")
        env = self._task_env(payload.get("env"))
        cwd = str(payload.get("cwd") or "/")
        if args[:1] == ["testpayload"]:
            log(f"args => {_js_json(args)}")
            log(f"env => {_js_json(env)}")
            log(f"Starting test of waiting for {TEST_PAYLOAD_S:g} seconds")
            argv, cwd = ["sh", "-c", f"sleep {TEST_PAYLOAD_S:g}"], "/"
        else:
            if self.hwaccel is not None:
                log(f"Setting hwaccel to {self.hwaccel}")
                args = with_hwaccel(args, self.hwaccel)
            log(f'EAE_ROOT => "{env.get("EAE_ROOT", "undefined")}"')
            if not Path(cwd).is_dir():
                log(
                    "CWD path doesn't seem to exist. Plex should have created this path "
                    "before-hand, so you may have an issue with your shares "
                    f'=> "{cwd}"'
                )
            argv = [self.transcoder, *args]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env if argv[0] == self.transcoder else {**env, "PATH": DEFAULT_PATH},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as error:
            # Node reports a missing cwd as the spawn's ENOENT too.
            message = f"spawn {argv[0]} {_errno_name(error)}"
            log("Transcoding failed:")
            log(f"Error: {message}")
            await self._update(task_id, "done", result=False, error=message)
            log("Orchestrator notified")
            log("Removing process from taskMap")
            return
        self.tasks[task_id] = process
        self._followers.add(asyncio.create_task(self._follow(task_id, process)))
        await self._update(task_id, "inprogress")

    async def _follow(self, task_id: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            log(line.decode(errors="replace").rstrip("\n"))
        returncode = await process.wait()
        self._followers.discard(asyncio.current_task())
        code = None if returncode < 0 else returncode  # killed by a signal: node's null
        shown = "null" if code is None else str(code)
        log(f"Transcoder exit: child process exited with code {shown}")
        log("Completed transcode")
        await self._update(task_id, "done", result=code == 0, exitCode=code)
        log("Removing process from taskMap")
        self.tasks.pop(task_id, None)
        log(f"Transcoder close: child process exited with code {shown}")

    async def on_task_kill(self, data: dict[str, Any]) -> None:
        task_id = str(data.get("taskId"))
        process = self.tasks.pop(task_id, None)
        if process is None:
            return
        log(f"Killing child processes for task {task_id}")
        # SIGTERM to the child alone, as node's kill() sends: a shell's own children live on.
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        log("Removing process from taskMap")

    async def on_disconnect(self) -> None:
        log("Worker disconnected")

    def app(self) -> web.Application:
        async def health(request: web.Request) -> web.Response:
            return web.Response(text="Healthy", content_type="text/html", charset="utf-8")

        app = web.Application()
        app.router.add_get("/health", health)
        return app


def _errno_name(error: OSError) -> str:
    import errno

    return errno.errorcode.get(error.errno or 0, "UNKNOWN")


async def run(listen: str, default_transcoder: str = "") -> None:
    env = dict(os.environ)
    worker = Worker(env, default_transcoder)
    log(f"EAE_SUPPORT => {env.get('EAE_SUPPORT', '1')}")
    log(f"EAE_EXECUTABLE => {env.get('EAE_EXECUTABLE', '')}")
    log(f"FFMPEG_HWACCEL => {env.get('FFMPEG_HWACCEL') or 'false'}")
    log(f"ON_DEATH: debug mode enabled for pid [{os.getpid()}]")
    if "STAT_CPU_OPS_DURATION" in env:
        # The real worker adds this string to a number (`start + timeLimit`): the deadline
        # of its benchmark is then a concatenation far in the future, and it spins there
        # for good, never listening or registering. Kept, without burning the CPU.
        await asyncio.Event().wait()
    worker.ops = cpu_ops(1.0)
    log(f"Computed CPU ops => {worker.ops}")
    log(f"Initializing Worker {worker.worker_id}|{worker.host}")
    runner = web.AppRunner(worker.app(), access_log=None)
    await runner.setup()
    port = int(env.get("LISTENING_PORT", "3501"))
    await web.TCPSite(runner, listen, port, reuse_address=True).start()
    log(f"Worker listening on port {port}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    url = env.get("ORCHESTRATOR_URL", "http://localhost:3500")
    connecting = asyncio.create_task(_connect(worker, url))
    stats = asyncio.create_task(worker.stats_loop())
    await stop.wait()
    log("Trapped SIGTERM")
    log("ON_DEATH signal detected")
    log("SIGTERM")
    for task in (connecting, stats):
        task.cancel()
    for running in worker.tasks.values():
        with contextlib.suppress(ProcessLookupError):
            running.kill()
    with contextlib.suppress(Exception):
        await worker.sio.disconnect()
    await runner.cleanup()
    sys.exit(143)


async def _connect(worker: Worker, url: str) -> None:
    # The real worker keeps trying until the orchestrator answers, then reconnects by
    # itself with the same workerId.
    while True:
        try:
            await worker.sio.connect(url, transports=["websocket"], wait_timeout=5)
            return
        except socketio.exceptions.ConnectionError:
            await asyncio.sleep(2)  # silently, as socket.io-client retries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="the address to bind (the pod's)")
    parser.add_argument(
        "--default-transcoder",
        default="",
        help="what runs a task when TRANSCODER_PATH/NAME are unset (the twin: ffmpeg)",
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args.listen, args.default_transcoder))


if __name__ == "__main__":
    main()
