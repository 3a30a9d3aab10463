"""A real kubectl against the twin: the commands a user types, with k3s's columns."""

from __future__ import annotations

import json
import subprocess

import pytest

from twinlab import KUBECTL, TwinLab, eventually

pytestmark = pytest.mark.twin

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
"""


def apply(twin: TwinLab, text: str, *extra: str) -> str:
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(twin.kubeconfig), "apply", *extra, "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_get_nodes_shows_the_k3s_columns(twin: TwinLab) -> None:
    out = twin.kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert out[0].split() == [
        "NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
        "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["k3s-cp1"][1:3] == ["Ready", "control-plane,etcd,master"]
    assert rows["k3s-w1"][5] == "127.77.0.12"  # the one-rule address map


def test_apply_rollout_scale_and_logs(twin: TwinLab) -> None:
    ns = twin.namespace()
    assert "created" in apply(twin, DEPLOYMENT.replace("NS", ns).replace("REPLICAS", "2"))
    assert "unchanged" in apply(twin, DEPLOYMENT.replace("NS", ns).replace("REPLICAS", "2"))
    twin.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    pods = json.loads(twin.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    assert "configured" in apply(twin, DEPLOYMENT.replace("NS", ns).replace("REPLICAS", "3"))
    twin.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    header = twin.kubectl("get", "deploy", "-n", ns).stdout.splitlines()
    assert header[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert header[1].split()[1] == "3/3"
    logs = twin.kubectl("logs", "deployment/web", "-n", ns).stdout
    assert "placeholder" in logs and "listening on" in logs


def test_server_side_apply_and_delete(twin: TwinLab) -> None:
    ns = twin.namespace()
    text = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {ns}}}\n"
        "data: {a: '1'}\n"
    )
    assert "serverside-applied" in apply(twin, text, "--server-side")
    yaml_out = twin.kubectl("get", "configmap", "c", "-n", ns, "-o", "yaml").stdout
    assert 'a: "1"' in yaml_out
    twin.kubectl("delete", "configmap", "c", "-n", ns)
    gone = twin.kubectl("get", "configmap", "c", "-n", ns, check=False)
    assert gone.returncode == 1 and "NotFound" in gone.stderr


def test_wait_describe_and_a_real_process(twin: TwinLab) -> None:
    ns = twin.namespace()
    twin.kubectl(
        "run", "sleeper", "-n", ns, "--image=busybox:1.36", "--", "sh", "-c", "echo up; sleep 300"
    )
    twin.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "-n", ns, "--timeout=60s")
    described = twin.kubectl("describe", "pod", "sleeper", "-n", ns).stdout
    assert "Status:" in described and "Running" in described and "Scheduled" in described
    assert twin.kubectl("logs", "sleeper", "-n", ns).stdout == "up\n"


def test_cordon_drain_uncordon(twin: TwinLab) -> None:
    ns = twin.namespace()
    apply(twin, DEPLOYMENT.replace("NS", ns).replace("REPLICAS", "2"))
    twin.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    pods = json.loads(twin.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    node = pods[0]["spec"]["nodeName"]
    try:
        twin.kubectl(
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--pod-selector=app=web",  # bare pods of other tests would need --force
            "--timeout=60s",
        )
        status = twin.kubectl("get", "node", node).stdout
        assert "SchedulingDisabled" in status

        def moved() -> bool:
            now = json.loads(twin.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
            live = [p for p in now if not p["metadata"].get("deletionTimestamp")]
            return len(live) == 2 and all(
                p["spec"].get("nodeName") not in (None, node) for p in live
            )

        eventually(moved, 60, f"both pods run off {node}")
    finally:
        twin.kubectl("uncordon", node)
    assert "SchedulingDisabled" not in twin.kubectl("get", "node", node).stdout


def test_get_watch_streams_changes(twin: TwinLab) -> None:
    ns = twin.namespace()
    watcher = subprocess.Popen(
        [
            KUBECTL,
            "--kubeconfig",
            str(twin.kubeconfig),
            "get",
            "configmaps",
            "-n",
            ns,
            "-w",
            "--request-timeout=8s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The watch lists first, then follows from that version: the object shows either way.
        apply(twin, f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: seen, namespace: {ns}}}\n")
        out, _ = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert "seen" in out
