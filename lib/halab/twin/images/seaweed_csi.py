"""The SeaweedFS CSI driver (seaweedfs/seaweedfs-csi-driver, chart 0.2.35, app v1.4.29) as
the twin runs it.

Its pods are placeholders: the gRPC between kubelet and driver is not modelled. What the
driver does is done by the twin where Kubernetes would ask the driver to do it, and only
while the driver's own pods run: the controller pod's provisioner and attacher in the
twin's controller manager (controllers/csi.py), the node plugin's registration and the
mount service's `weed mount` (the real binary, FUSE) in the kubelet (kubelet/csi.py).

Facts, from the driver's source and chart (reference/seaweedfs.md §4):
- driver name `seaweedfs-csi-driver` (values `driverName`), the StorageClass provisioner;
- a volume is the filer directory `<parentDir>/<pv-name>`, parentDir `/buckets` by default;
  its collection is the directory's base name unless the class sets `collection`;
- the class's `replication`, `diskType` (-disk) and `ttl` become `weed mount` flags, and the
  claim's size becomes `-collectionQuotaMB`;
- the controller's `--attacher=true` (chart default) makes attach required (CSIDriver
  `attachRequired`), so a volume is attached to one node through a VolumeAttachment;
- the chart: Deployment `<release>-controller`, DaemonSets `<release>-node` and
  `<release>-mount`, CSIDriver, and a StorageClass `storageClassName` (seaweedfs-storage).
"""

from __future__ import annotations

import hashlib
from typing import Any

from halab.inventory.quantity import parse_quantity

CHART = "seaweedfs-csi-driver"
CHART_VERSION = "0.2.35"
APP_VERSION = "v1.4.29"
PLUGIN_IMAGE = "chrislusf/seaweedfs-csi-driver"
MOUNT_IMAGE = "chrislusf/seaweedfs-mount"
DEFAULT_DRIVER = "seaweedfs-csi-driver"
PARENT_DIR = "/buckets"
# Volume context keys the driver reads; others it logs as "VolumeContext '%s' ignored".
CONTEXT_KEYS = (
    "collection",
    "replication",
    "diskType",
    "ttl",
    "path",
    "parentDir",
    "dataLocality",
    "dataCenter",
    "uidMap",
    "gidMap",
    "chunkSizeLimitMB",
    "volumeServerAccess",
    "readRetryTime",
)
SIDECARS = {
    "csi-provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v3.5.0",
    "csi-resizer": "registry.k8s.io/sig-storage/csi-resizer:v1.8.0",
    "csi-attacher": "registry.k8s.io/sig-storage/csi-attacher:v4.3.0",
    "driver-registrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.8.0",
    "csi-liveness-probe": "registry.k8s.io/sig-storage/livenessprobe:v2.10.0",
}


def _name(image: str) -> str:
    """An image's name without registry, owner, tag or digest."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def is_plugin(image: str) -> bool:
    return _name(image) == _name(PLUGIN_IMAGE)


def is_mount_service(image: str) -> bool:
    return _name(image) == _name(MOUNT_IMAGE)


def describe(image: str) -> str | None:
    """What `twin status` says a CSI container runs, or None when it is not one."""
    if is_plugin(image):
        return (
            f"stand-in: SeaweedFS CSI driver {APP_VERSION} (the twin provisions, attaches "
            "and mounts while this pod runs)"
        )
    if is_mount_service(image):
        return "stand-in: SeaweedFS mount service (the kubelet runs the real weed mount)"
    return None


def component(pod: dict[str, Any]) -> tuple[str, str, str] | None:
    """(component, driver name, filer) of a CSI driver pod: component is `controller`,
    `node` or `mount`; None for any other pod."""
    for c in pod.get("spec", {}).get("containers") or []:
        image = str(c.get("image", ""))
        env = {e.get("name"): e.get("value") for e in c.get("env") or [] if "value" in e}
        if is_plugin(image):
            args = [str(a) for a in c.get("args") or []]
            which = next((a.split("=", 1)[1] for a in args if a.startswith("--components=")), "")
            return (
                which,
                str(env.get("DRIVER_NAME", DEFAULT_DRIVER)),
                str(env.get("SEAWEEDFS_FILER", "")),
            )
        if is_mount_service(image):
            return "mount", "", ""
    return None


def volume_path(pv_name: str, params: dict[str, str]) -> str:
    if params.get("path"):
        return params["path"]
    return f"{params.get('parentDir', PARENT_DIR).rstrip('/')}/{pv_name}"


def volume_context(pv_name: str, params: dict[str, str]) -> dict[str, str]:
    """What the controller hands the node for a new volume: the class's known keys and
    the volume's filer path."""
    context = {k: str(v) for k, v in params.items() if k in CONTEXT_KEYS}
    context["path"] = volume_path(pv_name, params)
    return context


def quota_mb(capacity: Any) -> int:
    try:
        return max(1, int(float(parse_quantity(capacity or "1Gi")) // (1024 * 1024)))
    except ValueError:
        return 1024


def mount_argv(
    weed: str, filer: str, target: str, cache: str, context: dict[str, str], capacity: Any
) -> list[str]:
    """`weed mount` as the mount service runs it for one volume on one node."""
    path = context.get("path", "/")
    argv = [
        weed,
        "mount",
        f"-filer={filer}",
        f"-filer.path={path}",
        f"-dir={target}",
        f"-cacheDir={cache}",
        "-cacheCapacityMB=64",
        f"-collection={context.get('collection') or path.rstrip('/').rsplit('/', 1)[-1]}",
        f"-collectionQuotaMB={quota_mb(capacity)}",
        "-allowOthers=true",
    ]
    for key, flag in (("replication", "replication"), ("diskType", "disk"), ("ttl", "ttl")):
        if context.get(key):
            argv.append(f"-{flag}={context[key]}")
    if context.get("dataCenter"):
        argv.append(f"-dataCenter={context['dataCenter']}")
    return argv


def attachment_name(driver: str, volume_handle: str, node: str) -> str:
    """The external attacher's VolumeAttachment name: csi-<sha256(handle+driver+node)>."""
    return "csi-" + hashlib.sha256(f"{volume_handle}{driver}{node}".encode()).hexdigest()


# -- the chart ----------------------------------------------------------------------------


def _container(name: str, image: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": image, "args": args}
    if env:
        out["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return out


def _node_name_env() -> dict[str, Any]:
    return {"name": "NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}


def chart_objects(release: str, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's objects for these values, as far as the twin runs them (its RBAC and
    optional parts are left out: the twin's API server does not authorize)."""
    driver = str(values.get("driverName", DEFAULT_DRIVER))
    filer = str(values.get("seaweedfsFiler", "SEAWEEDFS_FILER:8888"))
    attacher = bool((values.get("csiAttacher") or {}).get("enabled", True))
    tag = (values.get("seaweedfsCsiPlugin") or {}).get("tag") or APP_VERSION
    plugin = f"{PLUGIN_IMAGE}:{tag}"
    env = {"CSI_ENDPOINT": "unix:///csi/csi.sock", "SEAWEEDFS_FILER": filer, "DRIVER_NAME": driver}
    common = [
        "--endpoint=$(CSI_ENDPOINT)",
        "--filer=$(SEAWEEDFS_FILER)",
        "--driverName=$(DRIVER_NAME)",
    ]
    labels = {"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": f"{CHART}-{CHART_VERSION}"}

    def meta(name: str, ns: str | None = namespace) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "labels": dict(labels)}
        if ns:
            out["namespace"] = ns
        return out

    controller = _container(
        "seaweedfs-csi-plugin",
        plugin,
        [*common, "--components=controller", f"--attacher={str(attacher).lower()}"],
        env,
    )
    provisioner = _container(
        "csi-provisioner",
        SIDECARS["csi-provisioner"],
        ["--csi-address=$(ADDRESS)", "--leader-election", "--http-endpoint=:9809"],
        {"ADDRESS": "/var/lib/csi/sockets/pluginproxy/csi.sock"},
    )
    provisioner["ports"] = [{"containerPort": 9809, "name": "healthz"}]
    node_plugin = _container(
        "csi-seaweedfs-plugin",
        plugin,
        [
            *common,
            "--nodeid=$(NODE_ID)",
            "--mountEndpoint=$(MOUNT_ENDPOINT)",
            "--cacheDir=/var/cache/seaweedfs",
            "--components=node",
        ],
        {**env, "MOUNT_ENDPOINT": "unix:///var/lib/seaweedfs-mount/seaweedfs-mount.sock"},
    )
    node_plugin["env"].append(_node_name_env())
    registrar = _container(
        "driver-registrar",
        SIDECARS["driver-registrar"],
        ["--csi-address=$(ADDRESS)", "--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)"],
        {
            "ADDRESS": "/csi/csi.sock",
            "DRIVER_REG_SOCK_PATH": f"/var/lib/kubelet/plugins/{driver}/csi.sock",
        },
    )
    node_values = values.get("node") or {}
    mount = _container(
        "seaweedfs-mount",
        f"{MOUNT_IMAGE}:{tag}",
        ["--endpoint=$(MOUNT_ENDPOINT)"],
        {"MOUNT_ENDPOINT": "unix:///var/lib/seaweedfs-mount/seaweedfs-mount.sock"},
    )

    def daemonset(name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta(name),
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "updateStrategy": node_values.get("updateStrategy") or {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "serviceAccountName": f"{release}-node-sa",
                        "hostPID": True,
                        "containers": containers,
                    },
                },
            },
        }

    class_name = str(values.get("storageClassName", "seaweedfs-storage"))
    default = "true" if values.get("isDefaultStorageClass") else "false"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(f"{release}-controller-sa"),
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(f"{release}-node-sa")},
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": meta(driver, None),
            "spec": {"attachRequired": attacher, "podInfoOnMount": True},
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                **meta(class_name, None),
                "annotations": {"storageclass.kubernetes.io/is-default-class": default},
            },
            "provisioner": driver,
            "allowVolumeExpansion": True,
            "volumeBindingMode": str(values.get("storageClassVolumeBindingMode", "Immediate")),
            "parameters": dict(values.get("storageClassParameters") or {}),
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(f"{release}-controller"),
            "spec": {
                "replicas": int((values.get("controller") or {}).get("replicas", 1)),
                "selector": {"matchLabels": {"app": f"{release}-controller"}},
                "template": {
                    "metadata": {"labels": {"app": f"{release}-controller"}},
                    "spec": {
                        "serviceAccountName": f"{release}-controller-sa",
                        "containers": [controller, provisioner],
                    },
                },
            },
        },
        daemonset(f"{release}-node", [node_plugin, registrar]),
        daemonset(f"{release}-mount", [mount]),
    ]
