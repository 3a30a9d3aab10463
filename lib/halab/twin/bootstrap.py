"""What a new k3s cluster has before anyone applies anything: the four namespaces, the
`kubernetes` and `kube-dns` Services, and k3s's local-path StorageClass; and Flux's CRDs,
since the kit's tree is meant for a cluster Flux manages. Every API server tries at start
(whoever has quorum first wins; the rest find them there)."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Network
from typing import Any

from halab.twin.api.server import ApiServer
from halab.twin.api.service_ips import DNS_HOST
from halab.twin.api.status import ApiError
from halab.twin.images import flux

log = logging.getLogger("halab.twin.bootstrap")


def _objects(network: IPv4Network) -> list[tuple[str, str, str, str | None, dict[str, Any]]]:
    out: list[tuple[str, str, str, str | None, dict[str, Any]]] = [
        ("", "v1", "namespaces", None, {"metadata": {"name": name}})
        for name in ("default", "kube-system", "kube-public", "kube-node-lease", "flux-system")
    ]
    out.append(
        (
            "",
            "v1",
            "services",
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "clusterIP": str(network.network_address + 1),
                    "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
                },
            },
        )
    )
    # k3s's CoreDNS Service (its pods are the twin's cluster DNS, dns.py, on this address).
    out.append(
        (
            "",
            "v1",
            "services",
            "kube-system",
            {
                "metadata": {
                    "name": "kube-dns",
                    "labels": {
                        "k8s-app": "kube-dns",
                        "kubernetes.io/name": "CoreDNS",
                        "kubernetes.io/cluster-service": "true",
                    },
                },
                "spec": {
                    "clusterIP": str(network.network_address + DNS_HOST),
                    "selector": {"k8s-app": "kube-dns"},
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                        {"name": "metrics", "port": 9153, "protocol": "TCP"},
                    ],
                },
            },
        )
    )
    out.append(
        (
            "storage.k8s.io",
            "v1",
            "storageclasses",
            None,
            {
                "metadata": {
                    "name": "local-path",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "rancher.io/local-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            },
        )
    )
    # Flux's CRDs, as `flux install` leaves them: the twin runs Flux's stand-in (images/flux.py).
    out += [
        ("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, crd)
        for crd in flux.crds()
    ]
    return out


async def bootstrap(api: ApiServer) -> None:
    pending = _objects(api.objects.service_ips.network)
    while pending:
        group, version, plural, ns, body = pending[0]
        try:
            await api.objects.create(api.resource(group, version, plural), ns, body)
        except ApiError as exc:
            if exc.code not in (409,):
                log.debug("bootstrap %s: %s (retrying)", plural, exc.message)
                await asyncio.sleep(0.3)
                continue
        pending.pop(0)
