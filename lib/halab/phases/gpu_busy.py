"""Phase 8's "GPU usage visible during a transcode": the GPU engines of every machine
whose ClusterPlex worker asks for hardware decoding, watched with intel_gpu_top over SSH
while the transcodes through Plex run (halab.gpu_usage).

A worker whose job fell back to software leaves its GPU idle while its CPU works, and
PMS in mode `both` hides even a failed remote job: the engines are the one place a
hardware transcode shows. A cluster whose target says it has no GPU skips, naming why.
"""

from __future__ import annotations

from typing import Any

from halab.context import Context
from halab.evidence import Check, Status
from halab.gpu_usage import GpuWatch
from halab.inventory.model import App
from halab.phases.cluster_checks import app_pods

CID = "gpu-busy"
TITLE = "GPU engines busy on the workers' machines while Plex transcodes"


def machines(api: Any, workers: list[App], asking: list[str]) -> list[str]:
    """Where the workers named in `asking` run: a Kubernetes worker's node (each Running
    pod's), a Docker worker's host."""
    found: set[str] = set()
    for app in workers:
        if app.name not in asking:
            continue
        if app.kind == "docker":
            found.add(app.host)
        else:
            found |= {p.spec.node_name for p in app_pods(api, app) if p.status.phase == "Running"}
    return sorted(found)


def why_not(ctx: Context, watched: list[str]) -> str | None:
    """Why nothing will be watched (None: watch them)."""
    if ctx.target is not None and (why := ctx.target.lacks("gpu")):
        return f"{why}: intel_gpu_top would find no engine to read"
    if not watched:
        return "no running worker asks for hardware decoding (FFMPEG_HWACCEL): no GPU to watch"
    return None


def watch(ctx: Context, pool: Any, watched: list[str]) -> GpuWatch | None:
    """The watch to run during the transcodes, or None when `why_not` says why not."""
    return None if why_not(ctx, watched) else GpuWatch(pool, watched)


def check(ctx: Context, watched: list[str], seen: GpuWatch | None, transcodes: Check) -> Check:
    """The verdict on what the watch saw while `transcodes` ran."""
    why = why_not(ctx, watched)
    if why or seen is None:
        return Check(CID, TITLE, "skip", why or "not watched", required=False)
    uses = [seen.use.get(m) for m in watched]
    said = "; ".join(
        u.said() if u else f"{m}: no reading" for m, u in zip(watched, uses, strict=True)
    )
    if transcodes.status == "fail":
        return Check(CID, TITLE, "fail", f"the transcodes failed (plex-transcodes); {said}")
    read = [u for u in uses if u is not None and not u.error and u.samples]
    if not read:
        return Check(CID, TITLE, "fail", f"no machine's engines could be read: {said}")
    if not any(u.transcoding > 0 for u in read):
        return Check(
            CID,
            TITLE,
            "fail",
            f"no video or render engine moved while the transcodes ran: they ran in software "
            f"(a worker without its /dev/dri, or a driver its ffmpeg cannot use); {said}",
        )
    idle = [u.machine for u in read if u.transcoding == 0]
    status: Status = "warn" if idle or len(read) < len(watched) else "pass"
    note = f"; idle: {', '.join(idle)} (no job went there?)" if idle else ""
    return Check(CID, TITLE, status, said + note)
