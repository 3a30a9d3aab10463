"""The Node object a kubelet registers, from the inventory, with k3s's labels."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from halab.inventory.model import Node as InventoryNode
from halab.twin.api.admission import now

KUBELET_PORT = 10250
MAX_PODS = 110


def node_object(node: InventoryNode, address: IPv4Address, k3s_version: str) -> dict[str, Any]:
    """The Node as the kubelet registers it; a GPU is added by its device plugin."""
    labels = {
        "beta.kubernetes.io/arch": node.arch,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": node.arch,
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "k3s",
        **node.labels,
    }
    if node.k3s_role == "server":
        # What k3s puts on servers with embedded etcd.
        labels.update(
            {
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/etcd": "true",
                "node-role.kubernetes.io/master": "true",
            }
        )
    capacity = {
        "cpu": str(node.cpu),
        "memory": f"{int(node.memory_gib * 1024 * 1024)}Ki",
        "pods": str(MAX_PODS),
        "ephemeral-storage": f"{node.os_disk_gib * 1024 * 1024}Ki",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {
                "k3s.io/hostname": node.name,
                "k3s.io/internal-ip": str(address),
                "halab.dev/physical-host": node.host,
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {
            "podCIDR": pod_cidr(address),
            "podCIDRs": [pod_cidr(address)],
            "taints": [
                {"key": t.key, "value": t.value, "effect": t.effect}
                if t.value
                else {"key": t.key, "effect": t.effect}
                for t in node.taints
            ],
        },
        "status": node_status(node, address, k3s_version, capacity),
    }


def pod_cidr(address: IPv4Address) -> str:
    # k3s gives each node a /24 of 10.42.0.0/16; the twin's pods live on 127.42.<octet>.0/24
    # so they are reachable here (the last octet of the node's address picks the /24).
    return f"127.42.{int(address) & 0xFF}.0/24"


def conditions(ready: bool) -> list[dict[str, Any]]:
    stamp = now()
    out = [
        {
            "type": t,
            "status": "False",
            "reason": r,
            "message": m,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for t, r, m in (
            (
                "MemoryPressure",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    out.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "kubelet is starting",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    return out


def node_status(
    node: InventoryNode, address: IPv4Address, k3s_version: str, capacity: dict[str, str]
) -> dict[str, Any]:
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": conditions(True),
        "addresses": [
            {"type": "InternalIP", "address": str(address)},
            {"type": "Hostname", "address": node.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "machineID": node.name,
            "systemUUID": node.name,
            "bootID": "",
            "kernelVersion": "twin",
            "osImage": node.os,
            "containerRuntimeVersion": "halab-twin://1",
            "kubeletVersion": k3s_version,
            "kubeProxyVersion": k3s_version,
            "operatingSystem": "linux",
            "architecture": node.arch,
        },
    }
