"""ClusterPlex: the twin's orchestrator and worker stand-ins as real processes, driven over
the real Socket.IO protocol by halab.clusterplex and by scripted peers. What they must do
is what the real v1.4.15 programs did on this machine (reference/clusterplex-real.md)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from clusterplex_peers import HOST, TRANSCODER, Poster, Program, ScriptedWorker, free_port
from halab.clusterplex import ClusterPlexError, Orchestrator

from twinlab import eventually

Start = Callable[..., tuple[Program, str]]


def _normalised(text: str, start: str) -> list[str]:
    """The log from the first line holding `start`, ids and socket ids made placeholders."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    out = []
    for line in lines[first:]:
        line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", line)
        out.append(re.sub(r"(connected: |socket )\S+$", r"\1<sid>", line))
    return out


def _workers_active(url: str, count: int, timeout: float = 20.0) -> None:
    eventually(
        lambda: Orchestrator(url).metrics().workers_active == count,
        timeout,
        f"workers_active == {count}",
        every=0.05,
    )


def test_health_metrics_and_start_lines_are_the_real_ones(start_orchestrator: Start) -> None:
    program, url = start_orchestrator()
    assert program.lines()[1:7] == [
        "Initializing orchestrator",
        "Using Worker Selection Strategy: LOAD_RANK",
        "Stream-Splitting: DISABLED",
        "Setting up websockets",
        "Ready",
        f"Server listening on port {url.rsplit(':', 1)[1]}",
    ]
    assert Orchestrator(url).healthy()
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics") as answer:
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = answer.read().decode()
    # Bare counter names (no _total), one blank line between families.
    assert "jobs_posted 0\n\n# HELP jobs_completed Jobs Completed\n" in text
    assert "_total" not in text
    # No worker has reported: the labelled families are their two comment lines.
    assert text.endswith(
        "# HELP worker_load_rank Worker Load - Rank\n# TYPE worker_load_rank gauge\n"
    )
    metrics = Orchestrator(url).metrics()
    assert (metrics.workers_active, metrics.job_posters_active, metrics.load) == (0, 0, {})
    assert metrics.counters == dict.fromkeys(
        ("jobs_posted", "jobs_completed", "jobs_succeeded", "jobs_failed", "jobs_killed"), 0
    )


def test_an_unreachable_orchestrator_is_an_error_naming_it() -> None:
    url = f"http://{HOST}:{free_port(HOST)}"
    with pytest.raises(ClusterPlexError, match=f"at {url}: GET /metrics not reachable .*refused"):
        Orchestrator(url).metrics()


def test_a_worker_registers_reports_and_runs_the_test_payload(
    start_orchestrator: Start, start_worker: Callable[..., Program]
) -> None:
    orchestrator, url = start_orchestrator()
    worker = start_worker(url, "k3s-w3-worker")
    line = orchestrator.wait_line("Registered new worker: ")
    worker_id = worker.wait_line("Initializing Worker ").split()[-1].split("|")[0]
    assert line == f"Registered new worker: {worker_id}|k3s-w3-worker"
    assert int(worker.wait_line("Computed CPU ops => ").split()[-1]) > 0
    load = eventually(lambda: Orchestrator(url).metrics().load, 20, "the worker's stats", 0.05)
    assert set(load) == {"k3s-w3-worker"}
    assert load["k3s-w3-worker"]["ops"] > 0 and 0 <= load["k3s-w3-worker"]["cpu"] <= 100
    job = Orchestrator(url).post_job(timeout=30)
    assert job.result is True
    assert job.seconds >= 5  # the hook sleeps 5 s; dispatch adds up to one 2 s step
    worker.wait_line("Completed transcode")
    assert "Starting test of waiting for 5 seconds" in worker.text()
    assert f"Forwarding work request to {worker_id}|k3s-w3-worker" in orchestrator.text()
    orchestrator.wait_line("Removing job-poster ")
    assert _normalised(orchestrator.text(), "Registered new job poster")[:16] == [
        "Registered new job poster: <id>|halab",
        "Creating single task for the job",
        "Queueing job <id>",
        "Queueing task <id>",
        "Running task <id>",
        "Forwarding work request to <id>|k3s-w3-worker",
        "Received update for task <id>, status: received",
        "Received update for task <id>, status: inprogress",
        "Received update for task <id>, status: done",
        "Task <id> complete, result: true",
        "Task <id> complete",
        "Job <id> complete, tasks: 1, result: true",
        "JobPoster notified",
        "Removing job <id>",
        "Job <id> complete",
        "Client disconnected: <sid>",
    ]
    counters = Orchestrator(url).metrics().counters
    assert (counters["jobs_posted"], counters["jobs_succeeded"], counters["jobs_completed"]) == (
        1,
        1,
        1,
    )


def test_a_worker_told_its_benchmark_length_never_starts(
    start_orchestrator: Start, start_worker: Callable[..., Program]
) -> None:
    """The real worker adds STAT_CPU_OPS_DURATION, a string from the environment, to a
    number: the benchmark's deadline becomes a concatenation far in the future, so it never
    finishes, never listens and never registers. Found by running the real one."""
    orchestrator, url = start_orchestrator()
    worker = start_worker(url, "w-stuck", STAT_CPU_OPS_DURATION="500")
    worker.wait_line("FFMPEG_HWACCEL => ")
    with pytest.raises(AssertionError, match="not within"):
        _workers_active(url, 1, timeout=5)
    assert "Computed CPU ops" not in worker.text()
    assert "Registering worker" not in orchestrator.text()


def test_no_worker_fails_the_job_at_once_and_counts_it(start_orchestrator: Start) -> None:
    orchestrator, url = start_orchestrator()
    job = Orchestrator(url).post_job(timeout=10)
    assert job.result is False and job.seconds <= 5
    assert "No worker available at the moment" in orchestrator.text()
    counters = Orchestrator(url).metrics().counters
    assert (counters["jobs_failed"], counters["jobs_completed"]) == (1, 1)


def _chosen(url: str, workers: list[ScriptedWorker], jobs: int = 1) -> list[str]:
    """Post `jobs` jobs at once; the hosts the orchestrator sent them to."""
    for w in workers:
        w.got.clear()
    before = sum(len(w.requests) for w in workers)
    poster = Poster(url)
    try:
        for _ in range(jobs):
            poster.request({"cwd": "/", "args": ["testpayload"], "env": {}})
        eventually(
            lambda: sum(len(w.requests) for w in workers) - before >= jobs,
            10,
            f"{jobs} task request(s)",
            every=0.05,
        )
    finally:
        poster.close()
    return [w.host for w in workers if w.got.is_set()]


def _scripted(url: str, *stats: tuple[float, int, int] | None) -> list[ScriptedWorker]:
    workers = [ScriptedWorker(url, f"w{i}") for i in range(len(stats))]
    _workers_active(url, len(workers))
    for worker, reported in zip(workers, stats, strict=True):
        if reported is not None:
            worker.report(*reported)
    reported_hosts = {w.host for w, s in zip(workers, stats, strict=True) if s is not None}
    eventually(
        lambda: set(Orchestrator(url).metrics().load) == reported_hosts,
        20,
        "the scripted stats",
        every=0.05,
    )
    return workers


@pytest.mark.parametrize(
    ("strategy", "stats", "expected"),
    [
        # LOAD_RANK: highest int(ops * (1 - cpu/100)); 1000*0.5=500 beats 500*0.9=450.
        ("LOAD_RANK", [(50.0, 0, 1000), (10.0, 0, 500)], "w0"),
        # A tie goes to the later-registered worker.
        ("LOAD_RANK", [(50.0, 0, 1000), (50.0, 0, 1000)], "w1"),
        # A worker that has not reported counts as rank 0: the worst choice.
        ("LOAD_RANK", [(90.0, 3, 100), None], "w0"),
        ("LOAD_CPU", [(30.0, 0, 1000), (20.0, 0, 1000)], "w1"),
        # ...and as cpu 0 for LOAD_CPU: the best.
        ("LOAD_CPU", [(5.0, 0, 1000), None], "w1"),
        ("LOAD_CPU", [(20.0, 0, 9), (20.0, 0, 1)], "w1"),
        ("LOAD_TASKS", [(0.0, 1, 1000), (99.0, 2, 1000)], "w0"),
        ("LOAD_TASKS", [(0.0, 2, 1000), (0.0, 2, 1)], "w1"),
    ],
)
def test_each_strategy_picks_as_the_real_one_does(
    start_orchestrator: Start,
    strategy: str,
    stats: list[tuple[float, int, int] | None],
    expected: str,
) -> None:
    orchestrator, url = start_orchestrator(strategy)
    assert f"Using Worker Selection Strategy: {strategy}" in orchestrator.text()
    workers = _scripted(url, *stats)
    try:
        assert _chosen(url, workers) == [expected]
    finally:
        for w in workers:
            w.close()


def test_round_robin_takes_the_workers_in_turn(start_orchestrator: Start) -> None:
    _, url = start_orchestrator("RR")
    workers = _scripted(url, (99.0, 9, 1), (0.0, 0, 1000))
    try:
        order = [_chosen(url, workers)[0] for _ in range(3)]
        assert order in (["w0", "w1", "w0"], ["w1", "w0", "w1"])
    finally:
        for w in workers:
            w.close()


def test_a_burst_in_one_step_lands_on_one_worker(start_orchestrator: Start) -> None:
    """Stats only change when workers report, so three jobs in one 2 s step all go to the
    best worker of that moment: what a concurrency benchmark runs into."""
    _, url = start_orchestrator("LOAD_RANK")
    workers = _scripted(url, (10.0, 0, 1000), (20.0, 0, 1000))
    try:
        _chosen(url, workers, jobs=3)
        assert [len(w.requests) for w in workers] == [3, 0]
    finally:
        for w in workers:
            w.close()


def test_a_worker_lost_mid_task_fails_the_job(
    start_orchestrator: Start, start_worker: Callable[..., Program]
) -> None:
    orchestrator, url = start_orchestrator()
    worker = start_worker(url, "unraid-worker")
    eventually(
        lambda: "unraid-worker" in Orchestrator(url).metrics().load,
        20,
        "the worker's stats",
        every=0.05,
    )
    answers: list[bool] = []
    posting = threading.Thread(
        target=lambda: answers.append(Orchestrator(url).post_job(timeout=30).result)
    )
    posting.start()
    worker.wait_line("Starting test of waiting for 5 seconds")
    worker.stop(signal.SIGKILL)  # the host's plug, not a shutdown
    posting.join(40)
    assert answers == [False]
    orchestrator.wait_line("Unregistering worker at socket")
    assert "Killing pending tasks for worker: " in orchestrator.text()
    assert Orchestrator(url).metrics().workers_active == 0
    # The series of a worker that left stay, as prom-client's do.
    assert "unraid-worker" in Orchestrator(url).metrics().load


def test_an_orchestrator_lost_mid_job_is_said_at_once_not_at_the_timeout(
    start_orchestrator: Start, start_worker: Callable[..., Program]
) -> None:
    """Its process killed (a pod gone with its node): the poster's connection closes, and
    the job is said lost then, not when the poster's own timeout runs out."""
    orchestrator, url = start_orchestrator()
    worker = start_worker(url, "unraid-worker")
    _workers_active(url, 1)
    said: list[Exception] = []

    def post() -> None:
        try:
            Orchestrator(url).post_job(timeout=600)
        except ClusterPlexError as exc:
            said.append(exc)

    posting = threading.Thread(target=post)
    posting.start()
    worker.wait_line("Starting test of waiting for 5 seconds")
    orchestrator.stop(signal.SIGKILL)
    posting.join(60)
    assert not posting.is_alive(), "still waiting for an orchestrator that is gone"
    assert len(said) == 1 and "closed the connection before answering" in str(said[0]), said
    assert "into the job" in str(said[0])


def test_a_poster_that_goes_away_has_its_task_killed(
    start_orchestrator: Start, start_worker: Callable[..., Program]
) -> None:
    orchestrator, url = start_orchestrator()
    worker = start_worker(url, "k3s-w3-worker")
    _workers_active(url, 1)
    poster = Poster(url)
    poster.request({"cwd": "/", "args": ["testpayload"], "env": {}})
    worker.wait_line("Starting test of waiting for 5 seconds")
    poster.close()  # Plex stopped the playback: the shim is gone
    worker.wait_line("Killing child processes for task ")
    orchestrator.wait_line(" killed")
    assert "Telling worker " in orchestrator.text()
    counters = eventually(
        lambda: (c := Orchestrator(url).metrics().counters)["jobs_killed"] and c,
        20,
        "jobs_killed",
        every=0.05,
    )
    assert (counters["jobs_killed"], counters["jobs_completed"]) == (1, 1)
    # The worker still reports the killed child's end; the orchestrator has forgotten it.
    worker.wait_line("Transcoder exit: child process exited with code null")
    orchestrator.wait_line("Discarding task update for ")


def test_a_job_from_a_socket_that_never_announced_ends_the_real_one_too(
    start_orchestrator: Start,
) -> None:
    import socketio

    orchestrator, url = start_orchestrator()
    client = socketio.Client(reconnection=False)
    client.connect(url, transports=["websocket"], wait_timeout=5)
    client.emit("jobposter.job.request", {"type": "transcode", "payload": {}})
    assert orchestrator.proc.wait(10) == 1
    assert "TypeError: Cannot read properties of null (reading 'id')" in orchestrator.text()
    client.disconnect()


def test_an_unknown_strategy_ends_it_at_the_first_dispatch(start_orchestrator: Start) -> None:
    orchestrator, url = start_orchestrator("FASTEST")
    workers = _scripted(url, (0.0, 0, 1))
    poster = Poster(url)
    poster.request({"cwd": "/", "args": ["testpayload"], "env": {}})
    assert orchestrator.proc.wait(10) == 1
    assert "TypeError: this.workerSelectionStrategy is not a function" in orchestrator.text()
    workers[0].close()
    poster.close()


FFMPEG = shutil.which("ffmpeg")


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make setup installs it)")
def test_a_real_task_runs_the_transcoder_in_the_task_cwd(
    start_orchestrator: Start, start_worker: Callable[..., Program], tmp_path: Path
) -> None:
    _, url = start_orchestrator()
    start_worker(url, "w-soft", **TRANSCODER)
    _workers_active(url, 1)
    session = tmp_path / "transcode" / "session-1"
    session.mkdir(parents=True)
    args = [
        "-nostdin", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
        "-c:v", "libx264", "-preset", "ultrafast", "-f", "segment", "-segment_time", "1",
        "media-%05d.ts",
    ]  # fmt: skip
    job = Orchestrator(url).post_job({"cwd": str(session), "args": args, "env": {}}, timeout=60)
    assert job.result is True
    segment = session / "media-00000.ts"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", segment],
        capture_output=True,
        text=True,
        check=True,
    )
    # mpegts lists the stream under its program too: every line names H.264.
    assert {line for line in probe.stdout.split() if line} == {"h264"}


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make setup installs it)")
def test_a_missing_transcode_dir_fails_as_the_real_worker_says(
    start_orchestrator: Start, start_worker: Callable[..., Program], tmp_path: Path
) -> None:
    _, url = start_orchestrator()
    worker = start_worker(url, "w-noshare", **TRANSCODER)
    _workers_active(url, 1)
    cwd = "/config/Library/Application Support/Plex Media Server/Cache/Transcode/Sessions/x"
    job = Orchestrator(url).post_job({"cwd": cwd, "args": ["-version"], "env": {}}, timeout=20)
    assert job.result is False
    assert (
        "CWD path doesn't seem to exist. Plex should have created this path before-hand, "
        f'so you may have an issue with your shares => "{cwd}"'
    ) in worker.text()
    assert f"Error: spawn {FFMPEG} ENOENT" in worker.text()


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make setup installs it)")
def test_vaapi_without_a_driver_fails_the_task(
    start_orchestrator: Start, start_worker: Callable[..., Program], tmp_path: Path
) -> None:
    """FFMPEG_HWACCEL=vaapi on a machine with no GPU driver: ffmpeg cannot open a VA-API
    device, exits non-zero, and the job's answer is false (PMS then transcodes locally in
    mode both)."""
    _, url = start_orchestrator()
    worker = start_worker(url, "w-vaapi", FFMPEG_HWACCEL="vaapi", **TRANSCODER)
    _workers_active(url, 1)
    args = [
        "-nostdin", "-f", "lavfi", "-i", "testsrc=duration=1:size=320x240:rate=25",
        "-c:v", "libx264", "-f", "null", "-",
    ]  # fmt: skip
    job = Orchestrator(url).post_job({"cwd": str(tmp_path), "args": args, "env": {}}, timeout=30)
    assert job.result is False
    assert '"-hwaccel", "vaapi"' not in worker.text()  # the task's argv as received...
    assert "Transcoder exit: child process exited with code " in worker.text()
    assert "vaapi" in worker.text().lower()  # ...and ffmpeg saying what it could not open
