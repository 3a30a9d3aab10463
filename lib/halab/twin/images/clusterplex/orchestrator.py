"""Stand-in for ClusterPlex's orchestrator (pabloromeo/clusterplex v1.4.15), run as a pod's
process: `python -m halab.twin.images.clusterplex.orchestrator --listen ADDRESS`.

It speaks what the real one speaks, measured on this machine against the real program
(reference/clusterplex-real.md): Socket.IO v4 on LISTENING_PORT with the real events and
payloads, the four selection strategies, a dispatch step every 2 s with no queue ("No worker
available at the moment" fails the job), `/health`, `/metrics` in prom-client's text with the
bare metric names, and the real log lines. Its two crashes are kept too, because a user's
cluster has them: a job request from a socket that never announced ends the process, and an
unknown WORKER_SELECTION_STRATEGY ends it at the first dispatch with a worker registered.

The one difference: the real one listens on every interface; a pod of the twin has no
network namespace of its own, so this binds the pod's address (what 0.0.0.0 means in a pod).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web

from halab.twin.images.clusterplex.metrics_text import Family, exposition
from halab.twin.images.clusterplex.selection import (
    DEFAULT_STRATEGY,
    InvalidStrategy,
    Selector,
    Stats,
    Worker,
)

DISPATCH_STEP_S = 2.0
NOT_FOUND = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
    "</head>\n<body>\n<pre>Cannot GET {path}</pre>\n</body>\n</html>\n"
)


def log(line: str) -> None:
    print(line, flush=True)


@dataclass
class Task:
    task_id: str
    job_id: str
    payload: dict[str, Any]
    status: str = "pending"  # pending, running, done
    worker: Worker | None = None


@dataclass
class Job:
    job_id: str
    poster_sid: str
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Poster:
    poster_id: str
    host: str


@dataclass
class Counters:
    posted: int = 0
    succeeded: int = 0
    failed: int = 0
    killed: int = 0


class Orchestrator:
    """One in-memory state, as the real one has: a restart forgets every worker and job."""

    def __init__(self, strategy: str) -> None:
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            ping_interval=25,
            ping_timeout=20,
            max_http_buffer_size=1_000_000,
            cors_allowed_origins="*",
        )
        self.selector = Selector(strategy)
        self.workers: dict[str, Worker] = {}  # by workerId, in registration order
        self.posters: dict[str, Poster] = {}  # by socket id
        self.jobs: dict[str, Job] = {}
        self.tasks: dict[str, Task] = {}
        self.counters = Counters()
        # Every worker that ever reported keeps its series, as prom-client's do.
        self.load: dict[str, Stats] = {}
        self._handlers()

    # -- socket.io -------------------------------------------------------------------------

    def _handlers(self) -> None:
        sio = self.sio
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("worker.announce", self.on_worker_announce)
        sio.on("worker.stats", self.on_worker_stats)
        sio.on("worker.task.update", self.on_task_update)
        sio.on("jobposter.announce", self.on_poster_announce)
        sio.on("jobposter.job.request", self.on_job_request)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        log(f"Client connected: {sid}")

    def _worker_at(self, sid: str) -> Worker | None:
        return next((w for w in self.workers.values() if w.sid == sid), None)

    async def on_worker_announce(self, sid: str, data: dict[str, Any]) -> None:
        worker_id, host = str(data.get("workerId")), str(data.get("host"))
        log(f"Registering worker {worker_id}|{host}")
        known = self.workers.get(worker_id)
        if known is not None:
            known.sid = sid  # a reconnect keeps its place and its last stats
        else:
            self.workers[worker_id] = Worker(worker_id, host, sid)
        log(f"Registered new worker: {worker_id}|{host}")

    async def on_worker_stats(self, sid: str, data: dict[str, Any]) -> None:
        worker = self._worker_at(sid)
        if worker is None:
            log(f"Received stats from unregistered worker on socket {sid}")
            return
        worker.stats = Stats(
            cpu=float(data.get("cpu", 0)), tasks=int(data.get("tasks", 0)), ops=int(data["ops"])
        )
        worker.reported = True
        self.load[worker.host] = worker.stats

    async def on_poster_announce(self, sid: str, data: dict[str, Any]) -> None:
        poster = Poster(str(data.get("jobPosterId")), str(data.get("host")))
        self.posters[sid] = poster
        log(f"Registered new job poster: {poster.poster_id}|{poster.host}")
        await self.sio.emit("jobposter.produce", to=sid)

    async def on_job_request(self, sid: str, data: dict[str, Any]) -> None:
        if sid not in self.posters:
            # The real one dereferences the missing poster and dies with this.
            log("TypeError: Cannot read properties of null (reading 'id')")
            os._exit(1)
        job = Job(str(uuid.uuid4()), sid)
        log("Creating single task for the job")
        task = Task(str(uuid.uuid4()), job.job_id, dict(data.get("payload") or {}))
        job.tasks.append(task)
        self.jobs[job.job_id] = job
        self.tasks[task.task_id] = task
        self.counters.posted += 1
        log(f"Queueing job {job.job_id}")
        log(f"Queueing task {task.task_id}")

    async def on_task_update(self, sid: str, data: dict[str, Any]) -> None:
        await self._update(str(data.get("taskId")), str(data.get("status")), data.get("result"))

    async def _update(self, task_id: str, status: str, result: Any) -> None:
        # The orchestrator's own failures (no worker, worker gone) go through here too,
        # as a "done" update it gives itself: the same lines as a worker's.
        log(f"Received update for task {task_id}, status: {status}")
        task = self.tasks.get(task_id)
        if task is None or task.status == "done":
            log(f"Discarding task update for {task_id}")
            return
        if status == "done":
            await self._finish(task, bool(result))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        log(f"Client disconnected: {sid}")
        worker = self._worker_at(sid)
        if worker is not None:
            log(f"Unregistering worker at socket {sid}")
            del self.workers[worker.worker_id]
            log(f"Killing pending tasks for worker: {worker.worker_id}")
            for task in [t for t in self.tasks.values() if t.worker is worker]:
                if task.status != "done":
                    await self._update(task.task_id, "done", False)  # "Worker disconnected"
            log(f"Unregistering worker {worker.worker_id}|{worker.host}")
            return
        poster = self.posters.pop(sid, None)
        if poster is None:
            return
        log(f"Removing job-poster {poster.poster_id}|{poster.host} from pool")
        for job in [j for j in self.jobs.values() if j.poster_sid == sid]:
            log(f"Killing job {job.job_id}")
            for task in job.tasks:
                if task.status == "running" and task.worker is not None:
                    w = task.worker
                    log(f"Telling worker {w.worker_id}|{w.host} to kill task {task.task_id}")
                    await self.sio.emit("worker.task.kill", {"taskId": task.task_id}, to=w.sid)
                task.status = "done"
            self.counters.killed += 1
            log(f"Job {job.job_id} killed")
            self._forget(job)

    # -- jobs ------------------------------------------------------------------------------

    def _forget(self, job: Job) -> None:
        self.jobs.pop(job.job_id, None)
        for task in job.tasks:
            self.tasks.pop(task.task_id, None)

    async def _finish(self, task: Task, result: bool) -> None:
        task.status = "done"
        log(f"Task {task.task_id} complete, result: {str(result).lower()}")
        log(f"Task {task.task_id} complete")
        job = self.jobs.get(task.job_id)
        if job is None or any(t.status != "done" for t in job.tasks):
            return
        if result:
            self.counters.succeeded += 1
        else:
            self.counters.failed += 1
        log(f"Job {job.job_id} complete, tasks: {len(job.tasks)}, result: {str(result).lower()}")
        if job.poster_sid in self.posters:
            await self.sio.emit("jobposter.job.response", {"result": result}, to=job.poster_sid)
            log("JobPoster notified")
        log(f"Removing job {job.job_id}")
        self._forget(job)
        log(f"Job {job.job_id} complete")

    async def step(self) -> None:
        """The work queue's tick: every pending task goes out now, or fails now."""
        for task in [t for t in self.tasks.values() if t.status == "pending"]:
            log(f"Running task {task.task_id}")
            workers = list(self.workers.values())
            if not workers:
                log("No worker available at the moment")
                await self._update(task.task_id, "done", False)
                continue
            try:
                worker = self.selector.choose(workers)
            except InvalidStrategy as error:
                log(f"TypeError: {error}")
                os._exit(1)
            task.status, task.worker = "running", worker
            log(f"Forwarding work request to {worker.worker_id}|{worker.host}")
            await self.sio.emit(
                "worker.task.request",
                {"taskId": task.task_id, "payload": task.payload},
                to=worker.sid,
            )

    async def dispatch_loop(self) -> None:
        while True:
            await asyncio.sleep(DISPATCH_STEP_S)
            await self.step()

    # -- HTTP ------------------------------------------------------------------------------

    def metrics(self) -> str:
        c = self.counters
        completed = c.succeeded + c.failed + c.killed

        def per_worker(value: str) -> dict[str, float]:
            return {host: float(getattr(s, value)) for host, s in self.load.items()}

        return exposition(
            [
                Family("jobs_posted", "Jobs Posted", "counter", {"": c.posted}),
                Family("jobs_completed", "Jobs Completed", "counter", {"": completed}),
                Family("jobs_succeeded", "Jobs Succeeded", "counter", {"": c.succeeded}),
                Family("jobs_failed", "Jobs Failed", "counter", {"": c.failed}),
                Family("jobs_killed", "Jobs Killed", "counter", {"": c.killed}),
                Family(
                    "job_posters_active", "Active Job Posters", "gauge", {"": len(self.posters)}
                ),
                Family("workers_active", "Active Workers", "gauge", {"": len(self.workers)}),
                Family("worker_load_cpu", "Worker Load - CPU usage", "gauge", per_worker("cpu")),
                Family(
                    "worker_load_tasks", "Worker Load - Tasks Count", "gauge", per_worker("tasks")
                ),
                Family("worker_load_ops", "Worker Load - CPU ops", "gauge", per_worker("ops")),
                Family("worker_load_rank", "Worker Load - Rank", "gauge", per_worker("rank")),
            ]
        )

    def app(self) -> web.Application:
        app = web.Application()
        self.sio.attach(app)

        async def health(request: web.Request) -> web.Response:
            return web.Response(text="Healthy", content_type="text/html", charset="utf-8")

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(
                body=self.metrics().encode(),
                headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
            )

        async def not_found(request: web.Request) -> web.Response:
            return web.Response(
                status=404,
                text=NOT_FOUND.format(path=request.path),
                content_type="text/html",
                charset="utf-8",
            )

        app.router.add_get("/health", health)
        app.router.add_get("/metrics", metrics)
        app.router.add_route("*", "/{tail:(?!socket\\.io/).*}", not_found)
        return app


async def serve(listen: str) -> None:
    port = int(os.environ.get("LISTENING_PORT", "3500"))
    strategy = os.environ.get("WORKER_SELECTION_STRATEGY", DEFAULT_STRATEGY)
    splitting = "ENABLED" if os.environ.get("STREAM_SPLITTING") == "ON" else "DISABLED"
    log(f"ON_DEATH: debug mode enabled for pid [{os.getpid()}]")
    log("Initializing orchestrator")
    log(f"Using Worker Selection Strategy: {strategy}")
    log(f"Stream-Splitting: {splitting}")
    orchestrator = Orchestrator(strategy)
    log("Setting up websockets")
    runner = web.AppRunner(orchestrator.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, listen, port, reuse_address=True).start()
    log("Ready")
    log(f"Server listening on port {port}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    dispatch = asyncio.create_task(orchestrator.dispatch_loop())
    await stop.wait()
    log("Trapped SIGTERM")
    log("ON_DEATH signal detected")
    log("SIGTERM")
    dispatch.cancel()
    await runner.cleanup()
    sys.exit(143)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="the address to bind (the pod's)")
    asyncio.run(serve(parser.parse_args(argv).listen))


if __name__ == "__main__":
    main()
