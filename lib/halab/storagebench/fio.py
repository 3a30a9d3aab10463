"""What fio runs in each Job, and what its JSON output says.

Four jobs one after another on one file: sequential write then read (1 MiB blocks), then
4 KiB random writes and reads for a fixed time. Every subject is measured the same way:
buffered I/O (`psync`) with the page cache dropped for the file before each job
(`invalidate=1`) and the writes flushed before they count (`end_fsync`, `fsync_on_close`),
because O_DIRECT is not available on every FUSE and NFS mount and a baseline measured
otherwise would not be a baseline. Random reads repeat over a file that may fit in the
page cache: on a local disk they then come from memory (a ratio to local that looks bad
for the network storage is partly that).

The Job's image is Alpine; a pod without fio installs it (`apk add fio`), as kubestr's
own image has it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

IMAGE = "alpine:3.20"
JOBS = ("seq-write", "seq-read", "rand-write", "rand-read")


@dataclass(frozen=True)
class FioSpec:
    size: str = "256M"  # the file each job works on
    runtime_s: int = 10  # each random job runs this long

    def argv(self, directory: str) -> list[str]:
        return [
            "fio", "--output-format=json", f"--directory={directory}",
            "--filename=halab-fio", f"--size={self.size}", "--ioengine=psync",
            "--invalidate=1",
            "--name=seq-write", "--rw=write", "--bs=1M", "--end_fsync=1",
            "--name=seq-read", "--stonewall", "--rw=read", "--bs=1M",
            "--name=rand-write", "--stonewall", "--rw=randwrite", "--bs=4k",
            f"--runtime={self.runtime_s}", "--time_based", "--fsync_on_close=1",
            "--name=rand-read", "--stonewall", "--rw=randread", "--bs=4k",
            f"--runtime={self.runtime_s}", "--time_based",
        ]  # fmt: skip

    def script(self, directory: str) -> str:
        """The Job's shell: fio if missing, a directory of its own, fio, then clean up."""
        work = shlex.quote(directory)
        return (
            "set -e; command -v fio >/dev/null || apk add --no-cache fio >/dev/null; "
            f"mkdir -p {work}; {shlex.join(self.argv(directory))}; rm -rf {work}"
        )


@dataclass(frozen=True)
class Figures:
    seq_read_mbps: float
    seq_write_mbps: float
    rand_read_iops: float
    rand_write_iops: float
    read_p50_ms: float
    read_p99_ms: float
    write_p50_ms: float
    write_p99_ms: float


class FioOutputError(ValueError):
    pass


def _pct(side: dict[str, object], key: str) -> float:
    clat = side.get("clat_ns") or {}
    assert isinstance(clat, dict)
    percentile = clat.get("percentile") or {}
    assert isinstance(percentile, dict)
    return float(percentile.get(key, 0.0)) / 1e6


def parse(log: str) -> Figures:
    """The figures from fio's JSON, wherever it starts in the log (apk may speak first)."""
    start = log.find("{\n")
    if start < 0:
        raise FioOutputError(f"no fio JSON in the Job's log: {log.strip()[-300:]!r}")
    try:
        doc = json.loads(log[start : log.rfind("}") + 1])
    except ValueError as exc:
        raise FioOutputError(f"fio's JSON does not parse: {exc}") from None
    jobs = {j["jobname"]: j for j in doc.get("jobs", [])}
    missing = [name for name in JOBS if name not in jobs]
    if missing:
        raise FioOutputError(f"fio ran no {', '.join(missing)} job")
    mb = 1e6
    rr, rw = jobs["rand-read"]["read"], jobs["rand-write"]["write"]
    return Figures(
        seq_read_mbps=jobs["seq-read"]["read"]["bw_bytes"] / mb,
        seq_write_mbps=jobs["seq-write"]["write"]["bw_bytes"] / mb,
        rand_read_iops=float(rr["iops"]),
        rand_write_iops=float(rw["iops"]),
        read_p50_ms=_pct(rr, "50.000000"),
        read_p99_ms=_pct(rr, "99.000000"),
        write_p50_ms=_pct(rw, "50.000000"),
        write_p99_ms=_pct(rw, "99.000000"),
    )
