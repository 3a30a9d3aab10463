"""Phase 1, worker nodes: the nodes this phase brings in joined, Ready, labelled and
tainted as the inventory says, able to run pods.

Plan "Phase 1: Worker Node Infrastructure": create the workers, join them, label them,
verify each can schedule pods. Which nodes those are comes from the inventory's rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd

from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, timed
from halab.explain import explain
from halab.inventory import Node
from halab.phases.cluster_checks import (
    LiveNodes,
    NodeScope,
    Verdict,
    no_target,
    nothing_joins,
    test_pod_on,
)

PHASE = 1


def nodes(ctx: Context) -> list[Node]:
    """The nodes phase 1 brings in, from the inventory's rollout."""
    return ctx.inventory.nodes_joining(PHASE)


def scope(ctx: Context) -> pd.DataFrame:
    """What this phase is about, for the notebook: each node with what it should carry."""
    rows = [
        {
            "node": n.name,
            "host": n.host,
            "role": n.k3s_role,
            "labels": ", ".join(f"{k}={v}" for k, v in expected_labels(n).items()) or "-",
            "taints": ", ".join(str(t) for t in n.taints) or "-",
        }
        for n in nodes(ctx)
    ]
    return pd.DataFrame(rows, columns=["node", "host", "role", "labels", "taints"])


def expected_labels(node: Node) -> dict[str, str]:
    return {**node.labels, **node.api_labels}


def label_nodes(ctx: Context, api: Any, dry_run: bool = False) -> list[Change]:
    """Plan phase 1 "Label nodes": set, through the API, every label the inventory gives a
    node of this phase that the node does not carry yet. Idempotent."""
    from kubernetes import client

    if api is None:
        return [Change("label nodes", False, "no target: nothing to label")]
    core = client.CoreV1Api(api)
    changes = []
    for node in nodes(ctx):
        want = expected_labels(node)
        try:
            have = core.read_node(node.name).metadata.labels or {}
        except Exception as exc:  # a node that has not joined: say so, label the others
            changes.append(Change(f"label {node.name}", False, f"not labelled: {explain(exc)}"))
            continue
        missing = {k: v for k, v in want.items() if have.get(k) != v}
        if not missing:
            shown = ", ".join(f"{k}={v}" for k, v in want.items()) or "none expected"
            changes.append(Change(f"label {node.name}", False, f"labels already so ({shown})"))
            continue
        command = f"kubectl label nodes {node.name} " + " ".join(
            f"{k}={v}" for k, v in missing.items()
        )
        if dry_run:
            changes.append(Change(f"label {node.name}", True, command, dry_run=True))
            continue
        core.patch_node(node.name, {"metadata": {"labels": missing}})
        changes.append(Change(f"label {node.name}", True, f"set {missing} ({command})"))
    return changes


def _per_node(
    ctx: Context,
    api: Any,
    kind: str,
    title: str,
    verdict: Callable[[NodeScope, Node], Check | Verdict],
) -> list[Check]:
    """One timed check per node this phase brings in; skipped without nodes or target."""
    joining = nodes(ctx)
    if not joining:
        return [nothing_joins(kind, PHASE)]
    if api is None:
        return [no_target(f"{kind}-{n.name}", title.format(n.name)) for n in joining]
    live = LiveNodes(api)
    return [
        timed(
            f"{kind}-{n.name}",
            title.format(n.name),
            partial(verdict, live.scope(ctx, n.name, PHASE), n),
        )
        for n in joining
    ]


def check_ready(ctx: Context, api: Any) -> list[Check]:
    return _per_node(ctx, api, "ready", "{} is Ready", lambda scope, _node: scope.ready())


def check_labels(ctx: Context, api: Any) -> list[Check]:
    return _per_node(ctx, api, "labels", "{} has its labels and taints", _labels_and_taints)


def _labels_and_taints(scope: NodeScope, node: Node) -> Verdict:
    absent = scope.absent()
    if absent is not None:
        return absent
    assert scope.live is not None
    have = scope.live.metadata.labels or {}
    want = expected_labels(node)
    missing = {k: v for k, v in want.items() if have.get(k) != v}
    live_taints = {
        f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}"
        for t in scope.live.spec.taints or []
    }
    absent_taints = [str(t) for t in node.taints if str(t) not in live_taints]
    problems = []
    if missing:
        fix = " ".join(f"{k}={v}" for k, v in missing.items())
        problems.append(
            f"labels missing {missing}; fix: kubectl label nodes {node.name} {fix} --overwrite"
        )
    if absent_taints:
        fix = " ".join(absent_taints)
        problems.append(
            f"taints missing {absent_taints}; fix: kubectl taint nodes {node.name} {fix}"
        )
    if problems:
        return "fail", "; ".join(problems)
    shown = ", ".join(f"{k}={v}" for k, v in want.items()) or "no labels expected"
    taints = ", ".join(str(t) for t in node.taints) or "no taints expected"
    return "pass", f"{shown}; {taints}"


def check_test_pods(ctx: Context, api: Any) -> list[Check]:
    return _per_node(
        ctx,
        api,
        "test-pod",
        "A test pod runs on {}",
        lambda scope, node: _test_pod(api, scope, node),
    )


def _test_pod(api: Any, scope: NodeScope, node: Node) -> Check | Verdict:
    # A node that is missing or not Ready fails here at once: no pod could run there.
    return scope.not_ready() or test_pod_on(api, node)
