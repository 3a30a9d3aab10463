"""Phase 2's rehearsal, the plan's "stop w1, verify data accessible": a copy holder's host
powered off, the file read back elsewhere, the host powered on and its pods started again,
and any volume that had every copy there named."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, Status
from halab.explain import explain
from halab.kube import wait_for
from halab.phases.cluster_checks import no_target
from halab.phases.seaweed_data import Probe, copies_table
from halab.phases.seaweed_servers import starts, wait_restarted
from halab.plan.analysis import Analysis
from halab.plan.quorum import api_available
from halab.power import PowerSwitch
from halab.seaweed import SeaweedError, SeaweedFS


def rehearse_host_loss(
    ctx: Context, sw: SeaweedFS | None, probe: Probe | None, api: Any, want: set[str]
) -> Check:
    """Plan: "stop w1, verify data accessible". The host of a volume server that holds a
    copy of the probe file (a worker's first) is powered off; the file must still read
    back with its checksum through a filer elsewhere; the host is always powered on, and
    the rehearsal ends when its pods started again and every pod in `want` is Ready."""
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
    probe_hosts = {n.host for n in nodes}
    # A host whose loss leaves a copy of the probe first (that is what the rehearsal can
    # prove), a worker's next (the plan stops w1), and only one whose loss keeps the API.
    # Where every copy sits on one host, losing it loses the probe: reported below.
    candidates = sorted(nodes, key=lambda n: (not probe_hosts - {n.host}, n.is_server, n.name))
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
    before = starts(api, on_host)
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
    back = wait_restarted(api, on_host, before, want)
    detail += f"; {host} powered on, SeaweedFS: {back.detail}"
    if back.failed and status == "pass":
        # The data held, but the servers did not all come back: worth a look before
        # the next host goes, not a lost file.
        status = "warn"
    if stranded:
        detail += f"; volumes with every copy on {host}, unreadable while it was down: " + (
            ", ".join(str(v) for v in stranded)
        )
        predicted = not Analysis(ctx.inventory).current.distinct_hosts
        if status == "pass":
            status = "warn" if predicted else "fail"
        elif predicted and set(probe.volumes) <= set(stranded):
            # The probe itself had every copy there, as the planner says this layout allows.
            status = "warn"
            detail += " (the probe's own volume among them, as the planner predicts)"
    return Check(
        "survives-host-loss", title, status, detail, seconds=round(time.monotonic() - start, 3)
    )


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
