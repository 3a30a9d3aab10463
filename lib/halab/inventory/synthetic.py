"""Synthetic inventories of any size, for scale benchmarks and tests.

`synthetic_inventory(hosts=20, nodes_per_host=10)` gives a well-formed inventory with a
rack per host: 3 control-plane servers on the first three hosts, a GPU on every host's
last node, SeaweedFS volumes on every node and three apps.
"""

from __future__ import annotations

from typing import Any


def synthetic_data(hosts: int = 20, nodes_per_host: int = 10, servers: int = 3) -> dict[str, Any]:
    if servers % 2 == 0 or servers > hosts:
        raise ValueError("servers must be odd and at most the number of hosts")
    host_list = []
    nodes = []
    for h in range(hosts):
        third = 10 + h  # 10.<third>.0.0/24 per host inside 10.0.0.0/8
        host_list.append(
            {
                "name": f"host{h:02d}",
                "kind": "generic",
                "address": f"10.{third}.0.1",
                "gpu": {"vendor": "intel", "driver": "i915"},
            }
        )
        for n in range(nodes_per_host):
            server = n == 0 and h < servers
            node: dict[str, Any] = {
                "name": f"h{h:02d}-n{n:02d}",
                "host": f"host{h:02d}",
                "kind": "vm",
                "address": f"10.{third}.1.{n + 1}",
                "cpu": 4,
                "memory_gib": 8,
                "os_disk_gib": 40,
                "k3s_role": "server" if server else "agent",
                "labels": {"role": "primary" if h == 0 else "backup"},
                "seaweedfs": {"master": server, "volume_gib": 100, "filer": n == 1},
            }
            if n == nodes_per_host - 1:
                node["gpu"] = {"vendor": "intel", "driver": "i915"}
                node["labels"] = {"gpu": "true"}
                node["taints"] = ["gpu=true:NoSchedule"]
            nodes.append(node)
    return {
        "version": 1,
        "cluster": {
            "name": "synthetic",
            "k3s_version": "v1.32.9+k3s1",
            "kubernetes_version": "1.32",
        },
        "hosts": host_list,
        "nodes": nodes,
        "network": {
            "subnet": "10.0.0.0/8",
            "gateway": "10.0.0.1",
            "vip": "10.0.0.100",
            "metallb": {
                "mode": "bgp",
                "pool": ["10.9.0.10-10.9.0.200"],
                "bgp": {"my_asn": 64513, "peer_asn": 64512, "peer_address": "10.0.0.1"},
            },
        },
        "storage": {
            "nfs": {
                "host": "host01",
                "exports": [
                    {
                        "name": "media",
                        "path": "/srv/media",
                        "options": ["ro"],
                        "mount_path": "/data/media",
                    }
                ],
            },
            "seaweedfs": {
                "replication": "010",
                "racks": "host",
                "volume_size_limit_mb": 1000,
                "target": {"replication": "020", "racks": "host"},
            },
        },
        "apps": [
            {
                "name": "web",
                "kind": "deployment",
                "image": "nginx",
                "placement": {"preferred": [{"weight": 100, "match": {"role": "primary"}}]},
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
            },
            {
                "name": "db",
                "kind": "statefulset",
                "image": "postgres",
                "volumes": [
                    {
                        "name": "data",
                        "kind": "seaweedfs",
                        "storage_class": "seaweedfs-ha",
                        "mount_path": "/var/lib/postgresql",
                    }
                ],
            },
            {
                "name": "transcoder",
                "role": "worker",
                "kind": "deployment",
                "image": "plex",
                "placement": {
                    "node_selector": {"gpu": "true"},
                    "tolerations": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}],
                },
                "resources": {"limits": {"gpu.intel.com/i915": 1}},
                "volumes": [
                    {
                        "name": "media",
                        "kind": "nfs",
                        "export": "media",
                        "mount_path": "/data/media",
                        "read_only": True,
                    }
                ],
            },
        ],
    }
