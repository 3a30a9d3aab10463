"""Phase 7, GPU workers: the GPU nodes Ready with their labels and taints, the Intel GPU
plugin's resource on them and on no other node, the plan's GPU test pod, SeaweedFS with
the new nodes' volume servers, the Docker worker's compose file and template, and MetalLB
with the gateway's BGP session for each new node.

Plan "Phase 7: GPU Worker Nodes": w3 joins with gpu=true, role=gpu-worker and the
gpu=true:NoSchedule taint; the Intel GPU device plugin; "Test pod can request
`intel.com/gpu: 1`" (a resource no plugin advertises: the check says so); SeaweedFS
includes w3's volume; the Unraid Docker worker; "UDM BGP Update: add route for w3".
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd

from halab.apply import apply_objects
from halab.changes import Change
from halab.context import Context
from halab.evidence import Check, timed
from halab.inventory import Node
from halab.inventory.scheduling import GPU_RESOURCE_ALIASES
from halab.kube import ClusterError, wait_for
from halab.phases import loadbalancer
from halab.phases.cluster_checks import (
    CHECK_NAMESPACE,
    LiveNodes,
    Verdict,
    ensure_namespace,
    no_target,
    nothing_joins,
)
from halab.phases.seaweed_servers import servers_present
from halab.render import external, infrastructure, storage
from halab.render.objects import namespace
from halab.seaweed import SeaweedFS

PHASE = 7
PLAN_TEST = "gpu-test"  # the plan's `kubectl run gpu-test ... -- ls -la /dev/dri`


def gpu_nodes(ctx: Context) -> list[Node]:
    """The nodes with a GPU once phase 7 is done."""
    return [n for n in ctx.inventory.nodes_present(PHASE) if n.gpu is not None]


def advertised(ctx: Context) -> str:
    """The resource the GPU nodes' plugin advertises (i915 or xe, from their driver)."""
    return next((n.gpu.resource_name for n in gpu_nodes(ctx) if n.gpu), "gpu.intel.com/i915")


def workload_resource(ctx: Context) -> str | None:
    """The GPU resource the inventory's workloads ask for (the plan's: intel.com/gpu)."""
    for app in ctx.inventory.apps:
        for name in {**app.resources.requests, **app.resources.limits}:
            if name in GPU_RESOURCE_ALIASES or name.startswith("gpu.intel.com/"):
                return name
    return None


def scope(ctx: Context) -> pd.DataFrame:
    rows = [
        {
            "node": n.name,
            "host": n.host,
            "joins in phase": ctx.inventory.joins_in(n.name),
            "GPU": f"{n.gpu.vendor} {n.gpu.driver}" if n.gpu else "",
            "resource": n.gpu.resource_name if n.gpu else "",
            "shared by": n.gpu.shared_dev_num if n.gpu else "",
            "labels": ", ".join(f"{k}={v}" for k, v in n.labels.items()),
            "taints": ", ".join(f"{t.key}={t.value}:{t.effect}" for t in n.taints),
        }
        for n in gpu_nodes(ctx)
    ]
    columns = ["node", "host", "joins in phase", "GPU", "resource", "shared by", "labels", "taints"]
    return pd.DataFrame(rows, columns=columns)


# -- build ----------------------------------------------------------------------------------


def controllers(ctx: Context) -> list[dict[str, Any]]:
    """Phase 7's part of infrastructure/controllers: the GPU plugin and MetalLB."""
    return [
        namespace("metallb-system"),
        *infrastructure.gpu_plugin(ctx.inventory),
        *infrastructure.metallb_controller(),
    ]


def deliver(ctx: Context, api: Any, timeout: float = 120) -> list[Change]:
    """The controllers, then MetalLB's configuration once its CRDs exist (Flux's
    infrastructure-configs waits for infrastructure-controllers the same way)."""
    if api is None:
        return [Change("deliver infrastructure/", False, "no target: nothing delivered")]
    changes = apply_objects(api, controllers(ctx))
    config = infrastructure.metallb_config(ctx.inventory)
    start = time.monotonic()
    while True:
        done = apply_objects(api, config)
        if not any(unserved(c) for c in done) or time.monotonic() - start > timeout:
            return [*changes, *done]  # a kind still not served says so in its line
        time.sleep(1.0)  # the chart's CRDs are being installed


def unserved(change: Change) -> bool:
    """An object the cluster could not take because it does not serve its kind (yet): a
    CRD just created is listed in discovery a moment before its resource answers (404)."""
    return not change.changed and ("serves no" in change.detail or "(404)" in change.detail)


def wait_running(ctx: Context, api: Any, timeout: float = 120) -> Change:
    """Until MetalLB's pods and the GPU plugin's are Ready."""
    from kubernetes import client

    if api is None:
        return Change("wait for MetalLB and the GPU plugin", False, "no target")
    core = client.CoreV1Api(api)
    nodes = len(ctx.inventory.nodes_present(PHASE))
    start = time.monotonic()

    def ready() -> bool:
        pods = core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/name=metallb")
        up = [p for p in pods.items if _ready(p)]
        speakers = [
            p for p in up if p.metadata.labels.get("app.kubernetes.io/component") == "speaker"
        ]
        return bool(up) and len(speakers) >= nodes

    try:
        wait_for(ready, timeout, "MetalLB's controller and a speaker per node Ready", every=1.0)
    except ClusterError as exc:
        return Change("wait for MetalLB", False, str(exc))
    return Change(
        "wait for MetalLB",
        True,
        f"controller and {nodes} speakers Ready in {time.monotonic() - start:.0f} s",
    )


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


# -- checks ---------------------------------------------------------------------------------


def checks(ctx: Context, api: Any) -> list[Check]:
    """Every validation line of phase 7, and the build's own (compose file, template)."""
    found = [check_compose(ctx)]
    if api is None or ctx.target is None:
        return [*found, no_target("gpu-nodes", "GPU nodes Ready with labels and taints")]
    live = LiveNodes(api)
    nodes = gpu_nodes(ctx)
    if not nodes:
        found.append(Check("gpu-nodes", "GPU nodes", "skip", "the inventory gives no node a GPU"))
    for node in nodes:
        found.append(check_gpu_node(ctx, live, node))
    found.append(check_allocatable(ctx, live))
    found.append(check_test_pod(ctx, api, advertised(ctx)))
    asked = workload_resource(ctx)
    if asked is not None and asked != advertised(ctx):
        # The plan's own line ("Test pod can request intel.com/gpu: 1"), run as written:
        # it fails, naming the finding; advisory, as the fix is the inventory's.
        found.append(check_test_pod(ctx, api, asked, "gpu-test-pod-workloads", required=False))
    found.append(check_volume_servers(ctx, api))
    found.append(loadbalancer.check_config(ctx, api))
    found.append(loadbalancer.check_probe_service(ctx, api))
    joining = ctx.inventory.nodes_joining(PHASE)
    if joining:
        names = ", ".join(n.name for n in joining)
        found.append(
            loadbalancer.check_bgp_sessions(
                ctx, joining, f"bgp-joined-{PHASE}", f"The gateway has a BGP session with {names}"
            )
        )
    else:
        found.append(nothing_joins(f"bgp-joined-{PHASE}", PHASE))
    return found


def check_gpu_node(ctx: Context, live: LiveNodes, node: Node) -> Check:
    title = f"{node.name} Ready with its GPU labels and taints"

    def run() -> Verdict:
        scoped = live.scope(ctx, node.name, PHASE)
        status, detail = scoped.ready()
        if status != "pass":
            return status, detail
        labels = scoped.live.metadata.labels or {}
        taints = {(t.key, t.value or "", t.effect) for t in scoped.live.spec.taints or []}
        wrong = [f"label {k}={v} missing" for k, v in node.labels.items() if labels.get(k) != v]
        wrong += [
            f"taint {t.key}={t.value}:{t.effect} missing"
            for t in node.taints
            if (t.key, t.value, t.effect) not in taints
        ]
        if wrong:
            return "fail", f"{'; '.join(wrong)} (set them with the install script's flags)"
        said = ", ".join(f"{k}={v}" for k, v in node.labels.items())
        tainted = ", ".join(f"{t.key}={t.value}:{t.effect}" for t in node.taints)
        return "pass", f"{detail}; labels {said or 'none'}; taints {tainted or 'none'}"

    return timed(f"gpu-node-{node.name}", title, run)


def check_allocatable(ctx: Context, live: LiveNodes) -> Check:
    """The plugin's resource allocatable on every GPU node, and on no node without one."""
    title = "The Intel GPU plugin offers a GPU on each GPU node and on no other"

    def run() -> Verdict:
        wanted = {n.name: n for n in gpu_nodes(ctx)}
        rows, wrong = [], []
        for name, obj in sorted(live.items.items()):
            offered = {
                k: v
                for k, v in (obj.status.allocatable or {}).items()
                if k.startswith("gpu.intel.com/")
            }
            node = wanted.get(name)
            if node is not None and node.gpu is not None:
                got = offered.get(node.gpu.resource_name, "0")
                rows.append(f"{name}: {node.gpu.resource_name}={got}")
                if got in ("0", ""):
                    wrong.append(
                        f"{name} offers no {node.gpu.resource_name} (does the plugin's pod "
                        "run there?)"
                    )
            elif any(v not in ("0", "") for v in offered.values()):
                wrong.append(f"{name} offers {offered} but the inventory gives it no GPU")
        if wrong:
            return "fail", "; ".join(wrong)
        return "pass", "; ".join(rows) or "no GPU node"

    return timed("gpu-allocatable", title, run)


def check_test_pod(
    ctx: Context,
    api: Any,
    resource: str,
    cid: str = "gpu-test-pod",
    required: bool = True,
    timeout: float = 120,
) -> Check:
    """The plan's test pod: busybox listing /dev/dri with one `resource`, on a GPU node."""
    title = f"The GPU test pod ({resource}: 1) runs and sees /dev/dri"

    def run() -> Verdict:
        from kubernetes import client

        core = client.CoreV1Api(api)
        ensure_namespace(api)
        name = f"{PLAN_TEST}-{uuid.uuid4().hex[:5]}"
        tolerations = [
            {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
            for n in gpu_nodes(ctx)
            for t in n.taints
        ]
        core.create_namespaced_pod(
            CHECK_NAMESPACE,
            {
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "halab"}},
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": tolerations,
                    "containers": [
                        {
                            "name": PLAN_TEST,
                            "image": "busybox:1.36",
                            "command": ["ls", "-la", "/dev/dri"],
                            "resources": {"limits": {resource: "1"}},
                        }
                    ],
                },
            },
        )
        start = time.monotonic()
        try:
            return _test_pod_outcome(ctx, core, name, resource, start, timeout)
        finally:
            core.delete_namespaced_pod(name, CHECK_NAMESPACE, grace_period_seconds=0)

    return timed(cid, title, run, required=required)


PENDING_GRACE_S = 10.0


def _test_pod_outcome(
    ctx: Context, core: Any, name: str, resource: str, start: float, timeout: float
) -> Verdict:
    def settled() -> Any:
        pod = core.read_namespaced_pod(name, CHECK_NAMESPACE)
        if pod.status.phase in ("Succeeded", "Failed"):
            return pod
        for cond in pod.status.conditions or []:
            waited = time.monotonic() - start > PENDING_GRACE_S
            if cond.type == "PodScheduled" and cond.reason == "Unschedulable" and waited:
                return str(cond.message)
        return None

    outcome = wait_for(settled, timeout, f"the GPU test pod {name} ran", every=0.5)
    if isinstance(outcome, str):
        right = sorted({n.gpu.resource_name for n in gpu_nodes(ctx) if n.gpu})
        finding = (
            f" Finding gpu-resource-name: {resource} is not a resource any device plugin "
            f"advertises; fix: request {', '.join(right) or 'gpu.intel.com/i915'}: 1."
            if resource in GPU_RESOURCE_ALIASES
            else ""
        )
        return "fail", f"Pending: the scheduler says {outcome!r}.{finding}"
    log = core.read_namespaced_pod_log(name, CHECK_NAMESPACE).strip()
    devices = [w for w in log.split() if w.startswith(("card", "renderD"))]
    where = outcome.spec.node_name
    if outcome.status.phase != "Succeeded" or not devices:
        return "fail", f"{outcome.status.phase} on {where}; ls -la /dev/dri said {log[-300:]!r}"
    return "pass", f"ran on {where}; /dev/dri has {', '.join(devices)}"


def check_volume_servers(ctx: Context, api: Any) -> Check:
    """SeaweedFS's master knows the volume server of every node phase 7 brings."""
    title = "SeaweedFS includes the new nodes' volume servers"
    joining = {n.name for n in ctx.inventory.nodes_joining(PHASE)}
    wanted = [s for s in servers_present(ctx, PHASE) if s.role == "volume" and s.node in joining]
    if not wanted:
        return Check("seaweedfs-volumes", title, "skip", "no volume server joins in phase 7")

    def run() -> Verdict:
        topo = SeaweedFS(api, ctx.inventory).topology()
        seen = {row.node: row for row in topo.itertuples()}
        rows, missing = [], []
        for server in wanted:
            row = seen.get(server.node)
            rack = storage.rack_of(ctx.inventory, ctx.inventory.node(server.node))
            if row is None:
                missing.append(server.node)
            else:
                rows.append(f"{server.node} in {row.rack} (render: {rack})")
        if missing:
            return "fail", (
                f"{', '.join(missing)} not registered with the master: re-deliver storage/ "
                "(phase 2's build) now that the node is here"
            )
        return "pass", "; ".join(rows)

    return timed("seaweedfs-volumes", title, run)


def check_compose(ctx: Context) -> Check:
    """The Docker worker's compose file passes docker-compose; its Unraid template parses."""
    title = "The Docker worker's compose file and Unraid template are valid"

    def run() -> Verdict:
        files = {
            k: v
            for k, v in external.render_external(ctx.inventory).items()
            if k.endswith(("docker-compose.yml", ".xml"))
        }
        if not files:
            return "skip", "the inventory has no Docker app"
        notes = []
        for path, text in sorted(files.items()):
            if path.endswith(".xml"):
                root = ET.fromstring(text)  # a ParseError fails the check, naming the line
                repo = root.findtext("Repository") or ""
                notes.append(f"{path}: {root.tag} for {repo or 'no image'}")
                continue
            tool = shutil.which("docker-compose")
            if tool is None:
                notes.append(f"{path}: not validated (docker-compose is not installed)")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                file = Path(tmp) / "docker-compose.yml"
                file.write_text(text)
                done = subprocess.run(
                    [tool, "-f", str(file), "config", "-q"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            if done.returncode != 0:
                return "fail", f"{path}: docker-compose refuses it: {done.stderr.strip()[:300]}"
            notes.append(f"{path}: valid Compose")
        return "pass", "; ".join(notes)

    return timed("docker-worker-files", title, run, required=False)


__all__ = [
    "advertised",
    "check_allocatable",
    "check_compose",
    "check_gpu_node",
    "check_test_pod",
    "check_volume_servers",
    "checks",
    "controllers",
    "deliver",
    "gpu_nodes",
    "scope",
    "wait_running",
    "workload_resource",
]
