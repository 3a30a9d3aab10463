"""Services as kube-proxy makes them in the twin: ClusterIPs and NodePorts that reach the
ready endpoints, refuse when there are none, and are allocated as kube-apiserver does."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from halab.kube import service_proxy
from halab.sonarr import Sonarr, SonarrError

from twinlab import TwinLab, eventually, http_body

pytestmark = pytest.mark.twin


def web(name: str, replicas: int) -> dict[str, Any]:
    """A Deployment of placeholders answering HTTP on port 80."""
    labels = {"app": name}
    container = {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def service(name: str, kind: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    ports = [{"name": "http", "port": 8080, "targetPort": 80}]
    body = {"type": kind, "selector": {"app": name}, "ports": ports, **spec}
    return {"metadata": {"name": name}, "spec": body}


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


def test_cluster_ip_and_node_ports_reach_ready_endpoints_and_refuse_without(
    twin: TwinLab,
) -> None:
    core, apps, ns = client.CoreV1Api(twin.api()), client.AppsV1Api(twin.api()), twin.namespace()
    svc = core.create_namespaced_service(ns, service("web", "NodePort"))
    ip, node_port = svc.spec.cluster_ip, svc.spec.ports[0].node_port
    assert IPv4Address(ip).is_loopback, ip  # the twin's service range is on loopback
    assert refused(ip, 8080)  # no endpoint yet: refused, as kube-proxy's REJECT
    apps.create_namespaced_deployment(ns, web("web", 2))
    answer = eventually(lambda: http_body(ip, 8080), 60, f"the ClusterIP {ip}:8080 answers")
    assert "placeholder for nginx" in answer
    nodes = [
        next(a.address for a in n.status.addresses if a.type == "InternalIP")
        for n in core.list_node().items
    ]
    for address in nodes:
        eventually(
            lambda a=address: http_body(a, node_port), 30, f"NodePort {address}:{node_port} answers"
        )
    # From a pod, by name, through the cluster DNS and the ClusterIP.
    fetch = {
        "name": "c",
        "image": "busybox",
        "command": ["sh", "-c", f"nslookup web.{ns}.svc.cluster.local; wget -qO- http://web:8080/"],
    }
    core.create_namespaced_pod(
        ns,
        {"metadata": {"name": "fetch"}, "spec": {"containers": [fetch], "restartPolicy": "Never"}},
    )
    eventually(
        lambda: core.read_namespaced_pod("fetch", ns).status.phase in ("Succeeded", "Failed"),
        60,
        "the fetching pod finishes",
    )
    out = core.read_namespaced_pod_log("fetch", ns)
    assert ip in out and "placeholder for nginx" in out, out
    # Scaled to nothing: the ClusterIP and every NodePort refuse again.
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 0}})
    eventually(lambda: refused(ip, 8080), 60, f"{ip}:8080 refuses with no endpoint")
    assert all(refused(a, node_port) for a in nodes)


def test_cluster_ips_are_allocated_once_and_a_taken_one_is_refused(twin: TwinLab) -> None:
    core, ns = client.CoreV1Api(twin.api()), twin.namespace()
    first = core.create_namespaced_service(ns, service("a")).spec.cluster_ip
    second = core.create_namespaced_service(ns, service("b")).spec.cluster_ip
    assert first != second
    with pytest.raises(ApiException) as taken:
        core.create_namespaced_service(ns, service("c", clusterIP=first))
    assert taken.value.status == 422
    assert f"failed to allocate IP {first}: provided IP is already allocated" in str(
        taken.value.body
    )
    with pytest.raises(ApiException) as outside:
        core.create_namespaced_service(ns, service("d", clusterIP="10.43.9.9"))
    assert "provided IP is not in the valid range" in str(outside.value.body)
    # Freed with its Service: the address can be asked for again.
    core.delete_namespaced_service("a", ns)
    again = core.create_namespaced_service(ns, service("c", clusterIP=first)).spec.cluster_ip
    assert again == first
    # An update that leaves the ClusterIP out keeps it (kubectl replace, a PUT without it).
    plain = core.api_client.sanitize_for_serialization(core.read_namespaced_service("b", ns))
    plain["spec"].pop("clusterIP")
    plain["spec"].pop("clusterIPs")
    assert core.replace_namespaced_service("b", ns, plain).spec.cluster_ip == second


def test_a_service_without_endpoints_is_not_taken_for_sonarr_through_the_proxy(
    twin: TwinLab,
) -> None:
    """The API server's service proxy answers for a Service with no ready endpoint (a pod
    moving, or Ready before it is listed) with a Status document; pyarr hands any JSON back,
    so the connector must not take it for Sonarr's answer."""
    api, ns = twin.api(), twin.namespace()
    client.CoreV1Api(api).create_namespaced_service(ns, service("sonarr"))
    url, options = service_proxy(api, ns, "sonarr", 8080)
    sonarr = Sonarr(url, "k" * 32, timeout=5, session_options=options)
    for call in (sonarr.status, sonarr.root_folders, sonarr.series, sonarr.health):
        with pytest.raises(SonarrError, match="answered by the Kubernetes API server") as got:
            call()
        assert 'no endpoints available for service "sonarr"' in str(got.value)
        assert got.value.passing, "it may pass once the pod is behind its Service"
    with pytest.raises(SonarrError, match="answered by the Kubernetes API server"):
        sonarr.browse("/tv")
    with pytest.raises(SonarrError, match="not answering within 2 s"):
        sonarr.answering(2)
    assert "k" * 32 not in str(got.value)
