"""ffmpeg `-progress` blocks, parsed, and steady-state speed from their deltas.

ffmpeg's own `fps` and `speed` are averages since the start, warm-up included
(reference/notebooks-and-benchmarks.md §4.1). The harness stamps each block with its own
clock when it arrives and measures throughput from differences between blocks after a
warm-up, which is what "holds realtime" means for a stream that has been running a while.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One progress block: where the encode was, and when we saw it."""

    t: float  # seconds since the stream started, by our clock
    frame: int
    out_time_s: float  # media seconds written so far
    fps: float  # ffmpeg's running average (kept for reference, not used for results)
    speed: float  # ffmpeg's running average
    end: bool


class ProgressParser:
    """Feed lines (in any chunking); get a Sample at every `progress=` line."""

    def __init__(self) -> None:
        self._block: dict[str, str] = {}

    def feed(self, line: str, t: float) -> Sample | None:
        line = line.strip()
        if not line or "=" not in line:
            return None
        key, _, value = line.partition("=")
        self._block[key.strip()] = value.strip()
        if key.strip() != "progress":
            return None
        block, self._block = self._block, {}
        return Sample(
            t=t,
            frame=_int(block.get("frame")),
            out_time_s=_out_time(block),
            fps=_float(block.get("fps")),
            speed=_float(block.get("speed", "").rstrip("x")),
            end=block.get("progress") == "end",
        )


def parse_lines(lines: Iterable[tuple[float, str]]) -> list[Sample]:
    parser = ProgressParser()
    return [s for t, line in lines if (s := parser.feed(line, t)) is not None]


def _int(value: str | None) -> int:
    try:
        return int(value) if value not in (None, "", "N/A") else 0
    except ValueError:
        return 0


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "N/A") else 0.0
    except ValueError:
        return 0.0


def _out_time(block: dict[str, str]) -> float:
    # out_time_us is microseconds; out_time_ms is *also* microseconds (an ffmpeg quirk).
    for key in ("out_time_us", "out_time_ms"):
        raw = block.get(key)
        if raw not in (None, "", "N/A"):
            try:
                return max(0.0, int(raw) / 1_000_000)
            except ValueError:
                pass
    return 0.0


@dataclass(frozen=True)
class Steady:
    """Throughput over the measuring window, from the first and last sample inside it."""

    fps: float
    speed: float  # media seconds per wall second
    seconds: float  # wall seconds measured
    frames: int
    samples: int
    min_speed: float  # the slowest interval between consecutive samples in the window

    @property
    def realtime(self) -> bool:
        """Held at least 1.0x over the window and in every stretch of it."""
        return self.speed >= 1.0 and self.min_speed >= 1.0


def steady_state(
    samples: list[Sample], warmup_s: float, window_s: float | None = None, span_s: float = 1.0
) -> Steady | None:
    """Speed and fps from deltas between samples after `warmup_s` (and within the window).

    `min_speed` is the slowest stretch of at least `span_s` seconds: a stream that averages
    1.2x but stalls for a second would stutter, and must not count as holding realtime.
    None when fewer than two samples fall in the window: too short to say anything.
    """
    end = warmup_s + window_s if window_s is not None else float("inf")
    inside = [s for s in samples if warmup_s <= s.t <= end + 1e-9]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    dt = last.t - first.t
    if dt <= 0:
        return None
    interval_speeds = [
        (b.out_time_s - a.out_time_s) / (b.t - a.t) for a, b in _spans(inside, span_s)
    ]
    return Steady(
        fps=(last.frame - first.frame) / dt,
        speed=(last.out_time_s - first.out_time_s) / dt,
        seconds=dt,
        frames=last.frame - first.frame,
        samples=len(inside),
        min_speed=min(interval_speeds)
        if interval_speeds
        else (last.out_time_s - first.out_time_s) / dt,
    )


def _spans(items: list[Sample], span_s: float) -> Iterator[tuple[Sample, Sample]]:
    """Consecutive stretches of at least `span_s` seconds (the last may be longer)."""
    start = items[0]
    for sample in items[1:]:
        if sample.t - start.t >= span_s:
            yield start, sample
            start = sample
