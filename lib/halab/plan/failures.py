"""The failure matrix: what still works with each host, and each pair of hosts, down (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from halab.inventory.model import App, Inventory, RackLayout
from halab.inventory.scheduling import FitTable
from halab.plan.placement import (
    PlacementError,
    Topology,
    find_slots,
    volume_servers,
    worst_copies_on,
)
from halab.plan.quorum import api_available, etcd_quorum, failure_sets, seaweed_master_quorum
from halab.replication import parse_replication


@dataclass(frozen=True)
class SeaweedState:
    readable: bool  # every volume keeps at least one copy, for every allowed placement
    writable: bool
    read_text: str
    write_text: str


def seaweed_state(inv: Inventory, down: set[str], code: str, racks: RackLayout) -> SeaweedState:
    rp = parse_replication(code)
    servers = volume_servers(inv, racks)
    masters = seaweed_master_quorum(inv, down)
    everyone = Topology.build(servers)  # find_slots and worst_copies_on only read it
    try:
        find_slots(everyone, rp)
    except PlacementError:
        text = f"no volumes exist: {code} cannot be placed even with every host up"
        return SeaweedState(False, False, text, text)
    lost = worst_copies_on(everyone, rp, down)
    if not masters.holds:
        text = f"no master leader (masters {masters})"
        return SeaweedState(False, False, text, text)
    if lost >= rp.copies:
        read_ok = False
        read_text = (
            f"volumes can be lost: all {rp.copies} copies of one volume may sit on "
            f"{', '.join(sorted(down))}"
        )
    else:
        read_ok = True
        read_text = f"all data readable (at most {lost} of {rp.copies} copies on the failed hosts)"
    try:
        find_slots(Topology.build(servers, down), rp)
        write_ok, write_text = True, f"new volumes can be grown with {code}"
    except PlacementError as exc:
        write_ok = False
        write_text = f"no new volumes: {str(exc).replace(chr(10), ' ')}"
    return SeaweedState(read_ok, write_ok, read_text, write_text)


def where_app_runs(
    inv: Inventory,
    fits: FitTable,
    app: App,
    down: set[str],
    api_up: bool,
    nfs_up: bool,
    seaweed_readable: bool,
) -> str:
    if app.kind == "docker":
        state = "down with its host" if app.host in down else f"runs on host {app.host}"
    elif app.kind == "daemonset":
        state = "runs on every surviving node it fits"
    else:
        state = _k8s_placement(inv, fits, app, down, api_up)
    notes = []
    if not nfs_up and any(v.kind == "nfs" for v in app.volumes):
        # A replacement pod cannot mount an NFS volume whose server is off: it waits.
        moving = state.startswith("moves to")
        notes.append("NFS media offline" + (": cannot start until it is back" if moving else ""))
    if not seaweed_readable and any(v.kind == "seaweedfs" for v in app.volumes):
        notes.append("its SeaweedFS volume may be unreadable")
    return state + (f" ({'; '.join(notes)})" if notes else "")


def _k8s_placement(inv: Inventory, fits: FitTable, app: App, down: set[str], api_up: bool) -> str:
    home = fits.best(app, inv.nodes)
    if home and all(n.host not in down for n in home):
        return f"stays on {' or '.join(n.name for n in home)}"
    survivors = [n for n in inv.nodes if n.host not in down]
    if not api_up:
        return "stopped: its node is down and nothing reschedules without the API"
    if app.kind == "statefulset":
        return "stuck Terminating until its node returns or the pod is force-deleted"
    nxt = fits.best(app, survivors)
    if not nxt:
        why = "; ".join(f"{n.name}: {', '.join(fits.reasons[app.name][n.name])}" for n in survivors)
        return f"cannot run: {why or 'no node left'}"
    if len(nxt) == 1:
        return f"moves to {nxt[0].name}"
    return f"moves to any of {', '.join(n.name for n in nxt)} (scheduler's choice)"


def gpu_workers_left(inv: Inventory, fits: FitTable, down: set[str], api_up: bool) -> list[str]:
    left = []
    for app in inv.apps:
        if app.role != "worker":
            continue
        if app.kind == "docker":
            if app.host not in down:
                left.append(app.name)
            continue
        home = fits.best(app, inv.nodes)
        survivors = [n for n in inv.nodes if n.host not in down]
        still_home = home and all(n.host not in down for n in home)
        if still_home or (api_up and fits.best(app, survivors)):
            left.append(app.name)
    return left


def failure_matrix(inv: Inventory, max_down: int = 2) -> list[dict[str, object]]:
    sw = inv.storage.seaweedfs
    nfs_host = inv.storage.nfs.host if inv.storage.nfs else None
    fits = FitTable(inv.apps, inv.nodes)
    rows: list[dict[str, object]] = []
    for hosts in failure_sets(inv, max_down):
        down = set(hosts)
        etcd = etcd_quorum(inv, down)
        api_up, api_text = api_available(inv, down)
        current = seaweed_state(inv, down, sw.replication, sw.racks)
        nfs_up = nfs_host is not None and nfs_host not in down
        row: dict[str, object] = {
            "hosts_down": "+".join(hosts),
            "nodes_down": ", ".join(n.name for n in inv.nodes if n.host in down),
            "etcd": str(etcd),
            "api_via_vip": "up" if api_up else "DOWN",
            "api_detail": api_text,
            "seaweedfs_masters": str(seaweed_master_quorum(inv, down)),
            "seaweedfs_read": current.read_text,
            "seaweedfs_write": current.write_text,
            "seaweedfs_readable": current.readable,
            "seaweedfs_writable": current.writable,
            "nfs_media": "up" if nfs_up else "DOWN",
            "gpu_workers": ", ".join(gpu_workers_left(inv, fits, down, api_up)) or "none",
        }
        if sw.target is not None:
            target = seaweed_state(inv, down, sw.target.replication, sw.target.racks)
            row["seaweedfs_target_read"] = target.read_text
        for app in inv.apps:
            row[f"app:{app.name}"] = where_app_runs(
                inv, fits, app, down, api_up, nfs_up, current.readable
            )
        rows.append(row)
    return rows
