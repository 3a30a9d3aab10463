"""A benchmark run: workers x profiles x encoders, each a capacity search; results as data."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halab import __version__
from halab.errors import InputError, Problem
from halab.transcode.capacity import search
from halab.transcode.detect import detect
from halab.transcode.harness import Cancelled, Probe, measure, new_tag, stream_command
from halab.transcode.media import ensure_sample, probe_media
from halab.transcode.profiles import ENCODERS, PROFILES, SAMPLES, check_encoder, profile
from halab.transcode.runners import Runner, require_ffmpeg

SCHEMA = "halab.bench/v1"
Progress = Callable[[str], None]


@dataclass
class BenchConfig:
    profiles: list[str] = field(default_factory=lambda: ["1080p-h264-to-720p"])
    encoders: list[str] = field(default_factory=lambda: list(ENCODERS))
    warmup_s: float = 3.0
    window_s: float = 10.0
    max_streams: int = 16
    clip_seconds: float = 10.0
    clip_size: tuple[int, int] | None = None  # override the clips' frame size (tests: tiny)
    media_dir: Path = Path("outputs/media")
    # A user's own files in place of a test clip: sample name (e.g. "1080p-hevc") -> path.
    media: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad: list[Problem] = []
        for name in self.profiles:
            try:
                profile(name)
            except InputError as exc:
                bad += exc.problems
        for name in self.encoders:
            try:
                check_encoder(name)
            except InputError as exc:
                bad += exc.problems
        for name, path in self.media.items():
            if name not in SAMPLES:
                bad.append(
                    Problem(
                        f"media {name}",
                        f"unknown clip {name!r}",
                        f"known clips: {', '.join(SAMPLES)}",
                    )
                )
            else:
                try:
                    probe_media(Path(path))  # a corrupt file is refused before any run
                except InputError as exc:
                    bad += exc.problems
        bad += [
            Problem(name, f"{value} is out of range", hint)
            for name, value, ok, hint in (
                ("max_streams", self.max_streams, self.max_streams >= 1, "at least 1"),
                ("window_s", self.window_s, self.window_s > 0, "more than 0 seconds"),
                ("warmup_s", self.warmup_s, self.warmup_s >= 0, "0 seconds or more"),
                ("clip_seconds", self.clip_seconds, self.clip_seconds > 0, "more than 0"),
            )
            if not ok
        ]
        if bad:
            raise InputError("benchmark settings", bad)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profiles": self.profiles,
            "encoders": self.encoders,
            "warmup_s": self.warmup_s,
            "window_s": self.window_s,
            "max_streams": self.max_streams,
            "clip_seconds": self.clip_seconds,
            "clip_size": list(self.clip_size) if self.clip_size else None,
            "media": {k: str(v) for k, v in self.media.items()},
        }


def probe_dict(p: Probe) -> dict[str, Any]:
    return {
        "streams": p.streams,
        "ok": p.ok,
        "cpu_percent": p.cpu_percent,
        "wall_s": p.wall_s,
        "per_stream": [
            {
                "index": m.index,
                "realtime": m.realtime,
                "error": m.error,
                "fps": round(m.steady.fps, 2) if m.steady else None,
                "speed": round(m.steady.speed, 3) if m.steady else None,
                "min_speed": round(m.steady.min_speed, 3) if m.steady else None,
                "frames": m.steady.frames if m.steady else 0,
                "samples": [[round(s.t, 3), s.frame, round(s.out_time_s, 3)] for s in m.samples],
            }
            for m in p.measures
        ],
    }


def run_worker(
    runner: Runner, config: BenchConfig, progress: Progress, cancel: threading.Event | None = None
) -> dict[str, Any]:
    """Every profile x encoder on one worker. A worker that fails is a row, not a crash."""
    entry: dict[str, Any] = {
        "name": runner.name,
        "status": "ok",
        "reason": "",
        "machine": {},
        "encoders": {},
        "results": [],
    }
    try:
        entry["machine"] = runner.facts()
        entry["machine"]["ffmpeg"] = require_ffmpeg(runner)
        statuses = detect(runner, config.encoders)
        entry["encoders"] = {
            n: {"available": s.available, "reason": s.reason} for n, s in statuses.items()
        }
        for pname in config.profiles:
            prof = PROFILES[pname]
            spec = SAMPLES[prof.source]
            if spec.name in config.media:
                clip = Path(config.media[spec.name])
                height = int(str(probe_media(clip)["height"]))
            else:
                if config.clip_size:
                    spec = spec.scaled(*config.clip_size)
                clip = ensure_sample(spec, config.clip_seconds, config.media_dir)
                height = spec.height
            remote = runner.stage(clip)
            for enc in config.encoders:
                row: dict[str, Any] = {"profile": pname, "encoder": enc}
                if not statuses[enc].available:
                    row.update(
                        status="skipped",
                        reason=statuses[enc].reason,
                        max_realtime_streams=None,
                        probes=[],
                    )
                    entry["results"].append(row)
                    progress(f"{runner.name}: {pname} {enc}: skipped ({statuses[enc].reason})")
                    continue
                tag = new_tag()
                argv = stream_command(remote, height, prof, enc, tag)

                def one(
                    n: int,
                    argv: list[str] = argv,
                    tag: str = tag,
                    enc: str = enc,
                    pname: str = pname,
                ) -> Probe:
                    result = measure(runner, argv, n, config.warmup_s, config.window_s, tag, cancel)
                    steady = [m.steady for m in result.measures if m.steady]
                    # Both figures the verdict rests on: a stream that averages 1.01x but
                    # had a second at 0.9x stutters, and is not realtime.
                    low = (
                        f"slowest stream {min(x.speed for x in steady):.2f}x, "
                        f"slowest 1 s stretch {min(x.min_speed for x in steady):.2f}x"
                        if steady
                        else "no steady state"
                    )
                    progress(
                        f"{runner.name}: {pname} {enc}: {n} stream(s) -> "
                        f"{'realtime' if result.ok else 'NOT realtime'} ({low}, "
                        f"CPU {result.cpu_percent:.0f}%)"
                    )
                    return result

                found = search(one, config.max_streams)
                row.update(
                    status="measured",
                    reason="",
                    max_realtime_streams=found.max_streams,
                    capped=found.capped,
                    probes=[probe_dict(p) for p in found.probes],
                )
                entry["results"].append(row)
    except Cancelled:
        raise
    except Exception as exc:  # an unreachable or broken worker: record why, others go on
        entry["status"] = "failed"
        entry["reason"] = f"{type(exc).__name__}: {exc}"
        progress(f"{runner.name}: FAILED: {entry['reason']}")
    return entry


def run_bench(
    runners: list[Runner], config: BenchConfig, progress: Progress = print, together: bool = False
) -> dict[str, Any]:
    """Measure each worker; with `together`, all at once (a cluster-wide run)."""
    started = time.time()
    entries: list[dict[str, Any]] = [{} for _ in runners]
    if together and len(runners) > 1:
        cancel = threading.Event()
        finished = [threading.Event() for _ in runners]

        def work(i: int, runner: Runner) -> None:
            try:
                entries[i] = run_worker(runner, config, progress, cancel)
            except Cancelled:
                entries[i] = {
                    "name": runner.name,
                    "status": "failed",
                    "reason": "interrupted",
                    "results": [],
                }
            finally:
                finished[i].set()

        for i, runner in enumerate(runners):
            threading.Thread(target=work, args=(i, runner), name=f"bench-{runner.name}").start()
        try:
            # Wait on events, not Thread.join: a Ctrl-C that lands inside join() can leave
            # CPython believing the thread has ended (it has not), and we would exit with
            # its ffmpeg processes still running.
            for event in finished:
                while not event.wait(0.1):
                    pass
        except KeyboardInterrupt:
            # Ctrl-C reaches only this thread: tell the workers, and wait until each has
            # stopped the processes it started before letting the interrupt go on.
            cancel.set()
            for event in finished:
                event.wait()
            raise
    else:
        for i, runner in enumerate(runners):
            entries[i] = run_worker(runner, config, progress)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "kit_version": __version__,
        "started": started,
        "finished": time.time(),
        "mode": "together" if together else "one-by-one",
        "config": config.as_dict(),
        "workers": entries,
    }
    doc["cluster"] = cluster_totals(doc)
    return doc


def cluster_totals(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per profile x encoder: total streams over workers, each worker's share, the balance."""
    totals: dict[tuple[str, str], dict[str, int]] = {}  # (profile, encoder) -> worker -> n
    for worker in doc["workers"]:
        for row in worker.get("results", []):
            if row.get("status") == "measured":
                key = (row["profile"], row["encoder"])
                totals.setdefault(key, {})[worker["name"]] = row["max_realtime_streams"]
    out = []
    for (pname, enc), per in totals.items():
        total = sum(per.values())
        shares = {w: (n / total if total else 0.0) for w, n in per.items()}
        low, high = min(per.values(), default=0), max(per.values(), default=0)
        balance = low / high if high else 0.0  # 1.0: every worker holds the same
        out.append(
            {
                "profile": pname,
                "encoder": enc,
                "total_streams": total,
                "per_worker": per,
                "share": shares,
                "balance": round(balance, 3),
            }
        )
    return out
