"""Phase 2, SeaweedFS: the rendered SeaweedFS delivered and running on the nodes the
inventory gives it, its masters leading, its copies where the replication says, and the
planner's placement predictions checked against the live master.

Plan "Phase 2: SeaweedFS Distributed Storage": master/volume/filer pods Running, the CSI
driver registered, a test PVC bound and written, "data replicated across all 3 nodes",
"survive single node stop".
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from halab.apply import apply_objects
from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, Status, timed
from halab.explain import explain
from halab.kube import wait_for
from halab.phases.cluster_checks import no_target
from halab.plan.analysis import Analysis
from halab.plan.quorum import api_available
from halab.power import PowerSwitch
from halab.render import storage
from halab.render.objects import namespace
from halab.seaweed import SeaweedError, SeaweedFS, service_name

PHASE = 2
ROLES = ("master", "volume", "filer")
PROBE_DIR = "/halab-checks"
CSI_DRIVER = "seaweedfs-csi-driver"
Verdict = tuple[Status, str]


@dataclass(frozen=True)
class Server:
    role: str
    node: str
    host: str

    @property
    def pod(self) -> str:  # a StatefulSet of one per server, in the rendered tree
        return f"{service_name(self.role, self.node)}-0"


def servers(ctx: Context) -> list[Server]:
    """Every SeaweedFS server on the nodes present once phase 2 is done."""
    present = {n.name for n in ctx.inventory.nodes_present(PHASE)}
    return [s for s in all_servers(ctx) if s.node in present]


def scope(ctx: Context) -> pd.DataFrame:
    """What phase 2 runs where: each node's SeaweedFS roles, rack and disk."""
    sw = ctx.inventory.storage.seaweedfs
    rows = []
    for node in ctx.inventory.nodes_present(PHASE):
        roles = [s.role for s in servers(ctx) if s.node == node.name]
        if roles:
            rows.append(
                {
                    "node": node.name,
                    "host": node.host,
                    "roles": ", ".join(roles),
                    "rack": storage.rack_of(ctx.inventory, node),
                    "volume GiB": node.seaweedfs.volume_gib,
                    "replication": sw.replication,
                }
            )
    return pd.DataFrame(
        rows, columns=["node", "host", "roles", "rack", "volume GiB", "replication"]
    )


# -- build ----------------------------------------------------------------------------------


def manifests(ctx: Context) -> list[dict[str, Any]]:
    """Phase 2's part of the rendered tree: the namespace, SeaweedFS, the CSI driver's
    HelmRelease and the StorageClasses."""
    inv = ctx.inventory
    return [namespace(storage.NS), *storage.seaweedfs(inv), *storage.csi(inv)]


def deliver(ctx: Context, api: Any, dry_run: bool = False) -> list[Change]:
    if api is None:
        return [Change("deliver storage/", False, "no target: nothing delivered")]
    return apply_objects(api, manifests(ctx), dry_run=dry_run)


def wait_running(ctx: Context, api: Any, timeout: float = 180) -> Change:
    """Until every SeaweedFS pod of this phase is Ready (the masters elect a leader and
    the volume servers register on the way)."""
    from kubernetes import client

    if api is None:
        return Change("wait for SeaweedFS", False, "no target")
    core = client.CoreV1Api(api)
    want = {s.pod for s in servers(ctx)}
    start = time.monotonic()

    def ready() -> bool:
        pods = core.list_namespaced_pod(storage.NS).items
        up = {p.metadata.name for p in pods if pod_ready(p)}
        return want <= up

    try:
        wait_for(ready, timeout, f"{len(want)} SeaweedFS pods Ready")
    except Exception as exc:  # the checks below say which pod is not
        return Change("wait for SeaweedFS", False, explain(exc))
    return Change(
        "wait for SeaweedFS",
        False,
        f"{len(want)} pods Ready after {time.monotonic() - start:.1f} s",
    )


def pod_ready(pod: Any) -> bool:
    """A V1Pod whose Ready condition is True."""
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


# -- checks ---------------------------------------------------------------------------------


def check_pods(ctx: Context, api: Any) -> list[Check]:
    """Per node: its master/volume/filer pods Running on it."""
    from kubernetes import client

    nodes = sorted({(s.node, s.host) for s in servers(ctx)}, key=lambda n: n[0])
    title = "SeaweedFS {} Running on {}"
    if not nodes:
        return [Check("pods", "SeaweedFS servers", "skip", "no node present by phase 2 runs one")]
    if api is None:
        return [no_target(f"pods-{n}", title.format("servers", n)) for n, _ in nodes]
    listed: list[Any] = []

    def pods() -> dict[str, Any]:
        if not listed:
            listed.append(client.CoreV1Api(api).list_namespaced_pod(storage.NS).items)
        return {p.metadata.name: p for p in listed[0]}

    def one(node: str) -> Verdict:
        bad, good = [], []
        for server in (s for s in servers(ctx) if s.node == node):
            pod = pods().get(server.pod)
            if pod is None:
                bad.append(f"{server.role}: no pod {server.pod}")
            elif pod.spec.node_name != node:
                bad.append(f"{server.role}: on {pod.spec.node_name or 'no node'}, not {node}")
            elif pod.status.phase != "Running" or not pod_ready(pod):
                bad.append(f"{server.role}: {pod.status.phase}, not Ready")
            else:
                good.append(server.role)
        return ("fail", "; ".join(bad)) if bad else ("pass", f"{', '.join(good)} Running")

    checks = []
    for node, _host in nodes:
        roles = ", ".join(s.role for s in servers(ctx) if s.node == node)
        checks.append(timed(f"pods-{node}", title.format(roles, node), partial(one, node)))
    return checks


def check_masters(ctx: Context, sw: SeaweedFS | None) -> Check:
    title = "The SeaweedFS masters elect a leader"
    if sw is None:
        return no_target("masters", title)

    def run() -> Verdict:
        doc = sw.cluster_status()
        leader = doc.get("Leader") or ""
        peers = doc.get("Peers") or []
        if not leader:
            return "fail", f"no leader ({doc['answered_by']} answered): {doc}"
        return "pass", f"leader {leader}; peers {', '.join(peers) or 'none'}"

    return timed("masters", title, run)


def check_registered(ctx: Context, sw: SeaweedFS | None) -> Check:
    """Every volume server of this phase registered, with the rack the render gave it."""
    title = "Every volume server registered in its rack"
    if sw is None:
        return no_target("volume-servers", title)

    def run() -> Verdict:
        topo = sw.topology()
        seen = {row.node: row for row in topo.itertuples()}
        bad = []
        for server in (s for s in servers(ctx) if s.role == "volume"):
            rack = storage.rack_of(ctx.inventory, ctx.inventory.node(server.node))
            row = seen.get(server.node)
            if row is None:
                bad.append(f"{server.node}: not registered with the master")
            elif row.rack != rack:
                bad.append(f"{server.node}: in rack {row.rack}, the render says {rack}")
        if bad:
            return "fail", "; ".join(bad)
        racks = topo.groupby("rack")["node"].apply(lambda s: ", ".join(sorted(s))).to_dict()
        return "pass", "; ".join(f"{rack}: {nodes}" for rack, nodes in racks.items())

    return timed("volume-servers", title, run)


def check_csi(ctx: Context, api: Any) -> list[Check]:
    """The CSI driver registered (a CSINode entry) on every node that runs pods."""
    from kubernetes import client

    title = f"The CSI driver ({CSI_DRIVER}) registered on the workers"
    if api is None or ctx.target is None:
        return [no_target("csi-registered", title)]
    if why := ctx.target.lacks("csi"):
        return [Check("csi-registered", title, "skip", why)]

    def run() -> Verdict:
        storage_api = client.StorageV1Api(api)
        workers = [
            n.name
            for n in ctx.inventory.nodes_present(PHASE)
            if not any(t.effect == "NoSchedule" for t in n.taints)
        ]
        missing = []
        for name in workers:
            try:
                drivers = storage_api.read_csi_node(name).spec.drivers or []
            except Exception as exc:  # no CSINode for the node at all
                missing.append(f"{name} ({explain(exc)})")
                continue
            if not any(d.name == CSI_DRIVER for d in drivers):
                missing.append(name)
        if missing:
            return "fail", f"not registered on {', '.join(missing)}"
        return "pass", f"registered on {', '.join(workers)}"

    return [timed("csi-registered", title, run)]


def check_claim(ctx: Context, api: Any, timeout: float = 120) -> list[Check]:
    """A test claim of the RWO class binds, a pod writes a file to it and a second pod
    reads it back with the same checksum."""
    from kubernetes import client

    titles = {
        "pvc-binds": "A test PVC of seaweedfs-ha binds",
        "pvc-write-read": "A pod writes to the PVC and another reads it back",
    }
    if api is None or ctx.target is None:
        return [no_target(cid, title) for cid, title in titles.items()]
    if why := ctx.target.lacks("csi"):
        return [Check(cid, title, "skip", why) for cid, title in titles.items()]
    from halab.phases.cluster_checks import CHECK_NAMESPACE, ensure_namespace

    core = client.CoreV1Api(api)
    ensure_namespace(api)
    name = f"seaweedfs-probe-{uuid.uuid4().hex[:5]}"
    core.create_namespaced_persistent_volume_claim(
        CHECK_NAMESPACE,
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "seaweedfs-ha",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    checks = []
    try:
        bound = timed(
            "pvc-binds",
            titles["pvc-binds"],
            lambda: _bound(core, name, timeout),
        )
        checks.append(bound)
        if bound.status != "pass":
            checks.append(
                Check("pvc-write-read", titles["pvc-write-read"], "fail", "the claim did not bind")
            )
            return checks
        checks.append(
            timed(
                "pvc-write-read", titles["pvc-write-read"], lambda: _write_read(core, name, timeout)
            )
        )
    finally:
        core.delete_namespaced_persistent_volume_claim(name, CHECK_NAMESPACE)
    return checks


def _bound(core: Any, claim: str, timeout: float) -> Verdict:
    from halab.phases.cluster_checks import CHECK_NAMESPACE

    pvc = wait_for(
        lambda: (
            (c := core.read_namespaced_persistent_volume_claim(claim, CHECK_NAMESPACE)).status.phase
            == "Bound"
            and c
        ),
        timeout,
        f"claim {claim} Bound",
    )
    return "pass", f"{claim} bound to {pvc.spec.volume_name}"


def _finished(core: Any, pod: str) -> Any:
    from halab.phases.cluster_checks import CHECK_NAMESPACE

    found = core.read_namespaced_pod(pod, CHECK_NAMESPACE)
    return found if found.status.phase in ("Succeeded", "Failed") else None


def _write_read(core: Any, claim: str, timeout: float) -> Verdict:
    from halab.phases.cluster_checks import CHECK_NAMESPACE

    token = uuid.uuid4().hex
    outputs = []
    for step, script in (
        ("write", f"echo {token} > /data/probe && sha256sum /data/probe"),
        ("read", "sha256sum /data/probe"),
    ):
        pod = f"{claim}-{step}"
        core.create_namespaced_pod(
            CHECK_NAMESPACE,
            {
                "metadata": {"name": pod},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "probe",
                            "image": "busybox:1.36",
                            "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        )
        try:
            done = wait_for(
                partial(_finished, core, pod),
                timeout,
                f"{step} pod finished",
            )
            outputs.append((done.status.phase, core.read_namespaced_pod_log(pod, CHECK_NAMESPACE)))
        finally:
            core.delete_namespaced_pod(pod, CHECK_NAMESPACE, grace_period_seconds=0)
    expected = hashlib.sha256(f"{token}\n".encode()).hexdigest()
    ok = all(phase == "Succeeded" and expected in log for phase, log in outputs)
    return ("pass" if ok else "fail"), f"sha256 {expected[:12]}...: " + "; ".join(
        f"{phase}: {log.strip()[:40]}" for phase, log in outputs
    )


# -- data: written through one filer, read through another, copies where SeaweedFS put them --


@dataclass
class Probe:
    """A file written through SeaweedFS, with what is known of it."""

    path: str
    sha256: str
    size: int
    volumes: list[int] = field(default_factory=list)


def write_probe(sw: SeaweedFS, size: int = 256 * 1024) -> Probe:
    data = os.urandom(size)
    path = f"{PROBE_DIR}/probe-{uuid.uuid4().hex[:8]}.bin"
    sw.put(path, data)
    volumes = sorted({int(fid.split(",", 1)[0]) for fid in sw.chunks(path)})
    return Probe(path, hashlib.sha256(data).hexdigest(), size, volumes)


def check_read_back(sw: SeaweedFS | None, probe: Probe | None) -> Check:
    title = "A file written through one filer reads back through every other"
    if sw is None or probe is None:
        return no_target("read-back", title)

    def run() -> Verdict:
        bad: list[str] = []
        good: list[str] = []
        for filer in sw.filers:
            try:
                got = hashlib.sha256(sw.get(probe.path, filer=filer)).hexdigest()
            except SeaweedError as exc:
                bad.append(f"{filer}: {exc}")
                continue
            (good if got == probe.sha256 else bad).append(
                filer if got == probe.sha256 else f"{filer}: checksum {got[:12]} differs"
            )
        if bad:
            return "fail", "; ".join(bad)
        return (
            "pass",
            f"{probe.size} bytes, sha256 {probe.sha256[:12]}..., read via {', '.join(good)}",
        )

    return timed("read-back", title, run)


def copies_table(sw: SeaweedFS) -> pd.DataFrame:
    """Every volume with where its copies are: hosts, racks, and whether they are apart."""
    copies = sw.volume_copies()
    if copies.empty:
        return pd.DataFrame(
            columns=[
                "volume",
                "collection",
                "replication",
                "copies",
                "nodes",
                "hosts",
                "racks",
                "distinct_hosts",
            ]
        )
    grouped = copies.groupby("volume")
    table = pd.DataFrame(
        {
            "collection": grouped["collection"].first(),
            "replication": grouped["replication"].first(),
            "copies": grouped.size(),
            "nodes": grouped["node"].apply(lambda s: ", ".join(sorted(s))),
            "hosts": grouped["host"].apply(lambda s: ", ".join(sorted(set(s)))),
            "racks": grouped["rack"].apply(lambda s: ", ".join(sorted(set(s)))),
        }
    ).reset_index()
    table["distinct_hosts"] = table["hosts"].str.count(",") + 1 == table["copies"]
    return table


def check_replicated(ctx: Context, sw: SeaweedFS | None, probe: Probe | None) -> list[Check]:
    """Copies as many as the replication says, judged from where SeaweedFS put them; and
    every volume whose copies share a physical host, named. The second is advisory where
    the planner already says the layout allows it (the plan's 002 in one rack)."""
    from halab.replication import parse_replication

    titles = {
        "replicated": "Data replicated: as many copies as the replication says",
        "copies-apart": "Every volume's copies sit on distinct physical hosts",
    }
    if sw is None or probe is None:
        return [no_target(cid, title) for cid, title in titles.items()]
    sw_cfg = ctx.inventory.storage.seaweedfs
    want = parse_replication(sw_cfg.replication).copies
    table: list[pd.DataFrame] = []

    def copies() -> pd.DataFrame:
        if not table:
            table.append(copies_table(sw))
        return table[0]

    def count() -> Verdict:
        mine = copies()[copies()["volume"].isin(probe.volumes)]
        if mine.empty:
            return "fail", f"the master lists no copy of volumes {probe.volumes}"
        short = mine[mine["copies"] < want]
        where = "; ".join(f"volume {r.volume}: {r.nodes}" for r in mine.itertuples())
        if not short.empty:
            return "fail", "under-replicated: " + ", ".join(
                f"volume {r.volume} has {r.copies} of {want}" for r in short.itertuples()
            ) + f" (the probe file: {where})"
        return "pass", f"{want} copies each ({sw_cfg.replication}); the probe file: {where}"

    def apart() -> Verdict:
        every = copies()
        together = every[~every["distinct_hosts"] & (every["copies"] > 1)]
        if together.empty:
            return "pass", f"{len(every)} volumes, each with its copies on distinct hosts"
        return (
            "fail",
            f"{len(together)} of {len(every)} volumes keep two copies or more on one host: "
            + (
                "; ".join(
                    f"{r.volume} on {r.hosts} ({r.nodes})" for r in together.head(8).itertuples()
                )
            ),
        )

    predicted_apart = Analysis(ctx.inventory).current.distinct_hosts
    return [
        timed("replicated", titles["replicated"], count),
        timed("copies-apart", titles["copies-apart"], apart, required=predicted_apart),
    ]


def copies_figure(sw: SeaweedFS) -> Figure:
    """Copies per volume by host and rack: the picture of where the data is."""
    copies = sw.volume_copies()
    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    if copies.empty:
        ax.text(0.5, 0.5, "no volumes yet", ha="center", va="center")
        ax.set_axis_off()
        return fig
    copies = copies.assign(where=copies["host"] + " / " + copies["rack"])
    grid = copies.pivot_table(
        index="where", columns="volume", values="node", aggfunc="count", fill_value=0
    )
    top = int(grid.values.max())
    image = ax.imshow(grid.values, aspect="auto", cmap="Blues", vmin=0, vmax=max(top, 2))
    for (row, col), count in np.ndenumerate(grid.values):
        if count:
            # Two copies or more on one host: what a single host failure can take at once.
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="#c53030" if count > 1 else "white",
                fontweight="bold",
            )
    ax.set_yticks(range(len(grid.index)), grid.index, fontsize=8)
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], fontsize=7)
    ax.set_xlabel("volume id")
    ax.set_title("SeaweedFS copies per volume, by host / rack (red: copies sharing a host)")
    fig.colorbar(image, ax=ax, label="copies", ticks=range(0, max(top, 2) + 1))
    return fig


# -- the planner against SeaweedFS itself ---------------------------------------------------


def planner_against_master(ctx: Context, sw: SeaweedFS) -> pd.DataFrame:
    """For each replication code the planner lists for the live layout, one volume grown
    in a throwaway collection (deleted afterwards): grown or refused, beside the planner."""
    sw_cfg = ctx.inventory.storage.seaweedfs
    analysis = Analysis(ctx.inventory)
    layout = sw_cfg.racks
    rows = []
    collection = f"halab-probe-{uuid.uuid4().hex[:6]}"
    try:
        for outcome in analysis.placement_table():
            if outcome.racks != layout:
                continue
            live = sw.grow(outcome.code, collection)
            predicted = " ".join(outcome.reason.split())
            agree = live.grown == outcome.feasible and (
                live.grown or _same_refusal(live.reason, predicted)
            )
            rows.append(
                {
                    "code": outcome.code,
                    "planner": "grows" if outcome.feasible else f"refuses: {predicted}",
                    "seaweedfs": f"grown, {live.copies} copies"
                    if live.grown
                    else f"refused: {live.reason}",
                    "agree": agree,
                }
            )
    finally:
        sw.delete_collection(collection)
    return pd.DataFrame(rows, columns=["code", "planner", "seaweedfs", "agree"])


def _same_refusal(live: str, predicted: str) -> bool:
    # Both come from SeaweedFS's findEmptySlotsForOneVolume text; compare the sentence.
    return " ".join(live.split()) == predicted


def check_planner(ctx: Context, sw: SeaweedFS | None) -> tuple[Check, pd.DataFrame]:
    title = "The planner's placement agrees with the live master"
    if sw is None:
        return no_target("planner-agrees", title), pd.DataFrame()
    table: list[pd.DataFrame] = []

    def run() -> Verdict:
        frame = planner_against_master(ctx, sw)
        table.append(frame)
        wrong = frame[~frame["agree"]]
        if not wrong.empty:
            return "fail", "; ".join(
                f"{r.code}: planner {r.planner}, SeaweedFS {r.seaweedfs}"
                for r in wrong.itertuples()
            )
        return (
            "pass",
            f"{len(frame)} codes with racks: {ctx.inventory.storage.seaweedfs.racks}, "
            "every answer as predicted",
        )

    check = timed("planner-agrees", title, run)
    return check, table[0] if table else pd.DataFrame()


# -- survive a node's host going down --------------------------------------------------------


def rehearse_host_loss(ctx: Context, sw: SeaweedFS | None, probe: Probe | None, api: Any) -> Check:
    """Plan: "stop w1, verify data accessible". The host of a volume server that holds a
    copy of the probe file (a worker's first) is powered off; the file must still read
    back with its checksum through a filer elsewhere; the host is always powered on."""
    title = "The data survives a volume server's host going down"
    if sw is None or probe is None or ctx.target is None:
        return no_target("survives-host-loss", title)
    if not ctx.allow_disruption:
        return Check(
            "survives-host-loss",
            title,
            "skip",
            "disruption not allowed: run with allow_disruption=True to power a host off",
        )
    copies = sw.volume_copies()
    holders = copies[copies["volume"].isin(probe.volumes)]
    nodes = [ctx.inventory.node(n) for n in dict.fromkeys(holders["node"]) if n != "?"]
    # A worker's host first (the plan stops w1), and only one whose loss keeps the API.
    candidates = sorted(nodes, key=lambda n: (n.is_server, n.name))
    host = next((n.host for n in candidates if api_available(ctx.inventory, {n.host})[0]), None)
    if host is None:
        return Check(
            "survives-host-loss", title, "fail", "no holder's host can go down without the API"
        )
    power = PowerSwitch.for_target(ctx.target)
    start = time.monotonic()
    status: Status = "fail"
    detail = ""
    on_host = {n.name for n in ctx.inventory.nodes_on(host)}
    before = _starts(api, on_host)
    # Volumes whose every copy is on that host: unreadable while it is down. Reported,
    # never hidden; expected only where the planner says copies can share a host.
    table = copies_table(sw)
    stranded = [int(v) for v in table.loc[table["hosts"] == host, "volume"]]
    try:
        power.off(host)
        others = [
            f
            for f in sw.filers
            if ctx.inventory.node(f.removeprefix("seaweedfs-filer-")).host != host
        ]
        if not others:
            detail = f"every filer is on {host}"
        else:
            got = wait_for(
                lambda: hashlib.sha256(sw.get(probe.path, filer=others[0])).hexdigest(),
                60,
                f"a read through {others[0]}",
            )
            ok = got == probe.sha256
            status = "pass" if ok else "fail"
            detail = (
                f"{host} powered off; {probe.path} read through {others[0]} "
                + ("with its checksum" if ok else f"with another checksum ({got[:12]})")
                + f" after {time.monotonic() - start:.1f} s"
            )
    except Exception as exc:  # the read failed: the host still comes back below
        detail = f"{host} powered off; {explain(exc)}"
    finally:
        power.on(host)
    back = wait_restarted(ctx, api, on_host, before)
    detail += f"; {host} powered on, SeaweedFS: {back.detail}"
    if stranded:
        detail += f"; volumes with every copy on {host}, unreadable while it was down: " + (
            ", ".join(str(v) for v in stranded)
        )
        if status == "pass":
            status = "warn" if not Analysis(ctx.inventory).current.distinct_hosts else "fail"
    return Check(
        "survives-host-loss", title, status, detail, seconds=round(time.monotonic() - start, 3)
    )


def _starts(api: Any, nodes: set[str]) -> dict[str, tuple[int, str]]:
    """The SeaweedFS pods on these nodes: restart count and start time of each."""
    from kubernetes import client

    found = {}
    for pod in client.CoreV1Api(api).list_namespaced_pod(storage.NS).items:
        if pod.spec.node_name in nodes:
            statuses = pod.status.container_statuses or []
            restarts = sum(c.restart_count or 0 for c in statuses)
            started = ",".join(
                str(c.state.running.started_at) for c in statuses if c.state and c.state.running
            )
            found[pod.metadata.name] = (restarts, started)
    return found


def wait_restarted(
    ctx: Context,
    api: Any,
    nodes: set[str],
    before: dict[str, tuple[int, str]],
    timeout: float = 180,
) -> Change:
    """After a host came back: its pods started again (not the stale Ready of pods whose
    node has not been noticed gone yet), then every pod of the phase Ready."""

    def restarted() -> bool:
        now = _starts(api, nodes)
        return all(name in now and now[name] != seen for name, seen in before.items())

    try:
        wait_for(
            restarted,
            timeout,
            f"the {len(before)} SeaweedFS pods of {', '.join(sorted(nodes))} started again",
        )
    except Exception as exc:
        return Change("wait for SeaweedFS", False, explain(exc))
    return wait_running(ctx, api, timeout)


def all_servers(ctx: Context) -> list[Server]:
    """Every SeaweedFS server of the inventory, whatever phase its node joins in."""
    out = []
    for node in ctx.inventory.nodes:
        roles = {
            "master": node.seaweedfs.master,
            "volume": node.seaweedfs.volume_gib > 0,
            "filer": node.seaweedfs.filer,
        }
        out += [Server(r, node.name, node.host) for r in ROLES if roles[r]]
    return out


def cleanup(sw: SeaweedFS | None, probe: Probe | None) -> Change:
    """Delete the probe file through the first filer that answers; never raises."""
    if sw is None or probe is None:
        return Change("delete the probe file", False, "nothing was written")
    errors = []
    for filer in sw.filers:
        try:
            sw.delete(probe.path, filer=filer)
        except SeaweedError as exc:
            errors.append(str(exc))
            continue
        return Change("delete the probe file", True, f"{probe.path} deleted through {filer}")
    return Change("delete the probe file", False, "left in place: " + "; ".join(errors))
