"""Would the Kubernetes scheduler place this app on this node? (pure)

Models the filters that matter for the plan: node selectors, required and preferred
node affinity, taints and tolerations, and resource requests against capacity.
Shared by the inventory rules ("every workload schedulable") and the planner
("where a workload runs next when a host fails").
"""

from __future__ import annotations

from decimal import Decimal

from halab.inventory.model import App, Node, Taint, Toleration
from halab.inventory.quantity import parse_quantity

# The plan asks for `intel.com/gpu`, which no plugin advertises (reference/k3s-ha.md §5).
# The scheduling rule reads it as "a GPU", so the rest of the analysis still runs, and the
# planner reports the wrong name as a finding with the fix.
GPU_RESOURCE_ALIASES = frozenset({"intel.com/gpu"})

# Labels k3s puts on every node, and on servers (reference/k3s-ha.md §1.5).
SERVER_ROLE_LABELS = {
    "node-role.kubernetes.io/control-plane": "true",
    "node-role.kubernetes.io/master": "true",
    "node-role.kubernetes.io/etcd": "true",
}


def node_labels(node: Node) -> dict[str, str]:
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/arch": node.arch,
        "kubernetes.io/os": "linux",
    }
    if node.is_server:
        labels.update(SERVER_ROLE_LABELS)
    labels.update(node.labels)
    labels.update(node.api_labels)
    return labels


def node_capacity(node: Node) -> dict[str, Decimal]:
    capacity = {
        "cpu": Decimal(node.cpu),
        "memory": Decimal(str(node.memory_gib)) * Decimal(2**30),
        "pods": Decimal(110),
    }
    if node.gpu is not None:
        capacity[node.gpu.resource_name] = Decimal(node.gpu.shared_dev_num)
    return capacity


def tolerates(tolerations: list[Toleration], taint: Taint) -> bool:
    for tol in tolerations:
        if tol.effect and tol.effect != taint.effect:
            continue
        if tol.operator == "Exists":
            if not tol.key or tol.key == taint.key:
                return True
        elif tol.key == taint.key and tol.value == taint.value:
            return True
    return False


def app_requests(app: App) -> dict[str, Decimal]:
    """Requests as the API server defaults them: extended resources come from limits."""
    wanted = {name: parse_quantity(q) for name, q in app.resources.requests.items()}
    for name, quantity in app.resources.limits.items():
        if name not in ("cpu", "memory", "ephemeral-storage"):
            wanted.setdefault(name, parse_quantity(quantity))
    return wanted


def misfit_reasons(app: App, node: Node) -> list[str]:
    """Why `app` cannot run on `node`; empty when it can."""
    reasons: list[str] = []
    labels = node_labels(node)
    for key, value in app.placement.node_selector.items():
        if labels.get(key) != value:
            reasons.append(f"node selector {key}={value} not matched")
    for key, values in app.placement.required.items():
        if labels.get(key) not in values:
            reasons.append(f"required affinity {key} in {values} not matched")
    for taint in node.taints:
        if taint.effect in ("NoSchedule", "NoExecute") and not tolerates(
            app.placement.tolerations, taint
        ):
            reasons.append(f"taint {taint} not tolerated")
    capacity = node_capacity(node)
    for name, amount in app_requests(app).items():
        have = capacity.get(name)
        if have is None and name in GPU_RESOURCE_ALIASES and node.gpu is not None:
            have = Decimal(node.gpu.shared_dev_num)
        if have is None:
            reasons.append(f"node offers no {name}")
        elif amount > have:
            reasons.append(f"insufficient {name} (asks {amount}, node has {have})")
    return reasons


def preference_score(app: App, node: Node) -> int:
    labels = node_labels(node)
    return sum(
        pref.weight
        for pref in app.placement.preferred
        if all(labels.get(k) == v for k, v in pref.match.items())
    )


def best_nodes(app: App, nodes: list[Node]) -> list[Node]:
    """The nodes the scheduler would choose among: fitting, with the top preference score.

    More than one node means the choice is left to the scheduler's other scores
    (spreading, least allocated), which the inventory cannot predict.
    """
    fitting = [n for n in nodes if not misfit_reasons(app, n)]
    if not fitting:
        return []
    top = max(preference_score(app, n) for n in fitting)
    return [n for n in fitting if preference_score(app, n) == top]


class FitTable:
    """misfit_reasons and preference_score for every app x node, computed once.

    Neither depends on which hosts are down, so the failure matrix asks this table
    instead of re-running the filters for every failure set.
    """

    def __init__(self, apps: list[App], nodes: list[Node]) -> None:
        self.reasons = {a.name: {n.name: misfit_reasons(a, n) for n in nodes} for a in apps}
        self.scores = {a.name: {n.name: preference_score(a, n) for n in nodes} for a in apps}

    def best(self, app: App, nodes: list[Node]) -> list[Node]:
        reasons, scores = self.reasons[app.name], self.scores[app.name]
        fitting = [n for n in nodes if not reasons[n.name]]
        if not fitting:
            return []
        top = max(scores[n.name] for n in fitting)
        return [n for n in fitting if scores[n.name] == top]
