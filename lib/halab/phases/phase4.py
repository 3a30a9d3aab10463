"""Phase 4, the test workload: the inventory's apps that keep their state on SeaweedFS and
their media on NFS (the plan's Sonarr), delivered from the rendered `apps/`, and the
plan's validation lines: the pod Running on the node it prefers, its config stored in the
SeaweedFS volume, the media reached over NFS, the app working.

Plan "Phase 4: Sonarr Deployment". Which apps these are, the node each prefers and its
volumes come from the inventory: an app of role `app` with a SeaweedFS volume. For Sonarr
(by its image) the checks go through its API (halab.sonarr): a test series is added, read
back from Sonarr's own database fetched through SeaweedFS's filer, and removed again; its
root folder is tried on each NFS mount, and the mount browsed as the UI's path picker
does. Sonarr's API key is read where Sonarr keeps it, config.xml on that same volume.

Phases 2 and 3 come first: the SeaweedFS storage class and the NFS claims are theirs.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from halab.apply import apply_objects
from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, timed
from halab.inventory.model import App
from halab.inventory.scheduling import node_labels
from halab.kube import ClusterError, service_proxy, wait_for
from halab.phases.cluster_checks import Verdict, app_pods, no_target, ready_pods
from halab.render.apps import workload
from halab.render.objects import namespace
from halab.seaweed import SeaweedError, SeaweedFS
from halab.sonarr import Sonarr, SonarrError

PHASE = 4
# The plan's "add test series": a real show, so that a Sonarr that reaches its metadata
# service at home names it rightly; added unmonitored, never searched, removed after.
TEST_SERIES = (81189, "Breaking Bad")
SONARR_DB = "sonarr.db"


def workloads(ctx: Context) -> list[App]:
    """Apps that keep state on SeaweedFS: the cluster's HA test workloads."""
    return [
        a
        for a in ctx.inventory.apps
        if a.role == "app" and a.kind != "docker" and any(v.kind == "seaweedfs" for v in a.volumes)
    ]


def is_sonarr(app: App) -> bool:
    return app.image.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == "sonarr"


def preferred_nodes(ctx: Context, app: App) -> list[str]:
    """The nodes the app's heaviest preference matches (the plan: `role=primary`, w1)."""
    if not app.placement.preferred:
        return []
    top = max(app.placement.preferred, key=lambda p: p.weight)
    return [
        n.name
        for n in ctx.inventory.nodes
        if all(node_labels(n).get(k) == v for k, v in top.match.items())
    ]


def scope(ctx: Context) -> pd.DataFrame:
    rows = []
    for app in workloads(ctx):
        config = [v for v in app.volumes if v.kind == "seaweedfs"]
        media = [v for v in app.volumes if v.kind == "nfs"]
        rows.append(
            {
                "app": app.name,
                "namespace": app.namespace,
                "image": app.image,
                "prefers": ", ".join(preferred_nodes(ctx, app)) or "no preference",
                "SeaweedFS": ", ".join(
                    f"{v.mount_path} ({v.storage_class}, {v.access}, {v.size})" for v in config
                ),
                "NFS": ", ".join(
                    f"{v.export} at {v.mount_path} ({'ro' if v.read_only else 'rw'})" for v in media
                )
                or "none",
            }
        )
    columns = ["app", "namespace", "image", "prefers", "SeaweedFS", "NFS"]
    return pd.DataFrame(rows, columns=columns)


# -- build ----------------------------------------------------------------------------------


def objects(ctx: Context) -> list[dict[str, Any]]:
    chosen = workloads(ctx)
    return [
        *(namespace(ns) for ns in sorted({a.namespace for a in chosen})),
        *(o for a in chosen for o in workload(a, ctx.inventory)),
    ]


def deliver(ctx: Context, api: Any) -> list[Change]:
    if api is None:
        return [Change("deliver apps/ (test workload)", False, "no target: nothing delivered")]
    if not workloads(ctx):
        return [Change("deliver apps/ (test workload)", False, "no app keeps state on SeaweedFS")]
    return apply_objects(api, objects(ctx))


def wait_running(ctx: Context, api: Any, timeout: float = 180) -> Change:
    if api is None:
        return Change("wait for the test workload", False, "no target")
    start = time.monotonic()
    for app in workloads(ctx):
        try:
            wait_for(partial(ready_pods, api, app), timeout, _what_ready(app))
        except ClusterError as exc:
            return Change("wait for the test workload", False, str(exc))
    took = time.monotonic() - start
    return Change("wait for the test workload", True, f"Ready after {took:.0f} s")


def _what_ready(app: App) -> str:
    return f"{app.name} Ready in {app.namespace}"


# -- the app's volume, through the filer ------------------------------------------------------


def config_volume(api: Any, app: App) -> tuple[str, str] | None:
    """(claim, filer directory) of the app's first SeaweedFS volume, once bound."""
    from kubernetes import client

    vol = next(v for v in app.volumes if v.kind == "seaweedfs")
    claim = f"{app.name}-{vol.name}"
    core = client.CoreV1Api(api)
    pvc = core.read_namespaced_persistent_volume_claim(claim, app.namespace)
    if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
        return None
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    attributes = (pv.spec.csi.volume_attributes or {}) if pv.spec.csi else {}
    return claim, str(attributes.get("path") or f"/buckets/{pv.metadata.name}")


def _fetch(sw: SeaweedFS, path: str) -> bytes | None:
    """The file through the first filer that answers (one may be down with its host, or
    not serving yet after it came back); None when a filer says it does not exist."""
    failed: SeaweedError | None = None
    for filer in sw.filers:
        try:
            return sw.get(path, filer=filer)
        except SeaweedError as exc:
            if exc.status == 404:
                return None
            failed = failed or exc
    if failed is not None:
        raise failed
    return None


def api_key(sw: SeaweedFS, directory: str) -> str | None:
    """Sonarr's API key from its config.xml on the volume (never shown)."""
    text = _fetch(sw, f"{directory}/config.xml")
    if text is None:
        return None
    return ET.fromstring(text).findtext("ApiKey") or None


def series_in_database(sw: SeaweedFS, directory: str) -> dict[int, str]:
    """TvdbId -> title of the Series table in Sonarr's database as the filer holds it (its
    write-ahead log too, where the database keeps one)."""
    db = _fetch(sw, f"{directory}/{SONARR_DB}")
    if db is None:
        raise SeaweedError(directory, f"{SONARR_DB} is not on the volume", 404)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / SONARR_DB
        local.write_bytes(db)
        wal = _fetch(sw, f"{directory}/{SONARR_DB}-wal")
        if wal:
            Path(f"{local}-wal").write_bytes(wal)
        with sqlite3.connect(local) as conn:
            rows = conn.execute("SELECT TvdbId, Title FROM Series").fetchall()
    return {int(tvdb): str(title) for tvdb, title in rows}


def sonarr_for(
    ctx: Context, api: Any, app: App, timeout: float = 10.0, answering: float = 60.0
) -> tuple[Sonarr, SeaweedFS, str]:
    """Sonarr reached through the API server's service proxy, with its own key, once it
    answers its status there (within `answering` seconds): a pod is Ready a moment before
    its Service lists it, and until then the proxy answers in Sonarr's place."""
    sw = SeaweedFS(api, ctx.inventory)
    found = config_volume(api, app)
    if found is None:
        raise SonarrError(app.name, "its config claim is not bound (phase 2's storage class?)")
    _, directory = found
    key = api_key(sw, directory)
    if key is None:
        raise SonarrError(app.name, f"no config.xml in {directory}: has it ever started?")
    url, options = service_proxy(api, app.namespace, app.name, app.ports[0])
    sonarr = Sonarr(url, key, timeout=timeout, session_options=options)
    sonarr.answering(answering)
    return sonarr, sw, directory


# -- checks ---------------------------------------------------------------------------------


def checks(ctx: Context, api: Any) -> list[Check]:
    apps = workloads(ctx)
    if not apps:
        return [Check("workload", "The test workload", "skip", "no app keeps state on SeaweedFS")]
    if api is None:
        return [no_target(f"running-{a.name}", f"{a.name} Running") for a in apps]
    found = []
    for app in apps:
        found.append(check_running(ctx, api, app))
        if not is_sonarr(app):
            found.append(check_config_files(ctx, api, app))
            continue
        # Found once for the app's checks: its claim, its PV and config.xml on the filer.
        reach = _once(partial(sonarr_for, ctx, api, app))
        # The media first: where Sonarr may write, it becomes the series' root folder.
        found += [
            *check_sonarr_media(app, reach),
            check_sonarr_config(app, reach),
            check_sonarr_functional(app, reach),
        ]
    return found


Reach = Callable[[], tuple[Sonarr, SeaweedFS, str]]


def _once(make: Reach) -> Reach:
    """`make` called at its first success only."""
    made: list[tuple[Sonarr, SeaweedFS, str]] = []

    def get() -> tuple[Sonarr, SeaweedFS, str]:
        if not made:
            made.append(make())
        return made[0]

    return get


def check_running(ctx: Context, api: Any, app: App, timeout: float = 120) -> Check:
    wanted = preferred_nodes(ctx, app)
    title = f"{app.name} Running" + (f" on {', '.join(wanted)} (preferred)" if wanted else "")

    def run() -> Verdict:
        try:
            up = wait_for(partial(ready_pods, api, app), timeout, _what_ready(app))
        except ClusterError:
            pods = app_pods(api, app)
            said = "; ".join(f"{p.metadata.name}: {p.status.phase}" for p in pods)
            return "fail", said or f"no pod of {app.name} in {app.namespace}"
        where = ", ".join(f"{p.metadata.name} on {p.spec.node_name}" for p in up)
        if wanted and not any(p.spec.node_name in wanted for p in up):
            # A preference is not a rule: the scheduler may have had its reasons.
            return "warn", f"Running, but not where it prefers: {where}"
        return "pass", f"Running and Ready: {where}"

    return timed(f"running-{app.name}", title, run)


def check_config_files(ctx: Context, api: Any, app: App) -> Check:
    """Any app: its SeaweedFS volume bound and holding what it wrote, seen from the filer."""
    title = f"{app.name}'s config stored in its SeaweedFS volume"

    def run() -> Verdict:
        found = config_volume(api, app)
        if found is None:
            return "fail", "its config claim is not bound"
        claim, directory = found
        names = SeaweedFS(api, ctx.inventory).ls(directory)
        if not names:
            return "warn", f"claim {claim} ({directory}) is bound but holds nothing yet"
        return "pass", f"claim {claim}: {directory} holds {', '.join(names[:6])}"

    return timed(f"config-on-seaweedfs-{app.name}", title, run)


def check_sonarr_config(app: App, reach: Reach) -> Check:
    tvdb, title_of = TEST_SERIES
    title = f"{app.name}'s config stored in its SeaweedFS volume (a test series read back)"

    def run() -> Verdict:
        sonarr, sw, directory = reach()
        # Under its root folder where it has one; else where its media is mounted.
        media = [v.mount_path for v in app.volumes if v.kind == "nfs"] or ["/tv"]
        root = next((r.path for r in sonarr.root_folders()), media[0])
        existing = [s for s in sonarr.series() if s.get("tvdbId") == tvdb]
        added = None if existing else sonarr.add_series(tvdb, title_of, root)
        try:
            # Sonarr writes its database as it answers: read it from the filer until the
            # row is there (a write-back cache may hold it a moment).
            stored = wait_for(
                lambda: series_in_database(sw, directory).get(tvdb), 30, "the series stored"
            )
        finally:
            if added is not None:
                sonarr.delete_series(int(added["id"]))
        how = "added through the API, then" if added else "already there;"
        return "pass", f"{stored!r} (tvdb {tvdb}) {how} read from {directory}/{SONARR_DB}"

    return timed(f"config-on-seaweedfs-{app.name}", title, run)


def check_sonarr_media(app: App, reach: Reach) -> list[Check]:
    """Each NFS mount: browsable as the UI's path picker shows it, and taken as a root
    folder only where Sonarr may write (the plan's read-only media export: finding
    nfs-write-to-ro-export)."""
    found = []
    for vol in [v for v in app.volumes if v.kind == "nfs"]:
        title = f"Media accessible via NFS: {vol.export} at {vol.mount_path} in {app.name}"

        def run(mount: str = vol.mount_path) -> Verdict:
            sonarr, _, _ = reach()
            listing = sonarr.browse(mount)
            folders = [d["name"] for d in listing.get("directories") or []]
            shown = ", ".join(folders[:5]) + (" ..." if len(folders) > 5 else "")
            shown = shown or "empty"
            known = {r.path for r in sonarr.root_folders()}
            if mount.rstrip("/") in known:
                return "pass", f"browsable ({shown}); already a root folder"
            try:
                sonarr.add_root_folder(mount)
            except SonarrError as exc:
                if "not writable" in str(exc):
                    return "warn", (
                        f"browsable ({shown}), but not a root folder: {exc} (finding "
                        "nfs-write-to-ro-export: Sonarr imports into its root folder)"
                    )
                raise
            return "pass", f"browsable ({shown}); added as a root folder"

        found.append(timed(f"media-{app.name}-{vol.name}", title, run, required=False))
    return found


def check_sonarr_functional(app: App, reach: Reach) -> Check:
    title = f"{app.name} functional (its API answers, its root folders browsable)"

    def run() -> Verdict:
        sonarr, _, _ = reach()
        status = sonarr.status()
        roots = sonarr.root_folders()
        health = [h for h in sonarr.health() if h.get("type") == "error"]
        said = (
            f"{status.get('appName')} {status.get('version')} ({status.get('packageAuthor')}); "
            f"root folders: "
            + (", ".join(f"{r.path} ({len(r.unmapped)} folders)" for r in roots) or "none")
        )
        if health:
            return "warn", said + "; health: " + "; ".join(str(h.get("message")) for h in health)
        return "pass", said

    return timed(f"functional-{app.name}", title, run)
