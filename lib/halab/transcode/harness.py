"""Run N streams at once on a worker and measure each one's steady state.

The same code measures every kind of worker; only the runner differs.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from halab.streams import Stream
from halab.transcode.profiles import Profile, encoder_arguments
from halab.transcode.progress import Sample, Steady, parse_lines, steady_state
from halab.transcode.runners import Runner

PROGRESS_PERIOD_S = 0.25


def new_tag() -> str:
    return f"halab-bench-{uuid.uuid4().hex[:12]}"


def stream_command(
    source: str, source_height: int, profile: Profile, encoder: str, tag: str
) -> list[str]:
    """One transcode that loops its input forever, writes nothing, and reports progress."""
    before, after = encoder_arguments(encoder, profile, source_height)
    return [
        "ffmpeg",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-stats_period",
        str(PROGRESS_PERIOD_S),
        *before,
        "-stream_loop",
        "-1",
        "-i",
        source,
        "-t",
        "36000",
        *after,
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-b:a",
        "128k",
        "-metadata",
        f"comment={tag}",
        "-f",
        "null",
        "-progress",
        "pipe:1",
        "-",
    ]


@dataclass
class StreamMeasure:
    index: int
    steady: Steady | None
    samples: list[Sample]
    error: str = ""

    @property
    def realtime(self) -> bool:
        return self.steady is not None and self.steady.realtime and not self.error


@dataclass
class Probe:
    streams: int
    measures: list[StreamMeasure]
    cpu_percent: float
    wall_s: float

    @property
    def ok(self) -> bool:
        return all(m.realtime for m in self.measures)


class Cancelled(Exception):
    """The run was interrupted; every process it started has been stopped."""


def measure(
    runner: Runner,
    argv: list[str],
    streams: int,
    warmup_s: float,
    window_s: float,
    tag: str,
    cancel: threading.Event | None = None,
) -> Probe:
    """Start `streams` copies of `argv` together, measure, and always stop every one.

    `cancel` lets another thread (the one that got Ctrl-C) stop a probe early.
    """
    started: list[Stream] = []
    begin = time.monotonic()
    busy0, total0 = runner.cpu_jiffies()
    try:
        for _ in range(streams):
            started.append(runner.start(argv))
        deadline = begin + warmup_s + window_s + PROGRESS_PERIOD_S * 2
        while time.monotonic() < deadline:
            if any(s.returncode not in (None, 0) for s in started):
                break  # a stream died: no point waiting out the window
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{runner.name}: interrupted")
            time.sleep(0.05)
        busy1, total1 = runner.cpu_jiffies()
    finally:
        for stream in started:
            stream.stop()
        runner.kill_tagged(tag)
        for stream in started:
            stream.join(2.0)
    cpu = 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    measures = []
    for i, stream in enumerate(started):
        samples = parse_lines(stream.lines)
        # Each stream's clock starts when it was launched; the window is common to all.
        offset = stream.started - begin
        shifted = [
            Sample(s.t + offset, s.frame, s.out_time_s, s.fps, s.speed, s.end) for s in samples
        ]
        steady = steady_state(shifted, warmup_s, window_s)
        error = ""
        if steady is None:
            tail = " | ".join(list(stream.stderr_tail)[-3:])
            error = f"no progress in the window (exit {stream.returncode}): {tail}".strip()
        measures.append(StreamMeasure(i, steady, shifted, error))
    return Probe(streams, measures, round(cpu, 1), round(time.monotonic() - begin, 2))
