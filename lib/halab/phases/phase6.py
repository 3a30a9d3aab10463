"""Phase 6, control-plane HA: three control-plane nodes, three etcd members with a
leader, the API on the VIP, and, when disruption is allowed, one control-plane host's
plug pulled to prove the API stays up (the host is always powered back on).

Plan "Phase 6: Control Plane HA": kube-vip on cp1, cp2 and cp3 joined through the VIP,
3-node etcd quorum, API reachable through the VIP.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from matplotlib.figure import Figure

from halab.context import Context
from halab.evidence import Check
from halab.kube import etcd_divergence, etcd_members, lease_holder, server_url, wait_for
from halab.phases.cluster_checks import no_target
from halab.power import PowerSwitch


def checks(ctx: Context, api: Any) -> tuple[list[Check], pd.DataFrame]:
    """The read-only checks of phase 6, and the etcd member table."""
    if api is None or ctx.target is None:
        return [
            no_target("control-plane-3", "Three control-plane nodes are Ready"),
            no_target("etcd-quorum", "etcd has three members and one leader"),
            no_target(CONSISTENT, CONSISTENT_TITLE),
            no_target("api-via-vip", "The API answers through the VIP"),
        ], pd.DataFrame()
    found = [
        _guarded(
            "control-plane-3",
            "Three control-plane nodes are Ready",
            lambda: check_control_plane(ctx, api),
        )
    ]
    members = pd.DataFrame()
    try:
        etcd, members = check_etcd(ctx)
        found.append(etcd)
    except Exception as exc:  # no etcd endpoint answered: a failed check, not a crash
        found.append(
            Check("etcd-quorum", "etcd has three members and one leader", "fail", str(exc))
        )
    found.append(_guarded(CONSISTENT, CONSISTENT_TITLE, lambda: check_consistent(ctx)))
    found.append(
        _guarded("api-via-vip", "The API answers through the VIP", lambda: check_vip(ctx, api))
    )
    return found, members


def _guarded(cid: str, title: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as exc:  # the cluster did not answer: a failed check with the reason
        return Check(cid, title, "fail", f"{type(exc).__name__}: {exc}")


def check_control_plane(ctx: Context, api: Any) -> Check:
    from kubernetes import client

    servers = [n.name for n in ctx.inventory.servers]
    live = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    bad = []
    for name in servers:
        node = live.get(name)
        labels = (node.metadata.labels or {}) if node else {}
        ready = node is not None and any(
            c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
        )
        if not ready or labels.get("node-role.kubernetes.io/control-plane") != "true":
            bad.append(
                f"{name}: {'missing' if node is None else 'not Ready or no control-plane role'}"
            )
    detail = "; ".join(bad) if bad else f"{', '.join(servers)} Ready with the control-plane role"
    ok = not bad and len(servers) == 3
    return Check(
        "control-plane-3", "Three control-plane nodes are Ready", "pass" if ok else "fail", detail
    )


def check_etcd(ctx: Context) -> tuple[Check, pd.DataFrame]:
    assert ctx.target is not None
    members = etcd_members(ctx.target)
    servers = [n.name for n in ctx.inventory.servers]
    # k3s names members <hostname>-<8 hex>; the twin names them after the node.
    matched = [s for s in servers if any(str(m).startswith(s) for m in members.index)]
    leaders = list(members.index[members["leader"]])
    ok = len(members) == 3 and len(matched) == 3 and len(leaders) == 1
    leader = leaders[0] if leaders else "none"
    detail = f"{len(members)} members ({', '.join(members.index)}), leader {leader}"
    return Check(
        "etcd-quorum", "etcd has three members and one leader", "pass" if ok else "fail", detail
    ), members


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
    servers = {n.name for n in ctx.inventory.servers}
    ok = url.hostname == vip and holder in servers
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
    host = next(n.host for n in ctx.inventory.servers if n.name == holder)
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
            )
        )
    except Exception as exc:  # the rehearsal failed; the host still comes back below
        checks.append(
            Check("api-survives-host-loss", title, "fail", f"{type(exc).__name__}: {exc}")
        )
    finally:
        power.on(host)
        events["power on"] = time.monotonic() - pulled
    try:
        wait_for(lambda: _all_ready(api), settle_timeout, "every node Ready again")
        events["restored"] = time.monotonic() - pulled
        checks.append(
            Check(
                "host-restored",
                f"{host} is back and every node Ready",
                "pass",
                f"after {events['restored'] - events['power on']:.1f} s",
            )
        )
    except Exception as exc:
        checks.append(
            Check("host-restored", f"{host} is back and every node Ready", "fail", str(exc))
        )
    finally:
        time.sleep(1.0)  # a little after, for the picture
        probe.stop.set()
        worker.join(2)
    # The member that was just killed is the one that could have come back different.
    # (wait_for retries while a member does not answer; a disagreement ends it at once.)
    checks.append(
        _guarded(
            f"{CONSISTENT}-after",
            CONSISTENT_TITLE,
            lambda: wait_for(
                lambda: check_consistent(ctx, f"{CONSISTENT}-after"), 60, "every member answers"
            ),
        )
    )
    timeline = pd.DataFrame([{"seconds": t - pulled, "api_up": ok} for t, ok in probe.samples])
    return Rehearsal(checks, timeline, host, events)


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
