"""The resource types the twin's API server knows, and how each is stored and served.

A resource is addressed as real Kubernetes does: group, version, plural, namespaced or
not. CustomResourceDefinitions add entries at run time (see `Registry.add_crd`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "log", "eviction", "binding"
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(VERBS)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def key(self, namespace: str | None, name: str) -> str:
        """The etcd key an object lives under (as kube-apiserver lays it out)."""
        return f"{self.prefix(namespace)}{name}"

    def prefix(self, namespace: str | None) -> str:
        group = self.group or "core"
        if self.namespaced and namespace:
            return f"/registry/{group}/{self.plural}/{namespace}/"
        return f"/registry/{group}/{self.plural}/"


def _r(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    cat: tuple[str, ...] = (),
) -> Resource:
    return Resource(group, version, kind, plural, namespaced, short, sub, cat)


ALL = ("all",)
BUILTIN: list[Resource] = [
    _r("", "v1", "Namespace", "namespaces", False, ("ns",), ("status",)),
    _r("", "v1", "Node", "nodes", False, ("no",), ("status",)),
    _r("", "v1", "Pod", "pods", True, ("po",), ("status", "log", "eviction", "binding"), ALL),
    _r("", "v1", "Service", "services", True, ("svc",), ("status",), ALL),
    _r("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    _r("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    _r("", "v1", "Secret", "secrets", True),
    _r("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    _r("", "v1", "Event", "events", True, ("ev",)),
    _r("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), ("status",)),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), ("status",)),
    _r("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), ALL),
    _r("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ALL),
    _r("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale"), ALL),
    _r("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",), ALL),
    _r("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    _r("batch", "v1", "Job", "jobs", True, (), ("status",), ALL),
    _r("coordination.k8s.io", "v1", "Lease", "leases", True),
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), ("status",)),
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",)),
    _r("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    _r("storage.k8s.io", "v1", "CSINode", "csinodes", False),
    _r("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False, (), ("status",)),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _r(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        ("status",),
    ),
]

# Groups listed first are preferred by clients resolving short names, as in k3s.
GROUP_ORDER = [
    "",
    "apps",
    "batch",
    "coordination.k8s.io",
    "policy",
    "storage.k8s.io",
    "discovery.k8s.io",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
]


@dataclass
class Registry:
    resources: dict[tuple[str, str, str], Resource] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> Registry:
        reg = cls()
        for res in BUILTIN:
            reg.resources[(res.group, res.version, res.plural)] = res
        return reg

    def find(self, group: str, version: str, plural: str) -> Resource | None:
        return self.resources.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        for res in self.resources.values():
            if res.group == group and res.version == version and res.kind == kind:
                return res
        return None

    def groups(self) -> dict[str, list[str]]:
        """group -> versions, core group first, then the built-in order, then CRDs."""
        out: dict[str, list[str]] = {}
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        for res in sorted(self.resources.values(), key=lambda r: (order.get(r.group, 99), r.group)):
            versions = out.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.group == group and r.version == version]

    def add_crd(self, crd: dict[str, Any]) -> list[Resource]:
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        added = []
        for ver in spec.get("versions", []):
            if not ver.get("served", True):
                continue
            sub = ver.get("subresources") or {}
            res = Resource(
                group=spec["group"],
                version=ver["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", [])),
                subresources=tuple(k for k in ("status", "scale") if k in sub),
                categories=tuple(names.get("categories", [])),
            )
            self.resources[(res.group, res.version, res.plural)] = res
            added.append(res)
        return added

    def remove_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec", {})
        plural = spec.get("names", {}).get("plural")
        for key in [k for k in self.resources if k[0] == spec.get("group") and k[2] == plural]:
            del self.resources[key]
