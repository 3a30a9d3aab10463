"""What the planner says an experiment will do, for this inventory and where the apps run
when it starts: which nodes go, where each followed app runs next and after how long, and
what SeaweedFS can still read.

The times are the planner's (halab.plan.failover) with the inventory's own timings: a
drained node's pods are evicted at once; a node that stops answering is NotReady after the
grace period, its pods evicted after their toleration, a RWO volume force-detached after
the detach timeout, and a StatefulSet's pod never replaced by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from halab.experiments.model import Experiment
from halab.inventory import Inventory
from halab.inventory.scheduling import FitTable
from halab.plan.failover import (
    DEFAULT_TOLERATION_S,
    FORCE_DETACH_S,
    default_grace_s,
    predict,
)
from halab.plan.failures import gpu_workers_left, seaweed_state
from halab.replication import parse_replication

# Eviction to a replacement Running takes stopping, detaching, pulling and starting: the
# planner cannot know how long an image takes here, so every comparison allows this much
# on top of the predicted time, and a quarter of the prediction for timers that tick.
START_ALLOWANCE_S = 30.0
TIMER_SLACK = 0.25


def tolerance_s(predicted: float) -> float:
    return START_ALLOWANCE_S + TIMER_SLACK * predicted


TOLERANCE_TEXT = (
    f"observed within predicted + {START_ALLOWANCE_S:.0f} s (stop, detach, start) "
    f"+ {TIMER_SLACK:.0%} of the prediction"
)


@dataclass(frozen=True)
class ControllerLease:
    """Which node's kube-controller-manager leads, and for how long its Lease holds: its
    node lifecycle controller is what marks a silent node NotReady, so a fault that takes
    the leader's node is noticed only once another server has taken the lease."""

    node: str
    duration_s: float


@dataclass(frozen=True)
class AppOutlook:
    app: str
    before: str  # the node it ran on when the experiment started ("" if none)
    moves: bool
    next_nodes: tuple[str, ...]  # where the planner says it may run during the fault
    predicted_s: float | None  # until it runs again; None: never by itself
    why: str


@dataclass(frozen=True)
class Outlook:
    down_nodes: tuple[str, ...]
    api_up: bool
    seaweed_readable: bool
    seaweed_text: str
    apps: tuple[AppOutlook, ...]
    nfs_up: bool = True
    gpu_workers: tuple[str, ...] = ()  # the transcode workers the planner says are left


def eviction_after_s(inv: Inventory) -> int:
    """Grace period and unreachable toleration with the inventory's timings: by then the
    pods of a lost node are evicted."""
    timing = inv.cluster.timing
    grace = timing.node_monitor_grace_period_s or default_grace_s(inv.cluster.kube_minor)
    toleration = timing.default_unreachable_toleration_s
    return grace + (DEFAULT_TOLERATION_S if toleration is None else toleration)


def down_nodes(inv: Inventory, exp: Experiment) -> list[str]:
    if exp.fault.kind in ("stop-volume-server", "cut-nfs"):
        return []  # the node stays; one of its pods goes, or its NFS access
    hosts = {h.name for h in inv.hosts}
    found: list[str] = []
    for subject in exp.fault.subjects:
        if exp.fault.kind == "power-off" and subject in hosts:
            found += [n.name for n in inv.nodes_on(subject)]
        else:
            found.append(subject)
    return found


def hosts_down(inv: Inventory, exp: Experiment) -> set[str]:
    """The physical hosts the fault switches off."""
    if exp.fault.kind != "power-off":
        return set()
    return set(exp.fault.subjects) & {h.name for h in inv.hosts}


def _masters_left(inv: Inventory, gone: set[str], present: set[str] | None) -> tuple[bool, str]:
    """Whether the SeaweedFS masters running now keep a leader without `gone` (before a
    rollout's last phase some of the inventory's masters are not there yet)."""
    running = [m.name for m in inv.seaweed_masters if present is None or m.name in present]
    left = [m for m in running if m not in gone]
    if not running or len(left) > len(running) // 2:
        return True, ""
    return False, (
        f"no master leader: {len(left)} of the {len(running)} masters running now "
        f"({', '.join(running)}) would be left, so no volume can be looked up"
    )


def outlook(
    inv: Inventory,
    exp: Experiment,
    running_on: dict[str, str],
    present: set[str] | None = None,
    lease: ControllerLease | None = None,
) -> Outlook:
    """The planner's expectation; `running_on` is where each followed app runs now,
    `present` the nodes the cluster has now (None: every node of the inventory), `lease`
    where the controller manager leads now (None: not known, no takeover counted)."""
    gone = set(down_nodes(inv, exp))
    servers = [n.name for n in inv.servers]
    left = [s for s in servers if s not in gone]
    api_up = len(left) > len(servers) // 2 and bool(left)
    sw = inv.storage.seaweedfs
    if exp.fault.kind == "cut-nfs":
        readable, text = True, "not touched"
    elif exp.fault.kind == "stop-volume-server":
        copies = parse_replication(sw.replication).copies
        readable = copies >= 2
        text = (
            f"every volume keeps {copies - 1} of its {copies} copies elsewhere"
            if readable
            else f"replication {sw.replication} keeps one copy: its volumes go with the server"
        )
    else:
        hosts = {inv.node(n).host for n in gone}
        whole = {h for h in hosts if all(x.name in gone for x in inv.nodes_on(h))}
        state = seaweed_state(inv, whole, sw.replication, sw.racks)
        readable, text = state.readable, state.read_text
        led, why = _masters_left(inv, gone, present)
        if not led:
            readable, text = False, why
    fits = FitTable(inv.apps, inv.nodes)
    survivors = [n for n in inv.nodes if n.name not in gone]
    timing = inv.cluster.timing
    grace = timing.node_monitor_grace_period_s or default_grace_s(inv.cluster.kube_minor)
    toleration = timing.default_unreachable_toleration_s
    toleration = DEFAULT_TOLERATION_S if toleration is None else toleration
    detach = timing.force_detach_s or FORCE_DETACH_S
    off = hosts_down(inv, exp)
    nfs = inv.storage.nfs
    nfs_up = nfs is None or nfs.host not in off
    apps = []
    for name in exp.follow:
        app = inv.app(name)
        before = running_on.get(name, "")
        if before not in gone:
            apps.append(AppOutlook(name, before, False, (before,), 0.0, "its node stays"))
            continue
        nxt = tuple(n.name for n in fits.best(app, survivors))
        media = [v.name for v in app.volumes if v.kind == "nfs"]
        if not nxt:
            apps.append(AppOutlook(name, before, True, (), None, "no node left that fits it"))
        elif not api_up:
            apps.append(AppOutlook(name, before, True, nxt, None, "the API is lost"))
        elif media and not nfs_up:
            assert nfs is not None
            why = (
                f"its NFS volume {', '.join(media)} is served from {nfs.host}, which is off: "
                "the kubelet cannot mount it, so the replacement waits for the host"
            )
            apps.append(AppOutlook(name, before, True, nxt, None, why))
        elif exp.fault.kind == "drain":
            apps.append(AppOutlook(name, before, True, nxt, 0.0, "evicted at once by the drain"))
        elif app.kind == "statefulset":
            why = "a StatefulSet's pod is not replaced until its node returns or is force-deleted"
            apps.append(AppOutlook(name, before, True, nxt, None, why))
        else:
            p = predict(app, grace, toleration, detach)
            assert p.total_s is not None  # only a StatefulSet's is None, handled above
            why = f"NotReady after {grace} s, evicted {p.toleration_s} s later" + (
                f", its RWO volume force-detached {p.detach_s} s after that" if p.detach_s else ""
            )
            takeover = 0.0
            if lease is not None and lease.node in gone:
                takeover = lease.duration_s
                why = (
                    f"the controller manager's lease on {lease.node} (which goes) taken by "
                    f"another server after {takeover:.0f} s, then " + why
                )
            apps.append(AppOutlook(name, before, True, nxt, float(p.total_s) + takeover, why))
    workers = (
        gpu_workers_left(inv, fits, off, api_up)
        if off
        else [a.name for a in inv.apps if a.role == "worker"]
    )
    return Outlook(tuple(sorted(gone)), api_up, readable, text, tuple(apps), nfs_up, tuple(workers))
