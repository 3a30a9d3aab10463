"""Small builders for the Kubernetes objects every part of the tree uses."""

from __future__ import annotations

from typing import Any

from halab.render.yamltext import Obj

PART_OF = "halab"


def labels(name: str, component: str = "", instance: str = "") -> dict[str, str]:
    """The recommended app.kubernetes.io labels."""
    out = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance or name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "flux",
    }
    if component:
        out["app.kubernetes.io/component"] = component
    return out


def selector(name: str, instance: str = "") -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance or name}


def meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if namespace:
        out["namespace"] = namespace
    out.update(extra)
    return out


def namespace(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(name, labels={"app.kubernetes.io/part-of": PART_OF}),
    }


def kustomization(resources: list[str]) -> Obj:
    """A kustomize kustomization.yaml listing the files of one directory."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    }


def hostname_affinity(nodes: list[str]) -> Obj:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "In",
                                "values": sorted(nodes),
                            }
                        ]
                    }
                ]
            }
        }
    }


def tolerate_all_no_schedule() -> list[Obj]:
    """For node agents (kube-vip, the GPU plugin): run whatever the node is tainted with."""
    return [
        {"operator": "Exists", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute"},
    ]
