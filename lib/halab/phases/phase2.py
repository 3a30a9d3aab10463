"""Phase 2, SeaweedFS: the rendered SeaweedFS delivered and running on the nodes the
inventory gives it, its masters leading, its copies where the replication says, and the
planner's placement predictions checked against the live master.

Plan "Phase 2: SeaweedFS Distributed Storage": master/volume/filer pods Running, the CSI
driver registered, a test PVC bound and written, "data replicated across all 3 nodes",
"survive single node stop".
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import pandas as pd

from halab.apply import apply_objects
from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, timed
from halab.explain import explain
from halab.kube import wait_for
from halab.phases import seaweed_claims, seaweed_filers, seaweed_rehearsal
from halab.phases.cluster_checks import Verdict, no_target
from halab.phases.seaweed_data import (
    Probe,
    check_planner,
    check_read_back,
    check_replicated,
    copies_figure,
    copies_table,
    write_probe,
)
from halab.phases.seaweed_rehearsal import cleanup
from halab.phases.seaweed_servers import (
    Server,
    pod_ready,
    servers_present,
    wait_ready,
)
from halab.render import storage
from halab.render.objects import namespace
from halab.seaweed import SeaweedFS

# What the phase 2 notebook calls, in one place (some of it lives in the seaweed_* modules).
__all__ = [
    "PHASE",
    "check_claim",
    "check_csi",
    "check_health",
    "check_masters",
    "check_planner",
    "check_pods",
    "check_read_back",
    "check_registered",
    "check_replicated",
    "cleanup",
    "converge_filers",
    "copies_figure",
    "copies_table",
    "deliver",
    "manifests",
    "rehearse_host_loss",
    "scope",
    "servers",
    "wait_running",
    "write_probe",
]

PHASE = 2


def servers(ctx: Context) -> list[Server]:
    """Every SeaweedFS server on the nodes present once phase 2 is done."""
    return servers_present(ctx, PHASE)


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
    """Until every SeaweedFS pod of this phase is Ready and every volume server of it has
    registered with the leading master: a Ready pod only says its port is open, and a
    volume server retries for seconds while the masters elect a leader."""
    start = time.monotonic()
    pods = wait_ready(api, {s.pod for s in servers(ctx)}, timeout)
    if api is None or "Ready after" not in pods.detail:
        return pods
    sw = SeaweedFS(api, ctx.inventory)
    volumes = {s.node for s in servers(ctx) if s.role == "volume"}

    def registered() -> bool:
        return volumes <= set(sw.topology()["node"])

    try:
        wait_for(registered, timeout, f"{len(volumes)} volume servers registered with the master")
    except Exception as exc:  # the checks say which server is missing
        return Change("wait for SeaweedFS", False, f"{pods.detail}; {explain(exc)}")
    return Change(
        "wait for SeaweedFS",
        False,
        f"{pods.detail.split(' after ')[0]} after {time.monotonic() - start:.1f} s, and "
        f"{len(volumes)} volume servers registered",
    )


def converge_filers(ctx: Context, api: Any) -> Change:
    """Every filer reads what every other wrote; a blind one is restarted
    (seaweed_filers.py says why SeaweedFS needs it)."""
    if api is None:
        return Change("filers see each other's files", False, "no target")
    try:
        return seaweed_filers.converge(SeaweedFS(api, ctx.inventory), api)
    except Exception as exc:  # the read-back check says which filer is blind
        return Change("filers see each other's files", False, explain(exc))


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


def check_health(sw: SeaweedFS | None) -> list[Check]:
    """What only `weed shell` shows: every server reaching every other, and the volumes a
    repair would copy (simulated: nothing is changed)."""
    titles = {
        "cluster-check": "Every SeaweedFS server reaches every other (weed shell cluster.check)",
        "replication-complete": "No volume is short of copies (volume.list; for any that "
        "is, volume.fix.replication simulated)",
    }
    if sw is None:
        return [no_target(cid, title) for cid, title in titles.items()]
    found: list[Any] = []

    def health() -> Any:
        if not found:
            found.append(sw.health())
        return found[0]

    def reach() -> Verdict:
        check, _, _ = health()
        unknown = (
            f"; {len(check.unknown)} not checked (the asking server does not track the target: "
            "'unknown ping target')"
            if check.unknown
            else ""
        )
        if check.problems:
            return "fail", f"{len(check.problems)} failed: " + "; ".join(
                check.problems[:4]
            ) + unknown
        return "pass", f"{check.ok} server pairs answered{unknown}"

    def complete() -> Verdict:
        _, _, repairs = health()
        if not repairs:
            return "pass", "every volume has the copies its replication asks for"
        # SeaweedFS does not repair by itself (only from master.toml's maintenance scripts).
        return "fail", "under-replicated, and SeaweedFS does not repair by itself: " + "; ".join(
            f"volume {r.volume} ({r.replication}) short of {r.missing}: -apply would copy "
            + ", ".join(r.plan)
            for r in repairs
        )

    return [
        timed("cluster-check", titles["cluster-check"], reach),
        timed("replication-complete", titles["replication-complete"], complete),
    ]


def check_csi(ctx: Context, api: Any) -> list[Check]:
    return seaweed_claims.check_csi(ctx, api, PHASE)


def check_claim(ctx: Context, api: Any, timeout: float = 120) -> list[Check]:
    return seaweed_claims.check_claim(ctx, api, timeout)


def rehearse_host_loss(ctx: Context, sw: SeaweedFS | None, probe: Probe | None, api: Any) -> Check:
    return seaweed_rehearsal.rehearse_host_loss(ctx, sw, probe, api, {s.pod for s in servers(ctx)})
