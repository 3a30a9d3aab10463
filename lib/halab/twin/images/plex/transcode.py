"""Transcode sessions of the Plex stand-in, and ClusterPlex's PMS shim (dockermod) that
sends each to the orchestrator.

A session is what Plex's universal transcoder starts: a directory under the transcoder
temp dir (`Transcode/Sessions/plex-transcode-<session>-<uuid>`) in which the transcoder
writes an HLS playlist and its segments. With the dockermod, the transcoder is the shim
(pms/app/transcoder.js, clusterplex.md §1.2): it posts the job to the orchestrator as a
job poster and waits for the answer; TRANSCODE_OPERATING_MODE says what happens when
that fails (both: the local transcoder; remote: the session fails; local: never remote).
The log lines are the shim's.

Where the stand-in differs, and says so: the transcoder's argv is this machine's ffmpeg's
(Plex Transcoder's own options do not exist here), and progress is read from the playlist
the transcode writes into the shared directory rather than posted to Plex's progress URL
through the relay, so no worker needs to reach PMS by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio  # type: ignore[import-untyped]

SEGMENT_S = 2  # HLS segment length the sessions ask for
EXTINF = re.compile(r"#EXTINF:([0-9.]+)")


def log(line: str) -> None:
    print(line, flush=True)


@dataclass
class Session:
    key: str  # the client's session id, as /transcode/sessions names it
    directory: Path
    source: dict[str, Any]  # the media part: file, duration_ms, video_codec, ...
    height: int
    bitrate_kbps: int
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    error: str = ""
    done: bool = False
    task: asyncio.Task[None] | None = None
    process: asyncio.subprocess.Process | None = None
    last_ping: float = field(default_factory=time.monotonic)

    @property
    def playlist(self) -> Path:
        return self.directory / "index.m3u8"

    def offset_s(self) -> float:
        """Media seconds transcoded so far: the segments the playlist lists."""
        try:
            text = self.playlist.read_text()
        except OSError:
            return 0.0
        return sum(float(v) for v in EXTINF.findall(text))

    def complete(self) -> bool:
        try:
            return "#EXT-X-ENDLIST" in self.playlist.read_text()
        except OSError:
            return False

    def attributes(self) -> dict[str, str]:
        duration_ms = int(self.source.get("duration_ms") or 0)
        offset = self.offset_s()
        wall = max(time.monotonic() - self.started, 1e-3)
        progress = min(100.0, 100.0 * offset * 1000 / duration_ms) if duration_ms else 0.0
        complete = self.complete()
        remaining = (
            0 if complete else max(0, int((duration_ms / 1000 - offset) / max(offset / wall, 1e-3)))
        )
        return {
            "key": f"/transcode/sessions/{self.key}",
            "throttled": "0",
            "complete": "1" if complete else "0",
            "progress": f"{progress:.1f}",
            "size": str(sum(p.stat().st_size for p in self.directory.glob("*.ts"))),
            "speed": f"{offset / wall:.1f}",
            "error": "1" if self.error else "0",
            "duration": str(duration_ms),
            "remaining": str(remaining),
            "context": "streaming",
            "sourceVideoCodec": str(self.source.get("video_codec", "")),
            "sourceAudioCodec": str(self.source.get("audio_codec", "")),
            "videoDecision": "transcode",
            "audioDecision": "transcode",
            "protocol": "hls",
            "container": "mpegts",
            "videoCodec": "h264",
            "audioCodec": "aac",
            "audioChannels": "2",
            "height": str(self.height),
            "transcodeHwRequested": "0",
            "transcodeHwFullPipeline": "0",
            "timeStamp": f"{self.started_at:.4f}",
            "maxOffsetAvailable": f"{offset:.3f}",
            "minOffsetAvailable": "0.000",
        }


def transcoder_args(session: Session) -> list[str]:
    """The transcoder's argv (without the program), run in the session's directory."""
    return [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(session.source["file"]),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-vf",
        f"scale=-2:{session.height}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        f"{session.bitrate_kbps}k",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-f",
        "hls",
        "-hls_time",
        str(SEGMENT_S),
        "-hls_list_size",
        "0",
        "-hls_segment_filename",
        "%05d.ts",
        # The worker's log carries ffmpeg's progress, one key=value a line (speed=, fps=).
        "-progress",
        "pipe:1",
        "-nostats",
        "-y",
        "index.m3u8",
    ]


class Transcoder:
    """Runs sessions as Plex with (or without) ClusterPlex's PMS dockermod would."""

    def __init__(self, env: dict[str, str], dockermod: bool) -> None:
        self.env = env
        self.dockermod = dockermod
        self.mode = env.get("TRANSCODE_OPERATING_MODE", "both")
        self.orchestrator = env.get("ORCHESTRATOR_URL", "http://localhost:3500")
        self.ffmpeg = shutil.which("ffmpeg") or "ffmpeg"

    def start(self, session: Session) -> None:
        session.directory.mkdir(parents=True, exist_ok=True)
        session.task = asyncio.create_task(self._run(session))

    async def stop(self, session: Session) -> None:
        if session.process is not None and session.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                session.process.terminate()
        if session.task is not None and not session.task.done():
            session.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await session.task
        shutil.rmtree(session.directory, ignore_errors=True)

    async def _run(self, session: Session) -> None:
        args = transcoder_args(session)
        try:
            if not self.dockermod or self.mode == "local":
                await self._local(session, args)
            else:
                problem = self._shim_config_problem()
                if problem:
                    log(problem)
                    session.error = problem
                    return
                if await self._remote(session, args):
                    log("Remote Transcoding was successful")
                elif self.mode == "both":
                    log("Distributed transcoder failed, calling local")
                    await self._local(session, args)
                    log("Completed local transcode")
                else:
                    log(
                        "Error transcoding and local transcode is disabled: "
                        f"TRANSCODE_OPERATING_MODE={self.mode}"
                    )
                    session.error = "remote transcode failed"
        finally:
            session.done = True

    def _shim_config_problem(self) -> str:
        relay = self.env.get("LOCAL_RELAY_ENABLED", "1") == "1"
        service, ip = self.env.get("PMS_SERVICE", ""), self.env.get("PMS_IP", "")
        if service and not relay:
            return "PMS_SERVICE is only allowed with LOCAL_RELAY_ENABLED=1: the shim exits"
        if not service and not ip:
            return "neither PMS_SERVICE nor PMS_IP is set: the shim exits 1"
        return ""

    async def _local(self, session: Session, args: list[str]) -> None:
        process = await asyncio.create_subprocess_exec(
            self.ffmpeg,
            *args,
            cwd=session.directory,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        session.process = process
        _, err = await process.communicate()
        if process.returncode != 0:
            session.error = (
                err.decode(errors="replace").strip()[-300:] or f"exit {process.returncode}"
            )
            log(f"local transcode failed: {session.error}")

    async def _remote(self, session: Session, args: list[str]) -> bool:
        """One job through the orchestrator, as the shim's job poster sends it."""
        client = socketio.AsyncClient(reconnection=False)
        produced, answered = asyncio.Event(), asyncio.Event()
        answer: dict[str, Any] = {}

        async def on_connect() -> None:
            log("JobPoster connected, announcing")
            await client.emit(
                "jobposter.announce",
                {"jobPosterId": str(uuid.uuid4()), "host": self.env.get("HOSTNAME", "")},
            )

        async def on_produce(*_: Any) -> None:
            log("Orchestrator requesting pending work")
            produced.set()

        async def on_response(data: dict[str, Any]) -> None:
            answer.update(data or {})
            answered.set()

        client.on("connect", on_connect)
        client.on("jobposter.produce", on_produce)
        client.on("jobposter.job.response", on_response)
        try:
            log(f"Sending request to orchestrator on: {self.orchestrator}")
            await client.connect(self.orchestrator, transports=["websocket"], wait_timeout=5)
            await asyncio.wait_for(produced.wait(), 10)
            payload = {
                "cwd": str(session.directory),
                "args": [a.replace("aac_lc", "aac") for a in args],
                "env": {k: v for k, v in self.env.items() if k in ("PATH", "LANG", "TZ")},
            }
            await client.emit("jobposter.job.request", {"type": "transcode", "payload": payload})
            # The shim has no timeout of its own; the session's stop ends the wait.
            await answered.wait()
        except (socketio.exceptions.ConnectionError, TimeoutError) as exc:
            log(f"Orchestrator connection failed: {exc}")
            return False
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
        return bool(answer.get("result"))


def session_directory(temp_dir: Path, key: str) -> Path:
    return temp_dir / "Transcode" / "Sessions" / f"plex-transcode-{key}-{uuid.uuid4()}"
