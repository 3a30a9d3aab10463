"""Phase 3, Unraid NFS: the inventory's exports served to every node, the rendered NFS
PVs and claims bound, and pods reading the media and writing where the exports allow.

Plan "Phase 3: Unraid NFS Integration": exports /mnt/user/media (ro) and
/mnt/user/transcode (rw), NFS PV/PVCs, "NFS exports accessible from all nodes", "Media
PVC binds successfully", "Test pod can read media files". Added, because the plan implies
them: the transcode export takes writes from a pod, the media export refuses them, and
the plan's Sonarr mount (finding nfs-write-to-ro-export) shown failing live.

The exports themselves are the NFS server's (Unraid's /etc/exports, which the phase shows
as rendered); the phase delivers the PVs and claims. The NFS server is reached by the
real NFSv3 client (halab.nfs) on the ports the target gives.
"""

from __future__ import annotations

import errno
import socket
import uuid
from functools import partial
from typing import Any

import pandas as pd

from halab.apply import apply_objects
from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, timed
from halab.inventory.model import App, NfsExport
from halab.nfs import Endpoint, checksums, list_exports, probe
from halab.phases.cluster_checks import PodRun, Verdict, no_target, run_pod, wait_bound
from halab.phases.nfs_exports import check_server_exports
from halab.render import apps as render_apps
from halab.render import external, storage
from halab.render.objects import namespace

PHASE = 3
__all__ = [
    "PHASE",
    "check_app_mounts",
    "check_claims",
    "check_exports",
    "check_from_nodes",
    "check_pod_reads",
    "check_server_exports",
    "check_writes",
    "deliver",
    "endpoint",
    "exports_file",
    "manifests",
    "scope",
]


def _nfs(ctx: Context) -> Any:
    return ctx.inventory.storage.nfs


def endpoint(ctx: Context) -> Endpoint | None:
    """The NFS server as the target reaches it (its address mapped, its ports)."""
    nfs = _nfs(ctx)
    if nfs is None or ctx.target is None:
        return None
    address = ctx.target.addresses.map(ctx.inventory.host(nfs.host).address)
    return Endpoint(str(address), ctx.target.nfs.nfs_port, ctx.target.nfs.mount_port)


def scope(ctx: Context) -> pd.DataFrame:
    """The exports, their options, and the claim that mounts each, per namespace."""
    nfs = _nfs(ctx)
    columns = ["export", "path", "options", "mounted at", "claim", "PV"]
    if nfs is None:
        return pd.DataFrame([], columns=columns)
    claims = storage.nfs_claims(ctx.inventory)
    rows = [
        {
            "export": e.name,
            "path": e.path,
            "options": ",".join(e.options),
            "mounted at": e.mount_path,
            "claim": ", ".join(f"{ns}/{e.name}" for x, ns, _ in claims if x == e.name),
            "PV": ", ".join(pv for x, _, pv in claims if x == e.name),
        }
        for e in nfs.exports
    ]
    return pd.DataFrame(rows, columns=columns)


def exports_file(ctx: Context) -> str:
    """What goes into the NFS server's /etc/exports, as rendered."""
    if _nfs(ctx) is None:
        return "# the inventory has no storage.nfs"
    return external.exports(ctx.inventory)


# -- build ----------------------------------------------------------------------------------


def manifests(ctx: Context) -> list[dict[str, Any]]:
    """Phase 3's part of the rendered tree: the claims' namespaces, the NFS PVs and claims."""
    namespaces = sorted({ns for _, ns, _ in storage.nfs_claims(ctx.inventory)})
    return [*(namespace(ns) for ns in namespaces), *storage.nfs(ctx.inventory)]


def deliver(ctx: Context, api: Any, dry_run: bool = False) -> list[Change]:
    if api is None:
        return [Change("deliver storage/nfs.yaml", False, "no target: nothing delivered")]
    if _nfs(ctx) is None:
        return [Change("deliver storage/nfs.yaml", False, "the inventory has no storage.nfs")]
    return apply_objects(api, manifests(ctx), dry_run=dry_run)


# -- checks: the server ---------------------------------------------------------------------


def _exports(ctx: Context) -> list[NfsExport]:
    nfs = _nfs(ctx)
    return list(nfs.exports) if nfs is not None else []


def _is_local(address: str) -> bool:
    """Whether a connection can start from `address` here (a twin's node addresses can;
    a home node's cannot from the machine running the notebook)."""
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


def probe_source(ctx: Context) -> str | None:
    """The first node's address when connections can start from it here, else None
    (this machine's own): where this machine's own NFS reads come from."""
    if ctx.target is None:
        return None
    for node in ctx.inventory.nodes_present(PHASE):
        address = str(ctx.target.addresses.map(node.address))
        if _is_local(address):
            return address
    return None


def check_exports(ctx: Context, timeout: float = 5) -> Check:
    """The server's MOUNT service lists every export the inventory names."""
    title = "The NFS server exports every path of the inventory"
    server = endpoint(ctx)
    if _nfs(ctx) is None:
        return Check("exports-served", title, "skip", "the inventory has no storage.nfs")
    if server is None:
        return no_target("exports-served", title)

    def run() -> Verdict:
        listed = list_exports(server, probe_source(ctx), timeout)
        missing = [e.path for e in _exports(ctx) if e.path not in listed]
        if missing:
            return "fail", f"{server.address} does not export {', '.join(missing)} (it lists " + (
                ", ".join(listed) or "nothing"
            ) + "): check the server's /etc/exports against the rendered one, then exportfs -ra"
        return "pass", f"{server.address} exports {', '.join(listed)}"

    return timed("exports-served", title, run)


def check_from_nodes(ctx: Context, timeout: float = 5, api: Any = None) -> list[Check]:
    """Every export listed and read by an NFS client connecting from each node's address;
    where this machine does not have that address (at home), by a pod on the node that
    mounts every export's claim and lists it."""
    server = endpoint(ctx)
    nodes = ctx.inventory.nodes_present(PHASE)
    title = "NFS exports accessible from {}"
    if _nfs(ctx) is None:
        return [Check("nfs-from-nodes", "NFS exports", "skip", "the inventory has no storage.nfs")]
    if server is None or ctx.target is None:
        return [no_target(f"nfs-from-{n.name}", title.format(n.name)) for n in nodes]
    target = ctx.target

    def one(node: str, address: str) -> Verdict:
        if not _is_local(address):
            if api is None:
                return "skip", (
                    f"{address} is not an address of this machine and no cluster was given "
                    "to run a pod on it"
                )
            return _listed_by_pod(ctx, api, node, 60 + timeout)
        results = [probe(server, e.path, address, timeout=timeout) for e in _exports(ctx)]
        bad = [f"{r.export}: {r.error}" for r in results if not r.ok]
        if bad:
            return "fail", f"from {address} to {server.address}: " + "; ".join(bad)
        return "pass", f"from {address}: " + "; ".join(
            f"{r.export} ({r.listed} entries, read)" for r in results
        )

    return [
        timed(
            f"nfs-from-{n.name}",
            title.format(n.name),
            partial(one, n.name, str(target.addresses.map(n.address))),
        )
        for n in nodes
    ]


def _listed_by_pod(ctx: Context, api: Any, node: str, timeout: float) -> Verdict:
    """A pod pinned to the node mounts each export's claim (in the claims' first namespace)
    and lists it: the node's own NFS client, as its workloads would use it."""
    claims = storage.nfs_claims(ctx.inventory)
    ns = claims[0][1]
    mine = [x for x, n, _ in claims if n == ns]
    volumes = [
        {"name": f"e{i}", "persistentVolumeClaim": {"claimName": x, "readOnly": True}}
        for i, x in enumerate(mine)
    ]
    mounts = [
        {"name": f"e{i}", "mountPath": f"/e/{x}", "readOnly": True} for i, x in enumerate(mine)
    ]
    script = " && ".join(f'echo "{x}: $(ls -A /e/{x} | wc -l) entries"' for x in mine)
    done = run_pod(api, ns, f"nfs-on-{node}-{uuid.uuid4().hex[:4]}", script, volumes, mounts,
                   timeout, node=node)  # fmt: skip
    if done.phase != "Succeeded":
        return "fail", f"a pod on {node} could not list the exports: {done.log.strip()[-300:]}"
    return "pass", f"a pod on {node} (its own NFS client): " + "; ".join(done.log.split("\n")[:-1])


# -- checks: claims and pods ----------------------------------------------------------------


def check_claims(ctx: Context, api: Any, timeout: float = 60) -> list[Check]:
    """Each NFS claim of the rendered tree Bound to its PV."""
    claims = storage.nfs_claims(ctx.inventory)
    title = "The {} claim {}/{} binds"
    if api is None:
        return [no_target(f"pvc-{x}-{ns}", title.format(x, ns, x)) for x, ns, _ in claims]

    def one(export: str, ns: str, pv: str) -> Verdict:
        found = wait_bound(api, ns, export, timeout)
        if found.spec.volume_name != pv:
            return "fail", f"bound to {found.spec.volume_name}, not the rendered {pv}"
        return "pass", f"bound to {pv} ({', '.join(found.status.access_modes or [])})"

    return [
        timed(f"pvc-{x}-{ns}", title.format(x, ns, x), partial(one, x, ns, pv))
        for x, ns, pv in claims
    ]


def _claim_volume(export: str, read_only: bool = False) -> dict[str, Any]:
    return {"name": "nfs", "persistentVolumeClaim": {"claimName": export, "readOnly": read_only}}


def _first_claim(ctx: Context, export: NfsExport) -> str | None:
    return next((ns for x, ns, _ in storage.nfs_claims(ctx.inventory) if x == export.name), None)


def check_pod_reads(ctx: Context, api: Any, timeout: float = 120) -> Check:
    """A pod mounting the media claim lists the library and checksums every file; the
    sums must be what an NFS client reads straight from the server."""
    title = "A test pod reads the media files"
    ro = [e for e in _exports(ctx) if e.read_only] or _exports(ctx)[:1]
    if not ro:
        return Check("pod-reads-media", title, "skip", "the inventory has no storage.nfs")
    if api is None:
        return no_target("pod-reads-media", title)
    media = ro[0]
    ns = _first_claim(ctx, media)
    assert ns is not None
    server = endpoint(ctx)

    def run() -> Verdict:
        done = run_pod(
            api, ns, f"nfs-read-{uuid.uuid4().hex[:5]}",
            "cd /media && find . -type f ! -name '.*' | sort | while read -r f; do "
            'sha256sum "$f"; done',
            [_claim_volume(media.name, True)],
            [{"name": "nfs", "mountPath": "/media", "readOnly": True}],
            timeout,
        )  # fmt: skip
        if done.phase != "Succeeded":
            return "fail", f"the pod {done.phase} on {done.node}: {done.log.strip()[-300:]}"
        sums = _parse_sums(done.log)
        if not sums:
            return "fail", f"the pod on {done.node} found no files on {media.path}"
        direct = (
            checksums(server, media.path, sorted(sums), timeout, probe_source(ctx))
            if server
            else {}
        )
        differ = [p for p, s in sums.items() if direct and direct.get(p) != s]
        if differ:
            return "fail", f"the pod read other bytes than the server has: {', '.join(differ)}"
        return "pass", (
            f"{len(sums)} files read on {done.node}, sha256 as the server's: "
            + ", ".join(f"{p} {s[:10]}" for p, s in list(sums.items())[:4])
            + (" ..." if len(sums) > 4 else "")
        )

    return timed("pod-reads-media", title, run)


def _parse_sums(log: str) -> dict[str, str]:
    sums = {}
    for line in log.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name.startswith("./"):
            sums["/" + name[2:]] = digest
    return sums


def _write_script(where: str) -> str:
    token = uuid.uuid4().hex[:12]
    probe_file = f"{where}/.halab-write-{token}"
    return (
        f"if echo {token} > {probe_file}; then cat {probe_file} && rm {probe_file} "
        "&& echo WRITE-OK; else echo WRITE-REFUSED; fi"
    )


def check_writes(ctx: Context, api: Any, timeout: float = 120) -> list[Check]:
    """A pod writes (and removes) a file on each read-write export; on each read-only one,
    mounted as its PV says, the write is refused with EROFS."""
    if api is None:
        return [
            no_target(f"write-{e.name}", f"The {e.name} export {_verb(e)} writes")
            for e in _exports(ctx)
        ]
    checks = []
    for export in _exports(ctx):
        ns = _first_claim(ctx, export)
        assert ns is not None
        checks.append(
            timed(
                f"write-{export.name}",
                f"The {export.name} export {_verb(export)} writes from a pod",
                partial(_one_write, api, ns, export, timeout),
            )
        )
    return checks


def _verb(export: NfsExport) -> str:
    return "refuses" if export.read_only else "takes"


def _one_write(api: Any, ns: str, export: NfsExport, timeout: float) -> Verdict:
    done = run_pod(
        api, ns, f"nfs-write-{uuid.uuid4().hex[:5]}", _write_script("/mnt"),
        [_claim_volume(export.name)], [{"name": "nfs", "mountPath": "/mnt"}], timeout,
    )  # fmt: skip
    return _judge_write(done, export.read_only, f"{export.path} on {done.node}")


def _judge_write(done: PodRun, expect_refused: bool, where: str) -> Verdict:
    log = done.log.strip()
    if "WRITE-OK" in log:
        return ("fail" if expect_refused else "pass"), f"{where}: written, read back, removed"
    if "WRITE-REFUSED" in log:
        erofs = "Read-only file system" in log
        if expect_refused and erofs:
            return "pass", f"{where}: refused with EROFS (Read-only file system)"
        return "fail", f"{where}: refused: {log.splitlines()[0][:200]}"
    return "fail", f"{where}: the pod {done.phase}: {log[-300:]}"


def check_app_mounts(ctx: Context, api: Any, timeout: float = 120) -> list[Check]:
    """Each app that mounts a read-only export read-write (the plan's Sonarr) tries to
    write where its pod would: it fails with EROFS, the finding nfs-write-to-ro-export
    shown live. A warning, not a failure: it is the plan's mistake, seen on the cluster."""
    exports = {e.name: e for e in _exports(ctx)}
    wrong = [
        (app, vol)
        for app in ctx.inventory.apps
        if app.kind != "docker"
        for vol in app.volumes
        if vol.kind == "nfs" and exports.get(vol.export) is not None
        and exports[vol.export].read_only and not vol.read_only
    ]  # fmt: skip
    if not wrong:
        return [
            Check(
                "app-writes-ro-export",
                "No app mounts a read-only export read-write",
                "pass",
                "every app mounts the read-only exports read-only",
                required=False,
            )
        ]
    checks = []
    for app, vol in wrong:
        title = f"{app.name}'s write to {exports[vol.export].path} (finding nfs-write-to-ro-export)"
        cid = f"app-writes-{app.name}-{vol.name}"
        if api is None:
            checks.append(no_target(cid, title))
            continue
        checks.append(
            timed(cid, title, partial(_app_write, api, app, vol.name, timeout), required=False)
        )
    return checks


def _app_write(api: Any, app: App, volume: str, timeout: float) -> Verdict:
    """The app's own volumes and mounts, as rendered, in a busybox pod."""
    pod_volumes, mounts, _ = render_apps.app_volumes(app)
    mount = next(m for m in mounts if m["name"] == volume)
    keep = [v for v in pod_volumes if v["name"] == volume]
    done = run_pod(
        api, app.namespace, f"{app.name}-write-{uuid.uuid4().hex[:5]}",
        _write_script(mount["mountPath"]), keep, [mount], timeout,
    )  # fmt: skip
    status, detail = _judge_write(done, True, f"{mount['mountPath']} in {app.name}'s pod")
    if status == "pass":
        return "warn", f"{detail}: {app.name} cannot write there, as the finding says"
    return status, detail
