"""Phase 8 through Plex: PMS's libraries and transcoder directory set up as a user does it
in Plex's settings, and transcodes started through Plex's universal transcoder, as a
player starts them, spread by ClusterPlex over the workers.

PMS is reached at its LoadBalancer address, as clients at home reach it. Its token is the
target's secret when it names one (`secrets: {plex_token: ENV_VAR}`), else the server's
own, read from Preferences.xml on its /config volume through SeaweedFS's filer, as an
owner reads it from disk; it is never shown.

Which folders become which library follows Plex's naming: a top folder of the media
mount whose name says TV (`TV Shows`, `Series`...) is a TV library, any other one a
movie library.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, timed
from halab.inventory.model import App
from halab.kube import wait_for
from halab.phases.cluster_checks import Verdict, app_pods
from halab.plex import Plex, PlexError, TranscodeRun, identity
from halab.render.apps import PREFERENCES, TRANSCODE_DIR
from halab.seaweed import SeaweedError, SeaweedFS

TV_FOLDER = re.compile(r"\b(tv|shows?|series)\b", re.IGNORECASE)
SECRET = "plex_token"
FFPROBE_CODECS = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"]
REMOTE_OK = "Remote Transcoding was successful"
FELL_BACK = "Distributed transcoder failed, calling local"


def plex_url(api: Any, app: App) -> str | None:
    from kubernetes import client

    svc = client.CoreV1Api(api).read_namespaced_service(app.name, app.namespace)
    lb = svc.status.load_balancer
    return f"http://{lb.ingress[0].ip}:{app.ports[0]}" if lb and lb.ingress else None


def token(ctx: Context, api: Any, app: App) -> str:
    """The owner's token: the target's secret, else Preferences.xml on /config."""
    assert ctx.target is not None
    env_name = ctx.target.secrets.get(SECRET)
    if env_name and os.environ.get(env_name):
        return os.environ[env_name]
    from halab.phases.phase4 import config_volume

    found = config_volume(api, app)
    if found is None:
        raise PlexError(app.name, "its /config claim is not bound, so its token cannot be read")
    relative = PREFERENCES.removeprefix("/config/")
    try:
        text = SeaweedFS(api, ctx.inventory).get(f"{found[1]}/{relative}")
    except SeaweedError as exc:
        raise PlexError(
            app.name, f"Preferences.xml not readable through the filer: {exc}"
        ) from None
    value = ET.fromstring(text).get("PlexOnlineToken")
    if not value:
        raise PlexError(
            app.name, f"Preferences.xml has no PlexOnlineToken: claim the server, or set {SECRET}"
        )
    return value


def connect(ctx: Context, api: Any, app: App, timeout: float = 120) -> Plex:
    url = wait_for(lambda: plex_url(api, app), timeout, f"{app.name}'s LoadBalancer address")

    def answers() -> bool:
        try:
            return bool(identity(url, timeout=3))
        except PlexError:
            return False

    wait_for(answers, timeout, f"{url}/identity")
    return Plex(url, token(ctx, api, app))


def media_folders(plex: Plex, app: App) -> list[tuple[str, str, str]]:
    """(title, kind, folder) for each top folder of PMS's media mounts, as Plex's own
    folder browser lists them (what its "add library" dialog shows)."""
    out = []
    for vol in app.volumes:
        if vol.kind != "nfs" or not vol.read_only:
            continue  # the media is what PMS only reads; a share it writes is scratch
        for folder in plex.folders(vol.mount_path):
            name = folder.rstrip("/").rsplit("/", 1)[-1]
            kind = "show" if TV_FOLDER.search(name) else "movie"
            out.append((name, kind, folder))
    return out


def writable_shares(ctx: Context, app: App) -> set[str]:
    """`export:mount path` of each NFS export the app can write (a host path on the NFS
    host counts as its export)."""
    nfs = ctx.inventory.storage.nfs
    exports = {e.name: e for e in nfs.exports} if nfs else {}
    found = set()
    for v in app.volumes:
        if v.kind == "nfs" and v.access == "RWX":
            found.add(f"{v.export}:{v.mount_path}")
        elif v.kind == "host-path" and nfs and app.host == nfs.host:
            export = next((e for e in exports.values() if e.path == v.host_path), None)
            if export is not None:
                found.add(f"{export.name}:{v.mount_path}")
    return found


def shared_transcode_dir(ctx: Context, app: App) -> str | None:
    """Where PMS's sessions must go: a writable share PMS and every worker mount at one
    path (the rendered /transcode first)."""
    workers = [a for a in ctx.inventory.apps if a.role == "worker"]
    common = set.intersection(
        writable_shares(ctx, app), *(writable_shares(ctx, w) for w in workers)
    )
    paths = sorted({c.split(":", 1)[1] for c in common}, key=lambda p: (p != TRANSCODE_DIR, p))
    return paths[0] if paths else None


def prepare(ctx: Context, api: Any, app: App) -> list[Change]:
    """Libraries for the media folders and the transcoder directory on the shared volume,
    each set through Plex's API only when it is not already so."""
    if api is None or ctx.target is None:
        return [Change(f"prepare {app.name}", False, "no target")]
    try:
        plex = connect(ctx, api, app)
        changes = []
        for title, kind, folder in media_folders(plex, app):
            section, added = plex.ensure_section(title, kind, folder)
            count = (
                len(section.all()) if kind == "movie" else len(section.search(libtype="episode"))
            )
            changes.append(Change(f"library {title} ({kind})", added, f"{folder}: {count} items"))
        wanted = shared_transcode_dir(ctx, app)
        if wanted:
            current = plex.setting("TranscoderTempDirectory") or ""
            if current != wanted:
                plex.set_setting("TranscoderTempDirectory", wanted)
            said = f"{current or 'Plex default'} -> {wanted}" if current != wanted else wanted
            changes.append(Change("TranscoderTempDirectory", current != wanted, said))
        return changes
    except Exception as exc:
        return [Change(f"prepare {app.name}", False, f"{type(exc).__name__}: {exc}", failed=True)]


# -- checks ---------------------------------------------------------------------------


def check_transcode_dir(ctx: Context, api: Any, app: App) -> Check:
    wanted = shared_transcode_dir(ctx, app)
    title = f"PMS {app.name}'s TranscoderTempDirectory is on the share the workers mount"
    if not wanted:
        return Check(
            f"plex-transcode-dir-{app.name}",
            title,
            "fail",
            f"{app.name} and the workers share no writable directory: workers cannot see "
            "its sessions (see transcode-shared)",
        )

    def run() -> Verdict:
        value = connect(ctx, api, app).setting("TranscoderTempDirectory") or ""
        if value != wanted:
            return "fail", (
                f"Plex says {value or 'its default (under /config)'}: every remote job will fail "
                f"(the worker's 'CWD path doesn't seem to exist'); set it to {wanted}"
            )
        return "pass", f"{value} (Plex's /:/prefs)"

    return timed(f"plex-transcode-dir-{app.name}", title, run)


def check_library(ctx: Context, api: Any, app: App) -> Check:
    title = f"PMS {app.name}'s libraries hold the media of its NFS mount"

    def run() -> Verdict:
        plex = connect(ctx, api, app)
        sections = plex.sections()
        items = plex.playable()
        said = ", ".join(f"{s.title} ({s.type}) {s.locations}" for s in sections) or "none"
        if not items:
            return "fail", f"no movie or episode in any library: {said}"
        return "pass", f"{len(items)} playable items; {said}"

    return timed(f"plex-library-{app.name}", title, run)


def check_transcodes(
    ctx: Context,
    api: Any,
    app: App,
    count: int,
    orchestrator_log: Any,
    hwaccel: list[str],
    during: AbstractContextManager[Any] | None = None,
) -> Check:
    """`count` transcodes at once through Plex, each driven to its end as a player drives
    it; which worker took each (the orchestrator's lines), whether any fell back to PMS,
    each session's speed, and the first segment read back by ffprobe. `hwaccel`: the
    workers that put `-hwaccel` in every job (FFMPEG_HWACCEL). `during` is entered for
    just the time the transcodes run (a watch of the GPUs' engines)."""
    title = f"{count} transcodes started through PMS {app.name} run on the workers"

    def run() -> Check:
        plex = connect(ctx, api, app)
        items = plex.playable()
        if not items:
            return Check("plex-transcodes", title, "fail", "no playable item in Plex's libraries")
        before_orch = orchestrator_log()
        before_pms = _pms_log(api, app)
        picks = [items[n % len(items)] for n in range(count)]
        with (
            tempfile.TemporaryDirectory() as tmp,
            during or contextlib.nullcontext(),
            ThreadPoolExecutor(max_workers=count) as pool,
        ):
            runs: list[TranscodeRun] = list(
                pool.map(
                    lambda pair: plex.transcode(
                        pair[1],
                        height=360,
                        bitrate_kbps=1000,
                        keep_first=Path(tmp) / f"{pair[0]}.ts",
                    ),
                    enumerate(picks),
                )
            )
            playable = _playable([r.first_segment for r in runs if r.first_segment])
        sent = _new_lines(before_orch, orchestrator_log(), r"Forwarding work request to \S+\|(\S+)")
        pms_said = _pms_log(api, app)[len(before_pms) :]
        fell_back = pms_said.count(FELL_BACK)
        remote_ok = pms_said.count(REMOTE_OK)
        table = pd.DataFrame(
            [
                {
                    "item": r.title,
                    "speed (x)": r.speed,
                    "seconds": round(r.seconds, 1),
                    "segments": r.segments,
                    "error": r.error,
                }
                for r in runs
            ],
            columns=["item", "speed (x)", "seconds", "segments", "error"],
        )
        spread = ", ".join(f"{h}: {sent.count(h)}" for h in sorted(set(sent))) or "none"
        said = (
            f"{sum(not r.error for r in runs)}/{count} played to the end; on the workers: "
            f"{spread}; {remote_ok} remote, {fell_back} fell back to PMS; "
            f"first segments: {playable}"
        )
        if any(r.error for r in runs):
            first = next(r.error for r in runs if r.error)
            return Check("plex-transcodes", title, "fail", f"{said}; {first}", data=table)
        why_not = ctx.target.lacks("gpu") if ctx.target else None
        if fell_back and why_not and hwaccel:
            # What a worker without a GPU driver does: VA-API fails, the job fails, and
            # PMS (mode both) transcodes itself. The twin cannot show more than that.
            return Check(
                "plex-transcodes",
                title,
                "skip",
                f"{said}. {', '.join(hwaccel)} ask for VA-API (FFMPEG_HWACCEL) and {why_not}: "
                "each remote transcode failed at the decoder and PMS fell back, as on a "
                "worker without the driver",
                data=table,
            )
        if fell_back or not sent:
            return Check(
                "plex-transcodes",
                title,
                "fail",
                f"{said}: PMS transcoded itself (TRANSCODE_OPERATING_MODE both hides this)",
                data=table,
            )
        return Check("plex-transcodes", title, "pass", said, data=table)

    return timed("plex-transcodes", title, run)


def _new_lines(before: str, after: str, pattern: str) -> list[str]:
    tail = after[len(before) :] if after.startswith(before) else after
    return re.findall(pattern, tail)


def _pms_log(api: Any, app: App) -> str:
    from kubernetes import client

    core = client.CoreV1Api(api)
    return "\n".join(
        core.read_namespaced_pod_log(p.metadata.name, app.namespace)
        for p in app_pods(api, app)
        if p.status.phase == "Running"
    )


def _playable(segments: list[Path]) -> str:
    """What ffprobe reads in each first segment, in a few words."""
    if not segments:
        return "none fetched"
    seen = []
    for segment in segments:
        probe = subprocess.run(
            [*FFPROBE_CODECS, str(segment)],
            capture_output=True,
            text=True,
        )
        codecs = sorted({line for line in probe.stdout.split() if line})
        seen.append("+".join(codecs) if probe.returncode == 0 and codecs else "unreadable")
    return ", ".join(sorted(set(seen)))


# -- the transcode report ---------------------------------------------------------------


def task_progress(log: str) -> list[dict[str, float]]:
    """Each finished task's final ffmpeg progress in a worker's log (the block before each
    `progress=end`): its speed, and its fps. ffmpeg leaves `fps=0.00` when a transcode
    ends within its first second; then fps is frames over the wall time its speed and
    output length give (wall = output / speed)."""
    tasks, current = [], {}
    for line in log.splitlines():
        key, _, value = line.strip().partition("=")
        if key in ("fps", "speed", "frame", "out_time_us"):
            try:
                current[key] = float(value.rstrip("x"))
            except ValueError:
                continue
        elif key == "progress" and value == "end" and current:
            if not current.get("fps") and current.get("speed") and current.get("out_time_us"):
                wall = current["out_time_us"] / 1e6 / current["speed"]
                current["fps"] = current.get("frame", 0.0) / wall if wall > 0 else 0.0
            tasks.append({k: v for k, v in current.items() if k in ("fps", "speed")})
            current = {}
    return tasks


def report(worker_logs: dict[str, str]) -> pd.DataFrame:
    """Per worker: transcodes finished, median and slowest speed, median fps."""
    rows = []
    for worker, log in sorted(worker_logs.items()):
        done = [t for t in task_progress(log) if "speed" in t]
        speeds = [t["speed"] for t in done]
        fps = [t["fps"] for t in done if "fps" in t]
        rows.append(
            {
                "worker": worker,
                "transcodes": len(done),
                "median speed (x)": round(statistics.median(speeds), 2) if speeds else None,
                "slowest (x)": round(min(speeds), 2) if speeds else None,
                "median fps": round(statistics.median(fps), 1) if fps else None,
            }
        )
    columns = ["worker", "transcodes", "median speed (x)", "slowest (x)", "median fps"]
    return pd.DataFrame(rows, columns=columns)
