"""The twin's ClusterPlex stand-ins as real processes on loopback, and scripted Socket.IO
peers (a worker whose stats the test chooses) to drive the real protocol against them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import socketio

from twinlab import eventually

HOST = "127.0.91.1"  # the orchestrator's
WORKER_HOST = "127.0.91.2"
FFMPEG = shutil.which("ffmpeg")
# The worker's transcoder, as PMS's image gives it, is this machine's ffmpeg here.
TRANSCODER = {"TRANSCODER_PATH": str(Path(str(FFMPEG)).parent) + "/", "TRANSCODER_NAME": "ffmpeg"}


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# While building: HALAB_REAL_CLUSTERPLEX=<a checkout of pabloromeo/clusterplex with
# `npm ci --omit=dev` run in orchestrator/ and worker/app/> runs these same tests against
# the real programs (node), so the stand-ins are held to what the real ones answer.
REAL = os.environ.get("HALAB_REAL_CLUSTERPLEX", "")
REAL_SCRIPTS = {"orchestrator": "orchestrator/server.js", "worker": "worker/app/worker.js"}
# The real programs listen on every interface: this makes their listen() take a host.
BIND_PRELOAD = """
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, ...rest) {
  if (/^\\d+$/.test(String(port)))
    return listen.call(this, Number(port), process.env.BIND_HOST, ...rest);
  return listen.call(this, port, ...rest);
};
"""


def _argv(module: str, listen: str, log: Path) -> list[str]:
    if not REAL:
        return [sys.executable, "-m", f"halab.twin.images.clusterplex.{module}", "--listen", listen]
    preload = log.with_suffix(".bind.js")
    preload.write_text(BIND_PRELOAD)
    return ["node", "-r", str(preload), str(Path(REAL) / REAL_SCRIPTS[module])]


class Program:
    """One stand-in process (or the real program), its output in a log file the test reads."""

    def __init__(self, module: str, listen: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            _argv(module, listen, log),
            cwd=Path(REAL, REAL_SCRIPTS[module]).parent if REAL else None,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={
                "PATH": os.environ["PATH"],
                "HALAB_NET_GUARD": "loopback",
                "PYTHONUNBUFFERED": "1",
                "BIND_HOST": listen,
                **env,
            },
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def wait_line(self, wanted: str, timeout: float = 20.0) -> str:
        return str(
            eventually(
                lambda: next((x for x in self.lines() if wanted in x), None),
                timeout,
                f"{wanted!r} in {self.log.name}",
                every=0.05,
            )
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self._out.close()
        return code


class ScriptedWorker:
    """A worker whose stats the test sets: registers, reports, and records the tasks the
    orchestrator sends it (answering none unless told)."""

    def __init__(self, url: str, host: str) -> None:
        self.host, self.worker_id = host, str(uuid.uuid4())
        self.requests: list[dict[str, Any]] = []
        self.kills: list[str] = []
        self.got = threading.Event()
        self.client = socketio.Client(reconnection=False)
        self.client.on("worker.task.request", self._on_request)
        self.client.on("worker.task.kill", lambda d: self.kills.append(d["taskId"]))
        self.client.connect(url, transports=["websocket"], wait_timeout=5)
        self.client.emit("worker.announce", {"workerId": self.worker_id, "host": host})

    def _on_request(self, data: dict[str, Any]) -> None:
        self.requests.append(data)
        self.got.set()

    def report(self, cpu: float, tasks: int, ops: int) -> None:
        self.client.emit("worker.stats", {"cpu": f"{cpu:.2f}", "tasks": tasks, "ops": ops})

    def finish(self, task_id: str, result: bool) -> None:
        self.client.emit("worker.task.update", {"taskId": task_id, "status": "received"})
        self.client.emit(
            "worker.task.update",
            {"taskId": task_id, "status": "done", "result": result, "exitCode": 0 if result else 1},
        )

    def close(self) -> None:
        self.client.disconnect()


class Poster:
    """A job poster as the PMS shim is, kept open so a test can drop it mid-job."""

    def __init__(self, url: str) -> None:
        self.responses: list[dict[str, Any]] = []
        self.produced = threading.Event()
        self.client = socketio.Client(reconnection=False)
        self.client.on("jobposter.produce", lambda *_: self.produced.set())
        self.client.on("jobposter.job.response", self.responses.append)
        self.client.connect(url, transports=["websocket"], wait_timeout=5)
        self.client.emit("jobposter.announce", {"jobPosterId": str(uuid.uuid4()), "host": "pms"})
        assert self.produced.wait(5), "no jobposter.produce"

    def request(self, payload: dict[str, Any]) -> None:
        self.client.emit("jobposter.job.request", {"type": "transcode", "payload": payload})

    def close(self) -> None:
        self.client.disconnect()
