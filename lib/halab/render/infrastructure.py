"""infrastructure/: kube-vip, MetalLB, the Intel GPU device plugin, namespaces.

Facts: reference/k3s-ha.md §3 (kube-vip env, RBAC, timings), §4 (MetalLB CRDs and
apiVersions), §5 (the GPU plugin's resource names, mounts and image).
"""

from __future__ import annotations

from halab.inventory import Inventory
from halab.render.objects import (
    hostname_affinity,
    kustomization,
    labels,
    meta,
    namespace,
    selector,
    tolerate_all_no_schedule,
)
from halab.render.yamltext import Obj, dump, dump_all

KUBE_VIP_IMAGE = "ghcr.io/kube-vip/kube-vip:v1.2.3"
GPU_PLUGIN_IMAGE = "intel/intel-gpu-plugin:0.36.0"
METALLB_CHART_VERSION = "0.16.1"
NAMESPACES = ["media", "metallb-system", "seaweedfs"]


def kube_vip(inv: Inventory) -> list[Obj]:
    kv = inv.cluster.timing.kube_vip
    name = "kube-vip"
    rbac: list[Obj] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, "kube-system")},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta("system:kube-vip-role"),
            "rules": [
                {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
                {
                    "apiGroups": [""],
                    "resources": ["services", "endpoints"],
                    "verbs": ["list", "get", "watch", "update"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["nodes"],
                    "verbs": ["list", "get", "watch", "update", "patch"],
                },
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["list", "get", "watch", "update", "create"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta("system:kube-vip-binding"),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kube-vip-role",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}],
        },
    ]
    env = [
        ("vip_arp", "true"),
        ("port", "6443"),
        ("vip_subnet", "32"),
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
        # MetalLB owns Services; kube-vip handling them too would fight it.
        ("svc_enable", "false"),
        ("vip_leaderelection", "true"),
        ("vip_leasename", "plndr-cp-lock"),
        ("vip_leaseduration", str(kv.lease_duration_s)),
        ("vip_renewdeadline", str(kv.renew_deadline_s)),
        ("vip_retryperiod", str(kv.retry_period_s)),
        ("address", str(inv.network.vip)),
    ]
    container = {
        "name": name,
        "image": KUBE_VIP_IMAGE,
        "args": ["manager"],
        "env": [{"name": k, "value": v} for k, v in env]
        + [{"name": "vip_nodename", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    }
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta("kube-vip-ds", "kube-system", labels=labels(name, "vip")),
        "spec": {
            "selector": {"matchLabels": selector(name)},
            "template": {
                "metadata": {"labels": labels(name, "vip")},
                "spec": {
                    "serviceAccountName": name,
                    "hostNetwork": True,
                    "affinity": hostname_affinity([n.name for n in inv.servers]),
                    "tolerations": tolerate_all_no_schedule(),
                    "containers": [container],
                },
            },
        },
    }
    return [*rbac, ds]


def metallb_controller() -> list[Obj]:
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "HelmRepository",
            "metadata": meta("metallb", "flux-system"),
            "spec": {"interval": "24h0m0s", "url": "https://metallb.github.io/metallb"},
        },
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": meta("metallb", "metallb-system"),
            "spec": {
                "interval": "30m0s",
                "chart": {
                    "spec": {
                        "chart": "metallb",
                        "version": METALLB_CHART_VERSION,
                        "sourceRef": {
                            "kind": "HelmRepository",
                            "name": "metallb",
                            "namespace": "flux-system",
                        },
                    }
                },
                "install": {"crds": "CreateReplace", "remediation": {"retries": 3}},
                "upgrade": {"crds": "CreateReplace", "remediation": {"retries": 3}},
                # The chart's speakers tolerate only the control-plane taints: a tainted
                # worker (the GPU node's gpu=true:NoSchedule) would get no speaker, and the
                # gateway no BGP session with it.
                "values": {"speaker": {"tolerations": tolerate_all_no_schedule()}},
            },
        },
    ]


def metallb_config(inv: Inventory) -> list[Obj]:
    lb = inv.network.metallb
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": meta("default", "metallb-system"),
        "spec": {"addresses": list(lb.pool), "autoAssign": True},
    }
    if lb.mode == "l2":
        return [
            pool,
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "L2Advertisement",
                "metadata": meta("default", "metallb-system"),
                "spec": {"ipAddressPools": ["default"]},
            },
        ]
    assert lb.bgp is not None
    peer_spec: Obj = {
        "myASN": lb.bgp.my_asn,
        "peerASN": lb.bgp.peer_asn,
        "peerAddress": str(lb.bgp.peer_address),
    }
    if lb.bgp.hold_time_s is not None:
        peer_spec["holdTime"] = f"{lb.bgp.hold_time_s}s"
    peer = {
        "apiVersion": "metallb.io/v1beta2",
        "kind": "BGPPeer",
        "metadata": meta("gateway", "metallb-system"),
        "spec": peer_spec,
    }
    adv = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "BGPAdvertisement",
        "metadata": meta("default", "metallb-system"),
        "spec": {"ipAddressPools": ["default"]},
    }
    return [pool, peer, adv]


def gpu_plugin(inv: Inventory) -> list[Obj]:
    gpu_nodes = [n for n in inv.nodes if n.gpu is not None and n.gpu.vendor == "intel"]
    if not gpu_nodes:
        return []
    shared = max(n.gpu.shared_dev_num for n in gpu_nodes if n.gpu is not None)
    name = "intel-gpu-plugin"
    mounts = [
        ("devfs", "/dev/dri", True),
        ("sysfsdrm", "/sys/class/drm", True),
        ("kubeletsockets", "/var/lib/kubelet/device-plugins", False),
        ("cdipath", "/var/run/cdi", False),
    ]
    container = {
        "name": name,
        "image": GPU_PLUGIN_IMAGE,
        "args": [f"-shared-dev-num={shared}"],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        ],
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "seLinuxOptions": {"type": "container_device_plugin_t"},
        },
        "resources": {
            "requests": {"cpu": "40m", "memory": "45Mi"},
            "limits": {"cpu": "100m", "memory": "90Mi"},
        },
        "volumeMounts": [{"name": v, "mountPath": p, "readOnly": ro} for v, p, ro in mounts],
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta(name, "kube-system", labels=labels(name, "device-plugin")),
            "spec": {
                "selector": {"matchLabels": selector(name)},
                "template": {
                    "metadata": {"labels": labels(name, "device-plugin")},
                    "spec": {
                        "affinity": hostname_affinity([n.name for n in gpu_nodes]),
                        "nodeSelector": {"kubernetes.io/arch": "amd64"},
                        "tolerations": tolerate_all_no_schedule(),
                        "containers": [container],
                        "volumes": [{"name": v, "hostPath": {"path": p}} for v, p, _ in mounts],
                    },
                },
            },
        }
    ]


def render_infrastructure(inv: Inventory) -> dict[str, str]:
    controllers = {
        "namespaces.yaml": dump_all(namespace(n) for n in NAMESPACES),
        "kube-vip.yaml": dump_all(kube_vip(inv)),
        "metallb.yaml": dump_all(metallb_controller()),
    }
    gpu = gpu_plugin(inv)
    if gpu:
        controllers["intel-gpu-plugin.yaml"] = dump_all(gpu)
    configs = {"metallb-config.yaml": dump_all(metallb_config(inv))}
    files: dict[str, str] = {}
    for folder, group in (("controllers", controllers), ("configs", configs)):
        for name, text in group.items():
            files[f"infrastructure/{folder}/{name}"] = text
        files[f"infrastructure/{folder}/kustomization.yaml"] = dump(kustomization(list(group)))
    return files
