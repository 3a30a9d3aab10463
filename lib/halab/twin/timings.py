"""The twin's timings, from the inventory's `cluster.timing` (Kubernetes defaults where
it says null), so a tuned inventory gives a twin that fails over as fast as it claims."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halab.inventory import Inventory

DEFAULT_GRACE_S = 50  # node-monitor-grace-period from Kubernetes 1.32
DEFAULT_TOLERATION_S = 300  # DefaultTolerationSeconds
DEFAULT_FORCE_DETACH_S = 360  # the attach-detach controller's maxWaitForUnmountDuration
# kube-controller-manager's --leader-elect-lease-duration, -renew-deadline, -retry-period:
# k3s passes none, so its controller manager fails over on Kubernetes' defaults, not on
# kube-vip's (often tuned far shorter) timings.
CONTROLLER_MANAGER_LEASE_S = (15.0, 10.0, 2.0)


@dataclass(frozen=True)
class TwinTimings:
    node_monitor_grace: float
    node_monitor_period: float
    kubelet_heartbeat: float
    not_ready_toleration: int
    unreachable_toleration: int
    vip_lease: float
    vip_renew: float
    vip_retry: float
    force_detach: float = DEFAULT_FORCE_DETACH_S
    controller_manager_lease: tuple[float, float, float] = CONTROLLER_MANAGER_LEASE_S

    @classmethod
    def from_inventory(cls, inv: Inventory) -> TwinTimings:
        t = inv.cluster.timing
        grace = float(t.node_monitor_grace_period_s or DEFAULT_GRACE_S)
        vip = t.kube_vip
        return cls(
            node_monitor_grace=grace,
            # The kubelet renews every 10 s and the controller looks every 5 s; a tuned
            # grace period shrinks both so a node is still seen 4-5 times per period.
            node_monitor_period=min(5.0, grace / 5),
            kubelet_heartbeat=min(10.0, grace / 5),
            not_ready_toleration=(
                t.default_not_ready_toleration_s
                if t.default_not_ready_toleration_s is not None
                else DEFAULT_TOLERATION_S
            ),
            unreachable_toleration=(
                t.default_unreachable_toleration_s
                if t.default_unreachable_toleration_s is not None
                else DEFAULT_TOLERATION_S
            ),
            vip_lease=float(vip.lease_duration_s),
            vip_renew=float(vip.renew_deadline_s),
            vip_retry=float(vip.retry_period_s),
            force_detach=float(t.force_detach_s or DEFAULT_FORCE_DETACH_S),
        )


# Failure timings short enough to rehearse a lost host in seconds on a twin (tests and
# bench/): each keeps the order of the real ones (grace > toleration, detach last).
REHEARSAL_TIMING: dict[str, Any] = {
    "node_monitor_grace_period_s": 4,
    "default_not_ready_toleration_s": 3,
    "default_unreachable_toleration_s": 3,
    "kube_vip": {"lease_duration_s": 2, "renew_deadline_s": 1, "retry_period_s": 1},
    "force_detach_s": 8,
}


def tuned_inventory(source: Path, path: Path) -> Path:
    """`source` with REHEARSAL_TIMING as its cluster.timing, written to `path`."""
    from ruamel.yaml import YAML

    from halab.inventory.yaml_source import read_yaml

    data: dict[str, Any] = copy.deepcopy(read_yaml(source).data)
    data["cluster"]["timing"] = copy.deepcopy(REHEARSAL_TIMING)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
    return path
