"""How busy a host's Intel GPU engines were while work ran, read over SSH with
`intel_gpu_top -J` (intel-gpu-tools), the tool Plex and Jellyfin users check hardware
transcodes with.

intel_gpu_top samples the driver's PMU counters every `-s` milliseconds and prints one
JSON object a sample (`{"period": ..., "engines": {"Video/0": {"busy": 37.5, ...}}}`),
inside a JSON array that is never closed when the program is stopped. Engine names carry
an instance suffix in newer releases (`Render/3D/0`) and none in older ones (`Render/3D`):
both are read as their class (`Render/3D`, `Video`, `VideoEnhance`, `Blitter`, `Compute`).
A hardware transcode shows on `Video` (decode and encode); tone mapping and scaling on
`Render/3D` and `VideoEnhance`. A transcode that fell back to software shows on none.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from halab.explain import explain
from halab.streams import Stream

# The engine classes a transcode uses; Blitter only copies, so it says nothing of one.
TRANSCODE_ENGINES = ("Video", "VideoEnhance", "Render/3D", "Compute")
_INSTANCE = re.compile(r"/\d+$")


def engine_class(name: str) -> str:
    """`Video/1` -> `Video`; `Render/3D/0` and `Render/3D` -> `Render/3D`."""
    return _INSTANCE.sub("", name)


def parse_samples(text: str) -> list[dict[str, float]]:
    """Each whole sample intel_gpu_top printed, as engine class -> busy % (the busiest
    instance of that class). A sample cut off when the program was stopped is left out."""
    decoder = json.JSONDecoder()
    samples: list[dict[str, float]] = []
    at, end = 0, len(text)
    while at < end:
        # Skip the array's brackets, the commas between samples and white space.
        while at < end and text[at] in "[],\r\n\t ":
            at += 1
        if at >= end:
            break
        try:
            doc, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            break  # the tail of a sample interrupted mid-way
        if not isinstance(doc, dict) or not isinstance(doc.get("engines"), dict):
            continue
        busy: dict[str, float] = {}
        for name, engine in doc["engines"].items():
            if isinstance(engine, dict) and isinstance(engine.get("busy"), int | float):
                cls = engine_class(str(name))
                busy[cls] = max(busy.get(cls, 0.0), float(engine["busy"]))
        samples.append(busy)
    return samples


@dataclass
class EngineUse:
    """One machine's engines over a watch: the busiest each class got, and how many
    samples say so. `error` is why nothing could be read (the tool missing, no GPU, no
    permission), in the machine's own words."""

    machine: str
    samples: int = 0
    busiest: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def transcoding(self) -> float:
        """The busiest of the engines a transcode uses (0 when none moved)."""
        return max((self.busiest.get(e, 0.0) for e in TRANSCODE_ENGINES), default=0.0)

    def said(self) -> str:
        if self.error:
            return f"{self.machine}: {self.error}"
        if not self.samples:
            return f"{self.machine}: intel_gpu_top printed no sample"
        shown = ", ".join(f"{k} {v:.0f} %" for k, v in sorted(self.busiest.items()))
        return f"{self.machine}: busiest {shown} over {self.samples} samples"


def command(seconds: float, period_ms: int) -> str:
    """intel_gpu_top for at most `seconds`, as root (it reads the PMU), said plainly when
    the host has no such tool."""
    run = f"timeout {max(1, int(seconds))} intel_gpu_top -J -s {period_ms}"
    return (
        "command -v intel_gpu_top >/dev/null 2>&1 || "
        "{ echo 'intel_gpu_top not found: install intel-gpu-tools' >&2; exit 127; }; "
        f'if [ "$(id -u)" -eq 0 ]; then {run}; else sudo -n {run}; fi'
    )


class GpuWatch:
    """intel_gpu_top on each machine for as long as the `with` block lasts (at most
    `limit_s`), over the machines' SSH connections. The block starts once each machine
    has printed its first sample (or failed), and ends once each has printed one more
    after it, so the work is inside whole samples. Each machine's reading is in `.use`
    after it."""

    def __init__(
        self, hosts: Any, machines: list[str], period_ms: int = 500, limit_s: float = 600
    ) -> None:
        self.hosts = hosts
        self.machines = machines
        self.period_ms = period_ms
        self.limit_s = limit_s
        self.use: dict[str, EngineUse] = {}
        self._streams: dict[str, Stream] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def seen(self, machine: str) -> int:
        """Whole samples `machine` has printed so far."""
        stream = self._streams.get(machine)
        if stream is None:
            return 0
        return len(parse_samples("\n".join(line for _, line in list(stream.lines))))

    def _settled(self, machine: str, samples: int) -> bool:
        """More than `samples` printed, or nothing more will come (the tool ended, the
        machine was not reached)."""
        if machine in self.use:
            return True
        stream = self._streams.get(machine)
        if stream is not None and stream.returncode is not None:
            return True
        return self.seen(machine) > samples

    def _wait(self, after: dict[str, int]) -> None:
        # Bounded: SSH and sudo may be slow, but the work must not wait on a watch for long.
        deadline = time.monotonic() + 5 + 3 * self.period_ms / 1000
        while time.monotonic() < deadline:
            if all(self._settled(m, n) for m, n in after.items()):
                return
            time.sleep(min(0.1, self.period_ms / 4000))

    def _watch(self, machine: str) -> None:
        use = EngineUse(machine)
        try:
            host = self.hosts[machine]
            stream = host.start(["sh", "-c", command(self.limit_s, self.period_ms)])
            self._streams[machine] = stream
            self._stop.wait(self.limit_s)
            # Closing the channel ends intel_gpu_top at its next write (its pipe is gone).
            stream.stop()
            stream.join(timeout=3)
            text = "\n".join(line for _, line in stream.lines)
            samples = parse_samples(text)
            # The first sample covers only the moments the tool took to start.
            counted = samples[1:] if len(samples) > 1 else samples
            use.samples = len(counted)
            for sample in counted:
                for name, busy in sample.items():
                    use.busiest[name] = max(use.busiest.get(name, 0.0), busy)
            if not samples:
                tail = " ".join(stream.stderr_tail).strip()
                use.error = tail[-200:] or "intel_gpu_top printed nothing"
        except Exception as exc:  # a machine not reached is a reading, said with why
            use.error = explain(exc)[:200]
        self.use[machine] = use

    def __enter__(self) -> GpuWatch:
        for machine in self.machines:
            thread = threading.Thread(target=self._watch, args=(machine,), daemon=True)
            thread.start()
            self._threads.append(thread)
        self._wait({m: 0 for m in self.machines})
        return self

    def __exit__(self, *exc: object) -> None:
        self._wait({m: self.seen(m) for m in self.machines})
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
