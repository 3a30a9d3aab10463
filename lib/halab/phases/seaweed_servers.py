"""The SeaweedFS servers of the rendered tree as a phase sees them: which run where, when
their pods are Ready, and when a host's pods have started again after it came back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from halab.changes import Change
from halab.context import Context
from halab.explain import explain
from halab.kube import wait_for
from halab.render import storage
from halab.seaweed import service_name

ROLES = ("master", "volume", "filer")


@dataclass(frozen=True)
class Server:
    role: str
    node: str
    host: str

    @property
    def pod(self) -> str:  # a StatefulSet of one per server, in the rendered tree
        return f"{service_name(self.role, self.node)}-0"


def all_servers(ctx: Context) -> list[Server]:
    """Every SeaweedFS server of the inventory, whatever phase its node joins in."""
    out = []
    for node in ctx.inventory.nodes:
        roles = {
            "master": node.seaweedfs.master,
            "volume": node.seaweedfs.volume_gib > 0,
            "filer": node.seaweedfs.filer,
        }
        out += [Server(r, node.name, node.host) for r in ROLES if roles[r]]
    return out


def servers_present(ctx: Context, phase: int) -> list[Server]:
    """Every SeaweedFS server on the nodes present once `phase` is done."""
    present = {n.name for n in ctx.inventory.nodes_present(phase)}
    return [s for s in all_servers(ctx) if s.node in present]


def wait_ready(api: Any, want: set[str], timeout: float = 180) -> Change:
    """Until every one of these SeaweedFS pods is Ready (the masters elect a leader and
    the volume servers register on the way)."""
    from kubernetes import client

    if api is None:
        return Change("wait for SeaweedFS", False, "no target")
    core = client.CoreV1Api(api)
    start = time.monotonic()

    pods: dict[str, Any] = {}

    def ready() -> bool:
        pods.clear()
        pods.update({p.metadata.name: p for p in core.list_namespaced_pod(storage.NS).items})
        return all(name in pods and pod_ready(pods[name]) for name in want)

    try:
        wait_for(ready, timeout, f"{len(want)} SeaweedFS pods Ready")
    except Exception as exc:
        late = [
            f"{n} ({_why_not_ready(pods.get(n))})"
            for n in sorted(want)
            if not (n in pods and pod_ready(pods[n]))
        ]
        return Change(
            "wait for SeaweedFS",
            False,
            f"{explain(exc)}; not Ready: {', '.join(late) or 'none'}",
            failed=True,
        )
    return Change(
        "wait for SeaweedFS",
        False,
        f"{len(want)} pods Ready after {time.monotonic() - start:.1f} s",
    )


def _why_not_ready(pod: Any) -> str:
    """A pod's state in a few words: missing, its phase, or its containers' waiting reasons."""
    if pod is None:
        return "no such pod"
    node = pod.spec.node_name or "unscheduled"
    waiting = [
        c.state.waiting.reason
        for c in pod.status.container_statuses or []
        if c.state and c.state.waiting and c.state.waiting.reason
    ]
    deleting = ", terminating" if pod.metadata.deletion_timestamp else ""
    return f"{pod.status.phase} on {node}{deleting}" + (
        f", {', '.join(waiting)}" if waiting else ""
    )


def pod_ready(pod: Any) -> bool:
    """A V1Pod whose Ready condition is True."""
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def starts(api: Any, nodes: set[str]) -> dict[str, tuple[int, str]]:
    """The SeaweedFS servers' pods on these nodes: restart count and start time of each.
    Only the servers (the rendered StatefulSets' label): the CSI driver's pods share the
    namespace, and its controller's pod is replaced elsewhere rather than restarted."""
    from kubernetes import client

    found = {}
    servers = "app.kubernetes.io/name=seaweedfs"
    for pod in client.CoreV1Api(api).list_namespaced_pod(storage.NS, label_selector=servers).items:
        if pod.spec.node_name in nodes:
            statuses = pod.status.container_statuses or []
            restarts = sum(c.restart_count or 0 for c in statuses)
            started = ",".join(
                str(c.state.running.started_at) for c in statuses if c.state and c.state.running
            )
            found[pod.metadata.name] = (restarts, started)
    return found


def wait_restarted(
    api: Any,
    nodes: set[str],
    before: dict[str, tuple[int, str]],
    want: set[str],
    timeout: float = 180,
) -> Change:
    """After a host came back: its pods started again (not the stale Ready of pods whose
    node has not been noticed gone yet), then every pod in `want` Ready."""

    def restarted() -> bool:
        now = starts(api, nodes)
        return all(name in now and now[name] != seen for name, seen in before.items())

    try:
        wait_for(
            restarted,
            timeout,
            f"the {len(before)} SeaweedFS pods of {', '.join(sorted(nodes))} started again",
        )
    except Exception as exc:
        return Change("wait for SeaweedFS", False, explain(exc), failed=True)
    return wait_ready(api, want, timeout)
