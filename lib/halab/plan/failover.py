"""Predicted time until a workload runs again after its node's host fails (pure).

From the k3s/Kubernetes timing facts in reference/k3s-ha.md §2: the node goes NotReady
after node-monitor-grace-period (40 s before 1.32, 50 s from 1.32), pods are evicted after
their NoExecute toleration (300 s by default), a StatefulSet pod is never replaced until
someone force-deletes it, and an attached RWO volume is force-detached only 6 minutes
after the pod's deletion started.
"""

from __future__ import annotations

from dataclasses import dataclass

from halab.inventory.model import App, Inventory

DEFAULT_TOLERATION_S = 300
FORCE_DETACH_S = 360
RECOMMENDED = {"grace": 20, "toleration": 30}  # k3s-ha.md §2.3's tuned example


def default_grace_s(kube_minor: int) -> int:
    return 50 if kube_minor >= 32 else 40


def has_attached_rwo(app: App) -> bool:
    # The SeaweedFS CSI chart enables its attacher, so RWO claims get a VolumeAttachment;
    # NFS volumes have none (k3s-ha.md §2.4).
    return any(v.kind == "seaweedfs" and v.access == "RWO" for v in app.volumes)


def _own_toleration(app: App) -> int | None:
    for tol in app.placement.tolerations:
        if tol.key == "node.kubernetes.io/unreachable" and tol.toleration_seconds is not None:
            return tol.toleration_seconds
    return None


@dataclass(frozen=True)
class FailoverPrediction:
    workload: str
    kind: str
    grace_s: int
    toleration_s: int
    detach_s: int
    total_s: int | None  # None: never, without a person

    @property
    def text(self) -> str:
        if self.total_s is None:
            return "never by itself (force-delete the pod or taint the node out-of-service)"
        return f"{self.total_s} s"


def predict(
    app: App, grace_s: int, toleration_s: int, detach_s: int = FORCE_DETACH_S
) -> FailoverPrediction:
    """`detach_s` is the attach-detach controller's wait (6 min at home; a twin's inventory
    may shorten it with `force_detach_s`)."""
    tol = _own_toleration(app)
    tol_s = tol if tol is not None else toleration_s
    detach = detach_s if has_attached_rwo(app) else 0
    total: int | None = grace_s + tol_s + detach
    if app.kind == "statefulset":
        total = None
    return FailoverPrediction(app.name, app.kind, grace_s, tol_s, detach, total)


def predictions(inv: Inventory) -> list[dict[str, object]]:
    """One row per Kubernetes workload: defaults, this inventory, and a tuned cluster."""
    timing = inv.cluster.timing
    default_grace = default_grace_s(inv.cluster.kube_minor)
    inv_grace = timing.node_monitor_grace_period_s or default_grace
    inv_tol = timing.default_unreachable_toleration_s
    inv_tol = DEFAULT_TOLERATION_S if inv_tol is None else inv_tol
    rows: list[dict[str, object]] = []
    for app in inv.apps:
        if app.kind not in ("deployment", "statefulset"):
            continue
        d = predict(app, default_grace, DEFAULT_TOLERATION_S)
        i = predict(app, inv_grace, inv_tol)
        t = predict(app, RECOMMENDED["grace"], RECOMMENDED["toleration"])
        rows.append(
            {
                "workload": app.name,
                "kind": app.kind,
                "rwo_volume_detach_s": d.detach_s,
                "defaults_s": d.total_s,
                "inventory_s": i.total_s,
                "tuned_s": t.total_s,
                "explanation": _explain(i),
            }
        )
    kv = timing.kube_vip
    rows.append(
        {
            "workload": "API VIP (kube-vip)",
            "kind": "lease",
            "rwo_volume_detach_s": 0,
            "defaults_s": 15 + 2,
            "inventory_s": kv.lease_duration_s + kv.retry_period_s,
            "tuned_s": 5 + 1,
            "explanation": "lease duration + retry period, then gratuitous ARP",
        }
    )
    return rows


def _explain(p: FailoverPrediction) -> str:
    if p.total_s is None:
        return (
            f"NotReady after {p.grace_s} s, evicted after {p.toleration_s} s, then the "
            "StatefulSet waits for the old pod to be deleted"
        )
    parts = [f"NotReady after {p.grace_s} s", f"evicted {p.toleration_s} s later"]
    if p.detach_s:
        parts.append(f"RWO volume force-detached {p.detach_s} s after that")
    return ", ".join(parts) + ", plus image pull and start"
