"""Phase 6, control-plane HA: every server the rollout has brought in by phase 6 Ready,
as many etcd members with one leader, the API on the VIP, and, when disruption is
allowed, one control-plane host's plug pulled to prove the API stays up (the host is
always powered back on).

Plan "Phase 6: Control Plane HA": the new servers joined through the VIP with kube-vip,
an etcd quorum, the API reachable through the VIP.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from matplotlib.figure import Figure

from halab.context import Context
from halab.evidence import Check, Status, timed
from halab.explain import explain
from halab.inventory import Node
from halab.kube import etcd_divergence, etcd_members, lease_holder, server_url, wait_for
from halab.phases import loadbalancer
from halab.phases.cluster_checks import LiveNodes, no_target, nothing_joins
from halab.plan.quorum import api_available
from halab.power import PowerSwitch

PHASE = 6


def servers(ctx: Context) -> list[Node]:
    """The control plane once phase 6 is done: every server the rollout has brought in."""
    return ctx.inventory.servers_present(PHASE)


def scope(ctx: Context) -> pd.DataFrame:
    """The control plane once phase 6 is done, server by server, with its quorum."""
    present = servers(ctx)
    needed = len(present) // 2 + 1
    rows = [
        {
            "node": n.name,
            "host": n.host,
            "joins in phase": ctx.inventory.joins_in(n.name),
            "etcd quorum": f"{needed} of {len(present)}",
        }
        for n in present
    ]
    return pd.DataFrame(rows, columns=["node", "host", "joins in phase", "etcd quorum"])


def titles(ctx: Context) -> dict[str, str]:
    count = len(servers(ctx))
    return {
        "control-plane": f"{count} control-plane node{'s' if count != 1 else ''} Ready",
        "etcd-quorum": f"etcd has {count} member{'s' if count != 1 else ''} and one leader",
        CONSISTENT: CONSISTENT_TITLE,
        "api-via-vip": "The API answers through the VIP",
    }


def checks(ctx: Context, api: Any) -> tuple[list[Check], pd.DataFrame]:
    """The read-only checks of phase 6, and the etcd member table."""
    named = titles(ctx)
    if api is None or ctx.target is None:
        return [no_target(cid, title) for cid, title in named.items()], pd.DataFrame()
    members: list[pd.DataFrame] = []

    def etcd() -> Check:
        check, table = check_etcd(ctx)
        members.append(table)
        return check

    found = [
        timed("control-plane", named["control-plane"], lambda: check_control_plane(ctx, api)),
        timed("etcd-quorum", named["etcd-quorum"], etcd),
        timed(CONSISTENT, CONSISTENT_TITLE, lambda: check_consistent(ctx)),
        timed("api-via-vip", named["api-via-vip"], lambda: check_vip(ctx, api)),
        check_gateway_sessions(ctx, api),
    ]
    return found, members[0] if members else pd.DataFrame()


def check_gateway_sessions(ctx: Context, api: Any) -> Check:
    """The plan's "update UDM BGP config for new node IPs": the gateway peers with the
    nodes this phase brings, once MetalLB's speakers run (phase 7 delivers MetalLB)."""
    joining = ctx.inventory.nodes_joining(PHASE)
    names = ", ".join(n.name for n in joining) or "no node"
    cid, title = f"bgp-joined-{PHASE}", f"The gateway has a BGP session with {names}"
    if not joining:
        return nothing_joins(cid, PHASE)
    if ctx.inventory.network.metallb.mode != "bgp":
        return Check(cid, title, "skip", "MetalLB runs in L2 mode: no BGP", required=False)
    if not loadbalancer.deployed(api):
        why = "MetalLB is not deployed yet (phase 7 delivers it): no speaker to peer with"
        return Check(cid, title, "skip", why, required=False)
    return loadbalancer.check_bgp_sessions(ctx, joining, cid, title)


def check_control_plane(ctx: Context, api: Any) -> tuple[Status, str]:
    """Every server present after phase 6 Ready with the control-plane role; a live
    control-plane node the inventory does not know is named too."""
    want = [n.name for n in servers(ctx)]
    live = LiveNodes(api)
    bad = []
    for name in want:
        scope = live.scope(ctx, name, PHASE)
        status, detail = scope.ready()
        labels = (scope.live.metadata.labels or {}) if scope.live is not None else {}
        if status != "pass":
            bad.append(f"{name}: {detail}")
        elif labels.get("node-role.kubernetes.io/control-plane") != "true":
            bad.append(f"{name}: Ready but without the control-plane role")
    strangers = sorted(
        name
        for name, node in live.items.items()
        if (node.metadata.labels or {}).get("node-role.kubernetes.io/control-plane") == "true"
        and name not in want
    )
    if strangers:
        bad.append(f"control-plane nodes the inventory does not have: {', '.join(strangers)}")
    if bad:
        return "fail", "; ".join(bad)
    return "pass", f"{', '.join(want)} Ready with the control-plane role"


def check_etcd(ctx: Context) -> tuple[Check, pd.DataFrame]:
    assert ctx.target is not None
    members = etcd_members(ctx.target)
    want = [n.name for n in servers(ctx)]
    # k3s names members <hostname>-<8 hex>; the twin names them after the node.
    matched = [s for s in want if any(_member_of(str(m), s) for m in members.index)]
    unmatched = [str(m) for m in members.index if not any(_member_of(str(m), s) for s in want)]
    leaders = list(members.index[members["leader"]])
    ok = len(members) == len(want) and len(matched) == len(want) and len(leaders) == 1
    leader = leaders[0] if leaders else "none"
    detail = f"{len(members)} members ({', '.join(members.index)}), leader {leader}"
    if missing := [s for s in want if s not in matched]:
        detail += f"; no member for {', '.join(missing)}"
    if unmatched:
        detail += f"; members of no server in the inventory: {', '.join(unmatched)}"
    if len(leaders) > 1:
        detail += f"; {len(leaders)} members claim to lead: {', '.join(leaders)}"
    return Check(
        "etcd-quorum", titles(ctx)["etcd-quorum"], "pass" if ok else "fail", detail
    ), members


def _member_of(member: str, node: str) -> bool:
    """k3s names a member <hostname>-<8 hex>; the twin names it after the node."""
    if member == node:
        return True
    head, _, tail = member.rpartition("-")
    return head == node and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail)


CONSISTENT = "etcd-consistent"
CONSISTENT_TITLE = "Every etcd member holds the same data"


def check_consistent(ctx: Context, cid: str = CONSISTENT) -> Check:
    """Each member's own keys and their last-write revisions, compared at one revision."""
    assert ctx.target is not None
    found = etcd_divergence(ctx.target)
    detail = found or f"{len(ctx.target.etcd.endpoints)} members agree key for key"
    return Check(cid, CONSISTENT_TITLE, "fail" if found else "pass", detail)


def check_vip(ctx: Context, api: Any) -> Check:
    from kubernetes import client

    assert ctx.target is not None
    url = urlparse(server_url(ctx.target))
    vip = str(ctx.target.addresses.map(ctx.inventory.network.vip))
    version = client.VersionApi(api).get_code().git_version
    holder = lease_holder(api)
    ok = url.hostname == vip and holder in {n.name for n in servers(ctx)}
    detail = (
        f"kubeconfig points at {url.hostname}:{url.port} (VIP {vip}); {version} answers; "
        f"VIP held by {holder or 'nobody'} (lease kube-system/plndr-cp-lock)"
    )
    return Check("api-via-vip", "The API answers through the VIP", "pass" if ok else "fail", detail)


@dataclass
class Probe:
    """GET /version on the VIP several times a second, recording up or down."""

    url: str
    samples: list[tuple[float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"{self.url}/version", timeout=0.5) as resp:
                    ok = resp.status == 200
            except (OSError, urllib.error.URLError):
                ok = False
            self.samples.append((time.monotonic(), ok))
            self.stop.wait(0.2)


@dataclass
class Rehearsal:
    checks: list[Check]
    timeline: pd.DataFrame  # seconds since the plug was pulled, api_up
    host: str = ""
    events: dict[str, float] = field(default_factory=dict)


def rehearse_failure(ctx: Context, api: Any, settle_timeout: float = 240) -> Rehearsal:
    """Pull the plug on the host whose node holds the VIP; bring it back, always."""
    from kubernetes import client

    title = "The API stays up with one control-plane host down"
    if api is None or ctx.target is None:
        return Rehearsal([no_target("api-survives-host-loss", title)], pd.DataFrame())
    if not ctx.allow_disruption:
        why = "disruption not allowed: run with allow_disruption=True to pull a host's plug"
        return Rehearsal([Check("api-survives-host-loss", title, "skip", why)], pd.DataFrame())
    assert ctx.target is not None
    power = PowerSwitch.for_target(ctx.target)
    holder = lease_holder(api)
    host = next((n.host for n in servers(ctx) if n.name == holder), None)
    if host is None:
        why = f"the VIP is held by {holder or 'nobody'}, not by a server of the inventory"
        return Rehearsal([Check("api-survives-host-loss", title, "fail", why)], pd.DataFrame())
    survives, reason = api_available(ctx.inventory, {host})
    if not survives:
        # Pulling this plug would take the API down by the planner's own reckoning.
        why = f"not pulled: the planner says the API is lost with {host} down ({reason})"
        return Rehearsal([Check("api-survives-host-loss", title, "fail", why)], pd.DataFrame())
    probe = Probe(server_url(ctx.target))
    worker = threading.Thread(target=probe.run, daemon=True)
    worker.start()
    time.sleep(1.0)  # a baseline before the plug is pulled
    pulled = time.monotonic()
    events: dict[str, float] = {}
    checks: list[Check] = []
    core = client.CoreV1Api(api)
    try:
        power.off(host)
        # The off command itself takes a moment; the plug is out by the time it returns.
        events["power off done"] = time.monotonic() - pulled
        new_holder = wait_for(
            lambda: (h := lease_holder(api)) != holder and h, 120, "another host holds the VIP"
        )
        events["VIP moved"] = time.monotonic() - pulled
        name = f"write-{uuid.uuid4().hex[:6]}"
        wait_for(
            lambda: core.create_namespaced_config_map("default", {"metadata": {"name": name}}),
            60,
            "a write through the VIP",
        )
        core.delete_namespaced_config_map(name, "default")
        events["writes work"] = time.monotonic() - pulled
        checks.append(
            Check(
                "api-survives-host-loss",
                title,
                "pass",
                f"{host} powered off; VIP moved {holder} -> {new_holder} after "
                f"{events['VIP moved']:.1f} s; writes worked after {events['writes work']:.1f} s",
                seconds=round(events["writes work"], 3),
            )
        )
    except Exception as exc:  # the rehearsal failed; the host still comes back below
        checks.append(
            Check(
                "api-survives-host-loss",
                title,
                "fail",
                explain(exc),
                seconds=round(time.monotonic() - pulled, 3),
            )
        )
    finally:
        # Heartbeats the host's nodes had sent before power on: "back" means new ones.
        before = _heartbeats(api, [n.name for n in ctx.inventory.nodes_on(host)])
        power.on(host)
        events["power on"] = time.monotonic() - pulled
    try:
        wait_for(
            lambda: _back(api, before) and _all_ready(api),
            settle_timeout,
            f"the nodes of {host} heartbeating again and every node Ready",
        )
        events["restored"] = time.monotonic() - pulled
        back = events["restored"] - events["power on"]
        checks.append(
            Check(
                "host-restored",
                f"{host} is back and every node Ready",
                "pass",
                f"after {back:.1f} s",
                seconds=round(back, 3),
            )
        )
    except Exception as exc:
        checks.append(
            Check(
                "host-restored",
                f"{host} is back and every node Ready",
                "fail",
                explain(exc),
                seconds=round(time.monotonic() - pulled - events["power on"], 3),
            )
        )
    finally:
        time.sleep(1.0)  # a little after, for the picture
        probe.stop.set()
        worker.join(2)
    # The member that was just killed is the one that could have come back different.
    # (wait_for retries while a member does not answer; a disagreement ends it at once.)
    checks.append(
        timed(
            f"{CONSISTENT}-after",
            CONSISTENT_TITLE,
            lambda: wait_for(
                lambda: check_consistent(ctx, f"{CONSISTENT}-after"), 60, "every member answers"
            ),
        )
    )
    timeline = pd.DataFrame([{"seconds": t - pulled, "api_up": ok} for t, ok in probe.samples])
    return Rehearsal(checks, timeline, host, events)


def _heartbeats(api: Any, names: list[str]) -> dict[str, Any]:
    """Each node's last heartbeat (its Lease's renewTime), None where none is readable."""
    from kubernetes import client

    coordination = client.CoordinationV1Api(api)
    seen: dict[str, Any] = {}
    for name in names:
        try:
            seen[name] = coordination.read_namespaced_lease(name, "kube-node-lease").spec.renew_time
        except Exception:  # mid-failover the API may not answer; then any heartbeat is new
            seen[name] = None
    return seen


def _back(api: Any, before: dict[str, Any]) -> bool:
    """True once every node has heartbeated since `before` was taken: a node whose kubelet
    just came back, not one whose old heartbeat has simply not timed out yet."""
    now = _heartbeats(api, list(before))
    return all(now[name] is not None and now[name] != seen for name, seen in before.items())


def _all_ready(api: Any) -> bool:
    from kubernetes import client

    nodes = client.CoreV1Api(api).list_node().items
    return bool(nodes) and all(
        any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        for n in nodes
    )


def availability_figure(rehearsal: Rehearsal) -> Figure:
    """API up/down through the VIP around the pulled plug, with the moments that matter."""
    fig = Figure(figsize=(8, 2.6))
    ax = fig.add_subplot()
    frame = rehearsal.timeline
    if not frame.empty:
        ax.step(frame["seconds"], frame["api_up"].astype(int), where="post", color="#2b6cb0")
        ax.fill_between(
            frame["seconds"], frame["api_up"].astype(int), step="post", alpha=0.2, color="#2b6cb0"
        )
    ax.axvline(0, color="#c53030", linestyle="--", label=f"power off sent ({rehearsal.host})")
    colours = ["#c53030", "#2f855a", "#805ad5", "#dd6b20", "#718096"]
    for (label, at), colour in zip(
        sorted(rehearsal.events.items(), key=lambda kv: kv[1]), colours, strict=False
    ):
        ax.axvline(at, color=colour, linestyle=":", label=f"{label} ({at:.1f} s)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.set_yticks([0, 1], ["down", "up"])
    ax.set_ylim(-0.1, 1.25)
    ax.set_xlabel("seconds since the plug was pulled")
    ax.set_title("Kubernetes API through the VIP")
    return fig
