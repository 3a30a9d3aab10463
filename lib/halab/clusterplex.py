"""The ClusterPlex connector: the orchestrator's `/health` and `/metrics`, and a synthetic
job over its Socket.IO protocol, as the PMS dockermod's job poster sends one.

At home the orchestrator answers on its LoadBalancer address (the rendered Service's
`metallb.io/loadBalancerIPs`), port 3500. Facts: reference/clusterplex.md §2 and §6,
clusterplex-real.md (the real orchestrator and worker, run). The orchestrator has no REST
API for its workers: `workers_active` and the per-worker `worker_load_*` series are what it
tells, and those series outlive their workers, so liveness is `workers_active` alone.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

import socketio  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from halab.errors import StepError

COUNTERS = ("jobs_posted", "jobs_completed", "jobs_succeeded", "jobs_failed", "jobs_killed")
LOAD = ("worker_load_cpu", "worker_load_tasks", "worker_load_ops", "worker_load_rank")
# The worker's own test hook: it sleeps 5 s instead of transcoding and reports success.
TEST_PAYLOAD = {"cwd": "/", "args": ["testpayload"], "env": {}}


def js_hwaccel(value: str) -> str | None:
    """FFMPEG_HWACCEL as the real worker reads it: `process.env.X || false`, then
    `!= false`. Unset, empty or numerically zero means leave `-hwaccel` alone; anything
    else, "false" included (a string), is put in the task's argv."""
    text = value.strip()
    if not text:
        return None
    try:
        return None if float(text) == 0 else value
    except ValueError:
        return value


class ClusterPlexError(StepError):
    """The orchestrator could not be reached or answered wrongly; names the URL."""

    def __init__(self, url: str, what: str) -> None:
        self.url = url
        super().__init__(f"ClusterPlex orchestrator at {url}: {what}")


@dataclass(frozen=True)
class Metrics:
    counters: dict[str, float]
    workers_active: int
    job_posters_active: int
    # worker_name -> {"cpu": .., "tasks": .., "ops": .., "rank": ..}; kept by the
    # orchestrator for every worker that ever reported, gone or not.
    load: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    result: bool
    seconds: float  # request to response: the dispatch step (up to 2 s) plus the work


def _get(base: str, route: str, timeout: float) -> tuple[int, str, str]:
    url = base + route
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ClusterPlexError(base, f"GET {route} not reachable ({reason})") from error


class Orchestrator:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def healthy(self) -> bool:
        """`GET /health` answered 200 `Healthy`: the process is up (workers or not)."""
        status, _, body = _get(self.url, "/health", self.timeout)
        return status == 200 and body.strip() == "Healthy"

    def metrics(self) -> Metrics:
        status, _, body = _get(self.url, "/metrics", self.timeout)
        if status != 200:
            raise ClusterPlexError(self.url, f"/metrics answered HTTP {status}")
        counters: dict[str, float] = {}
        gauges: dict[str, float] = {}
        load: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if family.name in LOAD:
                    worker = sample.labels.get("worker_name", "")
                    load.setdefault(worker, {})[family.name.removeprefix("worker_load_")] = (
                        sample.value
                    )
                elif family.name in COUNTERS and not sample.name.endswith("_created"):
                    counters[family.name] = sample.value
                elif family.type == "gauge":
                    gauges[family.name] = sample.value
        if "workers_active" not in gauges:
            raise ClusterPlexError(self.url, "/metrics has no workers_active: not ClusterPlex?")
        return Metrics(
            counters,
            int(gauges["workers_active"]),
            int(gauges.get("job_posters_active", 0)),
            load,
        )

    def post_job(
        self, payload: dict[str, object] | None = None, timeout: float = 60.0, host: str = "halab"
    ) -> JobResult:
        """One job as the PMS shim posts it: announce, wait for `jobposter.produce`, send
        `jobposter.job.request`, wait for `jobposter.job.response`. The default payload is
        the worker's test hook (5 s of sleep, success); a real transcode's is Plex's argv."""
        client = socketio.Client(reconnection=False)
        produced, answered = threading.Event(), threading.Event()
        answer: dict[str, object] = {}
        closed: list[str] = []

        def on_produce(*_: object) -> None:
            produced.set()

        def on_response(data: dict[str, object]) -> None:
            answer.update(data)
            answered.set()

        def on_disconnect(*_: object) -> None:
            # The orchestrator went (its pod killed, its node lost): no answer will come
            # on this connection, and the job died with it.
            if not answered.is_set():
                closed.append("the orchestrator closed the connection before answering")
                produced.set()
                answered.set()

        client.on("jobposter.produce", on_produce)
        client.on("jobposter.job.response", on_response)
        client.on("disconnect", on_disconnect)
        try:
            client.connect(self.url, transports=["websocket"], wait_timeout=self.timeout)
        except socketio.exceptions.ConnectionError as error:
            raise ClusterPlexError(self.url, f"Socket.IO connection failed ({error})") from error
        try:
            client.emit("jobposter.announce", {"jobPosterId": str(uuid.uuid4()), "host": host})
            if not produced.wait(self.timeout):
                raise ClusterPlexError(self.url, "no jobposter.produce after the announce")
            if closed:
                raise ClusterPlexError(self.url, closed[0])
            started = time.monotonic()
            client.emit(
                "jobposter.job.request", {"type": "transcode", "payload": payload or TEST_PAYLOAD}
            )
            if not answered.wait(timeout):
                raise ClusterPlexError(self.url, f"no jobposter.job.response within {timeout:g} s")
            if closed:
                raise ClusterPlexError(
                    self.url, f"{closed[0]} ({time.monotonic() - started:.1f} s into the job)"
                )
            return JobResult(bool(answer.get("result")), time.monotonic() - started)
        finally:
            client.disconnect()
