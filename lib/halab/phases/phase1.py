"""Phase 1, worker nodes: k3s-w1 and k3s-w2 joined, Ready, labelled, able to run pods.

Plan "Phase 1: Worker Node Infrastructure": create w1 (Proxmox) and w2 (Unraid), join
them, label them role=primary and role=backup, verify both can schedule pods.
"""

from __future__ import annotations

from typing import Any

from halab.context import Context
from halab.evidence import Check
from halab.phases.cluster_checks import no_target, test_pod_on

# The nodes the plan's phase 1 brings up (steps 1 and 2).
PHASE1_NODES = ("k3s-w1", "k3s-w2")


def expected_labels(ctx: Context, node: str) -> dict[str, str]:
    found = [n for n in ctx.inventory.nodes if n.name == node]
    if not found:
        return {}
    return {**found[0].labels, **found[0].api_labels}


def check_ready(ctx: Context, api: Any) -> list[Check]:
    from kubernetes import client

    if api is None:
        return [no_target(f"ready-{n}", f"{n} is Ready") for n in PHASE1_NODES]
    live = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    checks = []
    for name in PHASE1_NODES:
        if name not in {n.name for n in ctx.inventory.nodes}:
            checks.append(
                Check(f"ready-{name}", f"{name} is Ready", "fail", "not in the inventory")
            )
            continue
        node = live.get(name)
        if node is None:
            checks.append(
                Check(f"ready-{name}", f"{name} is Ready", "fail", "not registered: has it joined?")
            )
            continue
        ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
        ok = ready is not None and ready.status == "True"
        detail = f"Ready={ready.status if ready else 'missing'} ({ready.reason if ready else ''})"
        checks.append(Check(f"ready-{name}", f"{name} is Ready", "pass" if ok else "fail", detail))
    return checks


def check_labels(ctx: Context, api: Any) -> list[Check]:
    from kubernetes import client

    if api is None:
        return [no_target(f"labels-{n}", f"{n} has its labels") for n in PHASE1_NODES]
    checks = []
    for name in PHASE1_NODES:
        want = expected_labels(ctx, name)
        try:
            have = client.CoreV1Api(api).read_node(name).metadata.labels or {}
        except Exception as exc:  # the node is missing: say so in this check too
            checks.append(Check(f"labels-{name}", f"{name} has its labels", "fail", str(exc)))
            continue
        missing = {k: v for k, v in want.items() if have.get(k) != v}
        if missing:
            fix = " ".join(f"{k}={v}" for k, v in missing.items())
            detail = f"missing {missing}; fix: kubectl label nodes {name} {fix} --overwrite"
        else:
            detail = ", ".join(f"{k}={v}" for k, v in want.items()) or "no labels expected"
        checks.append(
            Check(f"labels-{name}", f"{name} has its labels", "fail" if missing else "pass", detail)
        )
    return checks


def check_test_pods(api: Any) -> list[Check]:
    if api is None:
        return [no_target(f"test-pod-{n}", f"A test pod runs on {n}") for n in PHASE1_NODES]
    return [test_pod_on(api, name) for name in PHASE1_NODES]
