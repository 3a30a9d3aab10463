"""MetalLB (chart and app v0.16.1) as the twin runs it.

The chart's pods are placeholders; what MetalLB does is done by the twin while they run:
- the controller pod's address allocation, in the twin's controller manager
  (controllers/metallb.py): pools, `metallb.io/loadBalancerIPs`, sharing refusals, the
  Service's `status.loadBalancer.ingress`, its events, the pools' status counts;
- each speaker pod's announcements, in its node's process (twin/speaker.py): in BGP mode a
  real BGP session (ExaBGP) from the node's address to each BGPPeer, announcing every
  address as a /32, and the address served on the node (kube-proxy's forwarding); in L2
  mode the elected node alone serves it.
The real chart's default speaker talks BGP through frr-k8s; in the twin ExaBGP does the
talking, the router on the other side is the real FRR.

Addresses: the inventory's pool is on the home subnet; the twin moves it onto its own
loopback /24 by the rule every twin address follows (the last octet kept), so a Service's
ingress address is one this machine can connect to. `twin status` says so.

Facts, from MetalLB's source (controller/service.go, internal/allocator, speaker/):
events `IPAllocated` "Assigned IP [...]", `AllocationFailed` "Failed to allocate IP for
"ns/name": ...", `nodeAssigned` "announcing from node "N" with protocol "bgp"";
ServiceBGPStatus/ServiceL2Status objects `bgp-`/`l2-` + suffix in MetalLB's namespace,
labelled metallb.io/node, metallb.io/service-name, metallb.io/service-namespace.
"""

from __future__ import annotations

from typing import Any

from halab.twin.images.crds import crd

CHART = "metallb"
CHART_VERSION = "0.16.1"
APP_VERSION = "v0.16.1"
GROUP = "metallb.io"
CONTROLLER_IMAGE = "quay.io/metallb/controller"
SPEAKER_IMAGE = "quay.io/metallb/speaker"
ANNOTATION_IPS = "metallb.io/loadBalancerIPs"
ANNOTATION_POOL = "metallb.io/address-pool"
ANNOTATION_SHARED = "metallb.io/allow-shared-ip"
LABEL_NODE = "metallb.io/node"
LABEL_SERVICE = "metallb.io/service-name"
LABEL_SERVICE_NS = "metallb.io/service-namespace"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# kind -> (version, plural)
KINDS = {
    "IPAddressPool": ("v1beta1", "ipaddresspools"),
    "BGPPeer": ("v1beta2", "bgppeers"),
    "BGPAdvertisement": ("v1beta1", "bgpadvertisements"),
    "L2Advertisement": ("v1beta1", "l2advertisements"),
    "Community": ("v1beta1", "communities"),
    "BFDProfile": ("v1beta1", "bfdprofiles"),
    "ServiceBGPStatus": ("v1beta1", "servicebgpstatuses"),
    "ServiceL2Status": ("v1beta1", "servicel2statuses"),
}


def _name(image: str) -> str:
    return image.split("@")[0].split(":")[0]


def is_controller(image: str) -> bool:
    return _name(image).endswith("metallb/controller")


def is_speaker(image: str) -> bool:
    return _name(image).endswith("metallb/speaker")


def describe(image: str) -> str | None:
    if is_controller(image):
        return (
            f"stand-in: MetalLB controller {APP_VERSION} (the twin assigns LoadBalancer "
            "addresses from the pools while this pod runs)"
        )
    if is_speaker(image):
        return (
            f"stand-in: MetalLB speaker {APP_VERSION} (its node announces the addresses: "
            "real BGP through ExaBGP, or L2 by election, while this pod runs)"
        )
    return None


def api(kind: str) -> tuple[str, str]:
    """(apiVersion, plural) of a MetalLB kind."""
    version, plural = KINDS[kind]
    return f"{GROUP}/{version}", plural


def chart_objects(release: str, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's CRDs, controller Deployment and speaker DaemonSet (RBAC, webhooks and
    frr-k8s are left out: the twin's API server neither authorizes nor calls webhooks)."""
    labels = {
        "app.kubernetes.io/name": "metallb",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/version": APP_VERSION,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"{CHART}-{CHART_VERSION}",
    }
    select = {"app.kubernetes.io/name": "metallb", "app.kubernetes.io/instance": release}
    speaker_values = values.get("speaker") or {}
    tolerations = []
    if speaker_values.get("tolerateMaster", True):
        tolerations = [
            {"key": k, "effect": "NoSchedule", "operator": "Exists"}
            for k in ("node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane")
        ]
    tolerations += list(speaker_values.get("tolerations") or [])

    def workload(kind: str, component: str, image: str, spec: dict[str, Any]) -> dict[str, Any]:
        pod_labels = {**select, "app.kubernetes.io/component": component}
        container = {
            "name": component,
            "image": f"{image}:{APP_VERSION}",
            "args": ["--port=7472", "--log-level=info"],
            "ports": [{"name": "monitoring", "containerPort": 7472}],
            "env": [
                {
                    "name": "METALLB_NODE_NAME",
                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                },
            ]
            if component == "speaker"
            else [],
        }
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {
                "name": f"{release}-{component}",
                "namespace": namespace,
                "labels": {**labels, "app.kubernetes.io/component": component},
            },
            "spec": {
                "selector": {"matchLabels": pod_labels},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {**spec, "containers": [container]},
                },
                **({"replicas": 1} if kind == "Deployment" else {}),
            },
        }

    crds = [
        crd(GROUP, version, kind, plural, [], part_of="metallb")
        for kind, (version, plural) in KINDS.items()
    ]
    return [
        *crds,
        workload(
            "Deployment",
            "controller",
            CONTROLLER_IMAGE,
            {"nodeSelector": {"kubernetes.io/os": "linux"}},
        ),
        workload(
            "DaemonSet",
            "speaker",
            SPEAKER_IMAGE,
            {
                "hostNetwork": True,
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": tolerations,
            },
        ),
    ]
