"""Where ffmpeg runs: this machine, or a host over SSH. The harness is the same for both.

A runner starts commands and hands back a `Stream` whose stdout lines arrive, stamped,
in a background thread. Every command a benchmark starts carries a tag in its argv
(`-metadata comment=<tag>`), so `kill_tagged` can stop exactly those processes, locally
or remotely, when a run ends, fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol

from halab.errors import StepError
from halab.streams import Completed, Stream, pump


class TranscodeError(StepError):
    """A benchmark step could not run (no ffmpeg, an unreadable file)."""


class Runner(Protocol):
    name: str

    def run(self, argv: list[str], timeout: float = 60.0) -> Completed: ...

    def start(self, argv: list[str]) -> Stream: ...

    def kill_tagged(self, tag: str) -> None: ...

    def stage(self, local: Path) -> str: ...

    def cpu_jiffies(self) -> tuple[int, int]: ...

    def facts(self) -> dict[str, object]: ...

    def close(self) -> None: ...


def _parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from the first line of /proc/stat."""
    fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class LocalRunner:
    """Runs on this machine; each stream in its own process group, so a kill takes all."""

    def __init__(self, name: str = "local", workdir: Path | None = None) -> None:
        self.name = name
        self.workdir = workdir

    def run(self, argv: list[str], timeout: float = 60.0) -> Completed:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise TranscodeError(f"{self.name}: {argv[0]} not found ({exc})") from exc
        return Completed(done.returncode, done.stdout, done.stderr)

    def start(self, argv: list[str]) -> Stream:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        stream = Stream(started=time.monotonic())

        def out(line: str) -> None:
            stream.lines.append((time.monotonic() - stream.started, line))

        def stop() -> None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stream.returncode = proc.returncode

        assert proc.stdout is not None and proc.stderr is not None
        stream._stop = stop
        stream._threads = [
            threading.Thread(target=pump, args=(proc.stdout.readline, out), daemon=True),
            threading.Thread(
                target=pump, args=(proc.stderr.readline, stream.stderr_tail.append), daemon=True
            ),
        ]
        for thread in stream._threads:
            thread.start()
        threading.Thread(
            target=lambda: setattr(stream, "returncode", proc.wait()), daemon=True
        ).start()
        return stream

    def kill_tagged(self, tag: str) -> None:
        # Belt and braces: streams were killed by process group already.
        subprocess.run(["pkill", "-KILL", "-f", tag], capture_output=True, check=False)

    def stage(self, local: Path) -> str:
        return str(local)

    def cpu_jiffies(self) -> tuple[int, int]:
        return _parse_proc_stat(Path("/proc/stat").read_text())

    def close(self) -> None:
        pass

    def facts(self) -> dict[str, object]:
        return {
            "host": platform.node(),
            "arch": platform.machine(),
            "cores": os.cpu_count(),
            "cpu_model": _cpu_model(Path("/proc/cpuinfo").read_text()),
            "dri": sorted(os.listdir("/dev/dri")) if os.path.isdir("/dev/dri") else [],
            **parse_gpus(
                subprocess.run(["sh", "-c", GPU_SCRIPT], capture_output=True, text=True).stdout
            ),
        }


# GPUs as the kernel lists them: card, PCI vendor and device ids, the bound driver, and
# the kernel release (the version of in-tree drivers such as i915 and xe).
GPU_SCRIPT = (
    'echo "kernel $(uname -r)"; for c in /sys/class/drm/card[0-9]*; do '
    '[ -e "$c/device/vendor" ] || continue; '
    'echo "gpu $(basename "$c") $(cat "$c/device/vendor") $(cat "$c/device/device") '
    '$(basename "$(readlink "$c/device/driver")")"; done'
)
GPU_VENDORS = {"0x8086": "Intel", "0x10de": "NVIDIA", "0x1002": "AMD"}


def parse_gpus(text: str) -> dict[str, object]:
    """{"kernel": release, "gpus": [{card, vendor, pci_id, driver}]} from GPU_SCRIPT."""
    kernel, gpus = "", []
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["kernel"] and len(parts) > 1:
            kernel = parts[1]
        elif parts[:1] == ["gpu"] and len(parts) >= 5:
            _, card, vendor, device, driver = parts[:5]
            gpus.append(
                {
                    "card": card,
                    "vendor": GPU_VENDORS.get(vendor, vendor),
                    "pci_id": f"{vendor[2:]}:{device[2:]}",
                    "driver": driver,
                }
            )
    return {"kernel": kernel, "gpus": gpus}


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return "unknown"


def require_ffmpeg(runner: Runner) -> str:
    """ffmpeg's version and build configuration on the worker, or an error naming the
    package to install."""
    try:
        done = runner.run(["ffmpeg", "-hide_banner", "-version"], timeout=30)
    except TranscodeError:
        done = Completed(127, "", "")
    if done.returncode != 0 or not done.stdout.startswith("ffmpeg version"):
        raise TranscodeError(
            f"{runner.name}: ffmpeg is not installed; install it with "
            "`apt-get install ffmpeg` (Debian/Ubuntu) or use a worker image that has it"
        )
    lines = done.stdout.splitlines()
    config = next((line for line in lines if line.startswith("configuration:")), "")
    return lines[0] + (f"\n{config}" if config else "")


def have_local_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


class SshRunner:
    """Runs on a host reached over SSH; the clips are uploaded once (named by hash)."""

    def __init__(self, host: SshHostLike, media_dir: str = "/tmp/halab-media") -> None:
        self.host = host
        self.name = host.name
        self.media_dir = media_dir

    def run(self, argv: list[str], timeout: float = 60.0) -> Completed:
        return self.host.run(argv, timeout)

    def start(self, argv: list[str]) -> Stream:
        return self.host.start(argv)

    def kill_tagged(self, tag: str) -> None:
        # Kill, then look again until nothing carries the tag: a process the remote shell
        # was still starting must not outlive the run. "[h]alab..." matches the tag but
        # not this command line itself, so the shell running it is never a match.
        pattern = shlex.quote(f"[{tag[0]}]{tag[1:]}")
        script = (
            f"for i in $(seq 100); do pkill -KILL -f {pattern}; "
            f"pgrep -f {pattern} >/dev/null || exit 0; sleep 0.1; done; exit 1"
        )
        done = self.host.run(script, timeout=30)
        if done.returncode != 0:
            raise TranscodeError(f"{self.name}: processes tagged {tag} would not die")

    def stage(self, local: Path) -> str:
        remote = f"{self.media_dir}/{local.name}"
        self.host.upload(local, remote, skip_same_size=True)
        return remote

    def cpu_jiffies(self) -> tuple[int, int]:
        return _parse_proc_stat(self.host.run(["head", "-n1", "/proc/stat"], timeout=30).stdout)

    def close(self) -> None:
        self.host.close()

    def facts(self) -> dict[str, object]:
        out = self.host.run(
            "uname -n; uname -m; nproc; cat /proc/cpuinfo; echo @@; ls /dev/dri 2>/dev/null; "
            f"echo @@; {GPU_SCRIPT}",
            timeout=30,
        ).stdout
        head, _, rest = out.partition("@@")
        dri, _, gpus = rest.partition("@@")
        lines = head.splitlines()
        return {
            "host": lines[0] if lines else "",
            "arch": lines[1] if len(lines) > 1 else "",
            "cores": int(lines[2]) if len(lines) > 2 and lines[2].isdigit() else None,
            "cpu_model": _cpu_model(head),
            "dri": dri.split(),
            **parse_gpus(gpus),
        }


class SshHostLike(Protocol):
    name: str

    def run(self, argv: list[str] | str, timeout: float = 60.0) -> Completed: ...

    def start(self, argv: list[str]) -> Stream: ...

    def upload(
        self, local: Path, remote: str, mode: int | None = None, skip_same_size: bool = False
    ) -> None: ...

    def close(self) -> None: ...
