"""The Kubernetes connector: the official client configured from a target's kubeconfig,
and the facts the phase checks read (nodes, leases, etcd members)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from halab.errors import StepError
from halab.etcd_agreement import all_keys_at, member_disagreement
from halab.target import Target

T = TypeVar("T")


class ClusterError(StepError):
    pass


def api_client(target: Target) -> Any:
    """A kubernetes.client.ApiClient for the target's kubeconfig and context."""
    from kubernetes import client, config

    if not target.kubeconfig:
        raise ClusterError(f"{target.source or 'the target'} names no kubeconfig")
    path = Path(target.kubeconfig).expanduser()
    if not path.exists():
        raise ClusterError(f"kubeconfig {path} does not exist (for the twin: `halab twin up`)")
    conf = client.Configuration()
    config.load_kube_config(str(path), context=target.context or None, client_configuration=conf)
    conf.retries = 1
    return client.ApiClient(conf)


def server_url(target: Target) -> str:
    """The API server address the kubeconfig points at."""
    from kubernetes import client, config

    conf = client.Configuration()
    config.load_kube_config(
        str(Path(target.kubeconfig).expanduser()),
        context=target.context or None,
        client_configuration=conf,
    )
    return str(conf.host)


def service_proxy(api: Any, namespace: str, service: str, port: int) -> tuple[str, dict[str, Any]]:
    """A Service port reached through the API server's proxy, for an HTTP client other
    than the Kubernetes one: its base URL, and what `requests` must present there (the
    kubeconfig's CA, client certificate or token). A ClusterIP Service is reached so from
    outside the cluster, as `kubectl get --raw .../proxy/...` reaches it."""
    conf = api.configuration
    base = f"{str(conf.host).rstrip('/')}/api/v1/namespaces/{namespace}"
    options: dict[str, Any] = {"verify": conf.ssl_ca_cert or bool(conf.verify_ssl)}
    if conf.cert_file and conf.key_file:
        options["cert"] = (conf.cert_file, conf.key_file)
    token = (conf.api_key or {}).get("authorization") or (conf.api_key or {}).get("BearerToken")
    if token:
        bearer = token if str(token).lower().startswith("bearer ") else f"Bearer {token}"
        options["headers"] = {"Authorization": bearer}
    return f"{base}/services/{service}:{port}/proxy", options


def node_table(api: Any) -> pd.DataFrame:
    from kubernetes import client

    rows = []
    for node in client.CoreV1Api(api).list_node().items:
        conds = {c.type: c.status for c in node.status.conditions or []}
        labels = node.metadata.labels or {}
        roles = sorted(
            k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")
        )
        addr = {a.type: a.address for a in node.status.addresses or []}
        rows.append(
            {
                "node": node.metadata.name,
                "ready": conds.get("Ready") == "True",
                "roles": ",".join(roles) or "<none>",
                "address": addr.get("InternalIP", ""),
                "arch": labels.get("kubernetes.io/arch", ""),
                "version": node.status.node_info.kubelet_version if node.status.node_info else "",
                "taints": ", ".join(
                    f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}"
                    for t in node.spec.taints or []
                ),
                "unschedulable": bool(node.spec.unschedulable),
            }
        )
    return pd.DataFrame(rows).set_index("node").sort_index() if rows else pd.DataFrame()


def lease_holder(api: Any, name: str = "plndr-cp-lock", namespace: str = "kube-system") -> str:
    from kubernetes import client

    lease = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    return str(lease.spec.holder_identity or "")


def etcd_members(target: Target, timeout: float = 2.0) -> pd.DataFrame:
    """Members and the leader from etcd's JSON gateway, asked of every endpoint."""
    if not target.etcd.endpoints:
        raise ClusterError("the target lists no etcd endpoints (etcd: {endpoints: [...]})")
    context = _etcd_tls(target)
    members: dict[str, str] = {}
    leader_ids: set[str] = set()
    answered: dict[str, bool] = {}
    for endpoint in target.etcd.endpoints:
        try:
            listed = _post(endpoint, "cluster/member/list", timeout, context)
            status = _post(endpoint, "maintenance/status", timeout, context)
        except (OSError, urllib.error.URLError, ValueError):
            answered[endpoint] = False
            continue
        answered[endpoint] = True
        members.update({m["ID"]: m.get("name", "") for m in listed.get("members", [])})
        if status.get("leader"):
            leader_ids.add(status["leader"])
    if not members:
        raise ClusterError("no etcd endpoint answered: " + ", ".join(target.etcd.endpoints))
    return pd.DataFrame(
        [
            {"member": name, "id": mid, "leader": mid in leader_ids}
            for mid, name in sorted(members.items(), key=lambda kv: kv[1])
        ]
    ).set_index("member")


def _etcd_tls(target: Target) -> ssl.SSLContext | None:
    if not target.etcd.cert_file:
        return None
    context = ssl.create_default_context(cafile=target.etcd.ca_file or None)
    context.load_cert_chain(target.etcd.cert_file, target.etcd.key_file or None)
    return context


def etcd_divergence(target: Target, timeout: float = 5.0) -> str | None:
    """None when the members hold the same data; else which differ (halab.etcd_agreement)."""
    context = _etcd_tls(target)
    revisions = {
        e: int(_post(e, "maintenance/status", timeout, context)["header"]["revision"])
        for e in target.etcd.endpoints
    }
    common = min(revisions.values())
    states = {
        e: [
            (kv["key"], kv["mod_revision"])
            for kv in _post(e, "kv/range", timeout, context, all_keys_at(common)).get("kvs", [])
        ]
        for e in target.etcd.endpoints
    }
    return member_disagreement(revisions, states, common)


def _post(
    endpoint: str,
    path: str,
    timeout: float,
    context: ssl.SSLContext | None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{endpoint}/v3/{path}",
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
        doc: dict[str, Any] = json.loads(resp.read() or b"{}")
        return doc


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
    """Poll until check() gives something truthy; a ClusterError naming what did not happen."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # mid-failover calls fail; look again
            last = exc
        time.sleep(every)
    raise ClusterError(
        f"{what}: not within {timeout:.0f} s" + (f" (last error: {last})" if last else "")
    )
