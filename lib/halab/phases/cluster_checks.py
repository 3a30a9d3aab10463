"""Checks shared by the phases that talk to a live cluster: a test pod on a node."""

from __future__ import annotations

import time
import uuid
from typing import Any

from halab.evidence import Check
from halab.kube import ClusterError, wait_for

CHECK_NAMESPACE = "halab-checks"


def no_target(cid: str, title: str) -> Check:
    return Check(cid, title, "skip", "no target given (pass target=... to check the live cluster)")


def ensure_namespace(api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": CHECK_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def test_pod_on(api: Any, node: str, timeout: float = 180) -> Check:
    """A pod that must be scheduled (by the scheduler, not by nodeName) onto `node`,
    run to completion and say so in its log; it is deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    ensure_namespace(api)
    name = f"schedule-{node}-{uuid.uuid4().hex[:5]}"
    marker = f"halab test pod on {node}"
    start = time.monotonic()
    core.create_namespaced_pod(
        CHECK_NAMESPACE,
        {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "halab"}},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": node},
                "containers": [
                    {
                        "name": "check",
                        "image": "busybox:1.36",
                        "command": ["sh", "-c", f"echo {marker}"],
                    }
                ],
            },
        },
    )
    try:
        pod = wait_for(
            lambda: (
                (p := core.read_namespaced_pod(name, CHECK_NAMESPACE)).status.phase
                in ("Succeeded", "Failed")
                and p
            ),
            timeout,
            f"test pod on {node} finished",
            every=0.5,
        )
        log = core.read_namespaced_pod_log(name, CHECK_NAMESPACE)
    except ClusterError as exc:
        return Check(f"test-pod-{node}", f"A test pod runs on {node}", "fail", str(exc))
    finally:
        core.delete_namespaced_pod(name, CHECK_NAMESPACE, grace_period_seconds=0)
    seconds = time.monotonic() - start
    ok = pod.status.phase == "Succeeded" and pod.spec.node_name == node and marker in log
    where = f"scheduled on {pod.spec.node_name}, {pod.status.phase} in {seconds:.1f} s"
    detail = f"{where}, log: {log.strip()!r}"
    return Check(f"test-pod-{node}", f"A test pod runs on {node}", "pass" if ok else "fail", detail)
