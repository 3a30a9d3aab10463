"""storage/: SeaweedFS pinned to the inventory's nodes, its CSI driver, StorageClasses, NFS.

Facts: reference/seaweedfs.md §1 (-rack/-dataCenter, replication), §4-5 (ports, the CSI
chart, odd master count), k3s-ha.md §7 (static NFS PVs). Every SeaweedFS server is a
StatefulSet of one, pinned to its node by hostname, with its data in a hostPath on that
node: the data belongs to the node, and a pod that moved would leave it behind.
"""

from __future__ import annotations

from halab.inventory import Inventory, Node
from halab.plan.placement import DEFAULT_RACK, slots_for
from halab.render.objects import hostname_affinity, kustomization, labels, meta, selector
from halab.render.yamltext import Obj, dump, dump_all

SEAWEEDFS_IMAGE = "chrislusf/seaweedfs:4.44"
CSI_CHART_VERSION = "0.2.35"
NS = "seaweedfs"
MASTER_PORT, VOLUME_PORT, FILER_PORT = 9333, 8080, 8888
DATA_ROOT = "/var/lib/seaweedfs"


def rack_of(inv: Inventory, node: Node) -> str:
    racks = inv.storage.seaweedfs.racks
    return {"single": DEFAULT_RACK, "host": node.host, "node": node.name}[racks]


def _server(
    inv: Inventory,
    node: Node,
    role: str,
    args: list[str],
    port: int,
    storage_gib: int | None = None,
) -> list[Obj]:
    name = f"seaweedfs-{role}-{node.name}"
    ports = [
        {"name": "http", "containerPort": port},
        {"name": "grpc", "containerPort": port + 10000},
    ]
    container = {
        "name": role,
        "image": SEAWEEDFS_IMAGE,
        "args": [role, *args],
        "ports": ports,
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
        # Ready within 2 s of listening after a (re)start, rather than at the next 10 s
        # readiness tick; 5 minutes to start at most (a volume server loading its volumes).
        "startupProbe": {
            "tcpSocket": {"port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 150,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "http"},
            "periodSeconds": 30,
            "failureThreshold": 4,
        },
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    lab = labels("seaweedfs", role, name)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, NS, labels=lab),
        "spec": {
            "clusterIP": "None",
            "selector": selector("seaweedfs", name),
            "ports": [{"name": p["name"], "port": p["containerPort"]} for p in ports],
            "publishNotReadyAddresses": True,
        },
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name, NS, labels=lab),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": selector("seaweedfs", name)},
            "template": {
                "metadata": {"labels": lab},
                "spec": {
                    "affinity": hostname_affinity([node.name]),
                    "tolerations": _tolerate_node(node),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "data",
                            "hostPath": {
                                "path": f"{DATA_ROOT}/{role}",
                                "type": "DirectoryOrCreate",
                            },
                        }
                    ],
                },
            },
        },
    }
    return [service, sts]


def _tolerate_node(node: Node) -> list[Obj]:
    # Storage runs on every node that has a disk for it, tainted ones included.
    return [{"key": t.key, "operator": "Exists", "effect": t.effect} for t in node.taints]


def _host(role: str, node: Node) -> str:
    return f"seaweedfs-{role}-{node.name}.{NS}"


def seaweedfs(inv: Inventory) -> list[Obj]:
    sw = inv.storage.seaweedfs
    masters = inv.seaweed_masters
    peers = ",".join(f"{_host('master', m)}:{MASTER_PORT}" for m in masters)
    objs: list[Obj] = []
    for m in masters:
        objs += _server(
            inv,
            m,
            "master",
            [
                f"-ip={_host('master', m)}",
                f"-port={MASTER_PORT}",
                "-mdir=/data",
                f"-peers={peers}",
                f"-defaultReplication={sw.replication.rjust(3, '0')}",
                f"-volumeSizeLimitMB={sw.volume_size_limit_mb}",
                # weed reports usage to telemetry.seaweedfs.com unless told not to.
                "-telemetry=false",
                # The image's entrypoint turns preallocation on: every new volume would
                # reserve its whole size limit on disk at once, filling small disks (the
                # Pi's) long before data does.
                "-volumePreallocate=false",
            ],
            MASTER_PORT,
        )
    for v in inv.seaweed_volume_servers:
        objs += _server(
            inv,
            v,
            "volume",
            [
                f"-ip={_host('volume', v)}",
                f"-port={VOLUME_PORT}",
                "-dir=/data",
                # The slots the inventory's volume_gib gives (the planner's count), not
                # -max=0, which would size the volume server by the whole disk it sits on.
                f"-max={slots_for(v.seaweedfs.volume_gib, sw.volume_size_limit_mb)}",
                f"-master={peers}",
                f"-dataCenter={sw.data_center}",
                f"-rack={rack_of(inv, v)}",
            ],
            VOLUME_PORT,
        )
    filers = [n for n in inv.nodes if n.seaweedfs.filer]
    for f in filers:
        objs += _server(
            inv,
            f,
            "filer",
            [
                f"-ip={_host('filer', f)}",
                f"-port={FILER_PORT}",
                f"-master={peers}",
                f"-dataCenter={sw.data_center}",
                f"-rack={rack_of(inv, f)}",
                f"-defaultReplicaPlacement={sw.replication.rjust(3, '0')}",
            ],
            FILER_PORT,
        )
    if filers:
        # One address for all filers: the CSI driver and the NFS clients use it.
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta("seaweedfs-filer", NS, labels=labels("seaweedfs", "filer")),
                "spec": {
                    # A mount's metadata calls must reach the filer that made its entries:
                    # filers sync each other's metadata asynchronously, so a client whose
                    # connections were spread over them would not find a file just created.
                    "sessionAffinity": "ClientIP",
                    "selector": {
                        "app.kubernetes.io/name": "seaweedfs",
                        "app.kubernetes.io/component": "filer",
                    },
                    "ports": [
                        {"name": "http", "port": FILER_PORT},
                        {"name": "grpc", "port": FILER_PORT + 10000},
                    ],
                },
            }
        )
    return objs


def csi(inv: Inventory) -> list[Obj]:
    code = inv.storage.seaweedfs.replication.rjust(3, "0")
    classes = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": meta(name, labels=labels("seaweedfs", "storage-class")),
            "provisioner": "seaweedfs-csi-driver",
            "reclaimPolicy": "Retain",
            "allowVolumeExpansion": True,
            "volumeBindingMode": "Immediate",
            "parameters": {"replication": code},
        }
        for name in ("seaweedfs-ha", "seaweedfs-ha-rwx")
    ]
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": meta("seaweedfs-csi-driver", "flux-system"),
            "spec": {
                "interval": "24h0m0s",
                "url": "https://seaweedfs.github.io/seaweedfs-csi-driver/helm",
            },
        },
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": meta("seaweedfs-csi-driver", NS),
            "spec": {
                "interval": "30m0s",
                "chart": {
                    "spec": {
                        "chart": "seaweedfs-csi-driver",
                        "version": CSI_CHART_VERSION,
                        "sourceRef": {
                            "kind": "HelmRepository",
                            "name": "seaweedfs-csi-driver",
                            "namespace": "flux-system",
                        },
                    }
                },
                "install": {"remediation": {"retries": 3}},
                "values": {
                    "seaweedfsFiler": f"seaweedfs-filer.{NS}:{FILER_PORT}",
                    "storageClassName": "seaweedfs-storage",
                    "isDefaultStorageClass": False,
                    # Updating the node plugin in place breaks running FUSE mounts.
                    "node": {"updateStrategy": {"type": "OnDelete"}},
                },
            },
        },
        *classes,
    ]


def nfs_claims(inv: Inventory) -> list[tuple[str, str, str]]:
    """(export, namespace, PV name) for every NFS claim: one in each namespace whose apps
    mount the export (a PV binds one claim, so each namespace gets a PV of its own), the
    first app's namespace for an export no app mounts."""
    nfs_cfg = inv.storage.nfs
    if nfs_cfg is None:
        return []
    k8s_apps = [a for a in inv.apps if a.kind != "docker"]
    fallback = k8s_apps[0].namespace if k8s_apps else "default"
    out = []
    for export in nfs_cfg.exports:
        namespaces = sorted(
            {
                a.namespace
                for a in k8s_apps
                for v in a.volumes
                if v.kind == "nfs" and v.export == export.name
            }
        ) or [fallback]
        for ns in namespaces:
            name = f"nfs-{export.name}" if len(namespaces) == 1 else f"nfs-{export.name}-{ns}"
            out.append((export.name, ns, name))
    return out


def nfs(inv: Inventory) -> list[Obj]:
    nfs_cfg = inv.storage.nfs
    if nfs_cfg is None:
        return []
    server = str(inv.host(nfs_cfg.host).address)
    exports = {e.name: e for e in nfs_cfg.exports}
    objs: list[Obj] = []
    for export_name, namespace, name in nfs_claims(inv):
        export = exports[export_name]
        modes = ["ReadOnlyMany"] if export.read_only else ["ReadWriteMany"]
        lab = labels("nfs", export.name)
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": meta(name, labels=lab),
                "spec": {
                    "capacity": {"storage": "1Ti"},
                    "accessModes": modes,
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "mountOptions": ["nfsvers=4.1", "hard", "noatime"],
                    "nfs": {"server": server, "path": export.path, "readOnly": export.read_only},
                    # Pre-bound both ways, so no other claim can take this volume.
                    "claimRef": {"namespace": namespace, "name": export.name},
                },
            }
        )
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": meta(export.name, namespace, labels=lab),
                "spec": {
                    "accessModes": modes,
                    "storageClassName": "",
                    "volumeName": name,
                    "resources": {"requests": {"storage": "1Ti"}},
                },
            }
        )
    return objs


def render_storage(inv: Inventory) -> dict[str, str]:
    files = {"seaweedfs.yaml": dump_all(seaweedfs(inv)), "csi.yaml": dump_all(csi(inv))}
    nfs_objs = nfs(inv)
    if nfs_objs:
        files["nfs.yaml"] = dump_all(nfs_objs)
    out = {f"storage/{name}": text for name, text in files.items()}
    out["storage/kustomization.yaml"] = dump(kustomization(list(files)))
    return out
