"""What the API server does to an object before it stores it: defaults and validation.

Defaults are those of the real API server for the fields the kit and kubectl read
(pod defaults, the DefaultTolerationSeconds plugin, workload strategies, Service IPs).
Validation covers what a client can get wrong and must hear about as a 422 naming the
field, never as a 500.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from halab.twin.api.resources import Resource
from halab.twin.api.status import ApiError, invalid

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kinds whose names are path segments the real server accepts with ':' (RBAC) or upper case.
_LOOSE_NAMES = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Event"}
_GENERATION_KINDS = {
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "PodDisruptionBudget",
    "CustomResourceDefinition",
    "Service",
    "Pod",
}


@dataclass(frozen=True)
class Tolerations:
    """kube-apiserver --default-not-ready/unreachable-toleration-seconds."""

    not_ready_s: int = 300
    unreachable_s: int = 300


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix(n: int = 5) -> str:
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


Causes = list[tuple[str, str, str]]


def _required(causes: Causes, field: str) -> None:
    causes.append((field, "FieldValueRequired", "Required value"))


def admit_create(
    res: Resource, obj: dict[str, Any], namespace: str | None, tolerations: Tolerations
) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = f"{meta['generateName']}{_suffix()}"
    obj["apiVersion"] = res.api_version
    obj["kind"] = res.kind
    if res.namespaced:
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        meta["namespace"] = namespace or meta.get("namespace") or "default"
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now()
    meta.pop("deletionTimestamp", None)
    meta.pop("resourceVersion", None)
    if res.kind in _GENERATION_KINDS:
        meta["generation"] = 1
    DEFAULTS.get(res.kind, lambda o, t: None)(obj, tolerations)
    validate(res, obj)
    return obj


def validate(res: Resource, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata", {})
    name = meta.get("name") or ""
    causes: Causes = []
    if not name:
        _required(causes, "metadata.name")
    elif res.kind not in _LOOSE_NAMES and len(name) > 253:
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be no more than 253 characters',
            )
        )
    elif res.kind not in _LOOSE_NAMES and not DNS_SUBDOMAIN.match(name):
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63:
            causes.append((f"metadata.labels[{key}]", "FieldValueInvalid", "Invalid value"))
    checker = VALIDATORS.get(res.kind)
    if checker:
        checker(obj, causes)
    if causes:
        raise invalid(res.kind, res.group, name, causes)


# -- pods ---------------------------------------------------------------------------------


def _pod_spec_defaults(spec: dict[str, Any], tolerations: Tolerations | None) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        if not isinstance(c, dict):
            continue
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        resources = c.setdefault("resources", {})
        for kind in ("limits", "requests"):
            if isinstance(resources.get(kind), dict):
                resources[kind] = {k: _quantity(v) for k, v in resources[kind].items()}
        for port in c.get("ports") or []:
            port.setdefault("protocol", "TCP")
    if tolerations is not None:
        _default_tolerations(spec, tolerations)


def _quantity(value: Any) -> Any:
    """A resource quantity as the API server stores it: a string (`1` -> "1", 0.5 ->
    "500m"); clients' models refuse a bare number read back."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if float(value).is_integer():
        return str(int(value))
    milli = value * 1000
    return f"{int(milli)}m" if float(milli).is_integer() else str(value)


def _default_tolerations(spec: dict[str, Any], t: Tolerations) -> None:
    """The DefaultTolerationSeconds admission plugin, applied at create time only."""
    tols = spec.setdefault("tolerations", [])
    for key, seconds in (
        ("node.kubernetes.io/not-ready", t.not_ready_s),
        ("node.kubernetes.io/unreachable", t.unreachable_s),
    ):
        if any(
            x.get("key") in (key, None, "") and x.get("effect") in ("NoExecute", None, "")
            for x in tols
            if x.get("operator") == "Exists" or x.get("key") == key
        ):
            continue
        tols.append(
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        )


def _pod_defaults(obj: dict[str, Any], t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    _pod_spec_defaults(spec, t)
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", _qos(spec))


def _qos(spec: dict[str, Any]) -> str:
    containers = spec.get("containers") or []
    res = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    guaranteed = all(
        r.get("limits", {}).get(k)
        and r.get("requests", {}).get(k, r["limits"][k]) == r["limits"][k]
        for r in res
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _validate_pod_spec(spec: Any, path: str, causes: Causes) -> None:
    if not isinstance(spec, dict):
        _required(causes, path)
        return
    containers = spec.get("containers")
    if not containers:
        _required(causes, f"{path}.containers")
        return
    seen: set[str] = set()
    for n, c in enumerate(containers):
        where = f"{path}.containers[{n}]"
        if not isinstance(c, dict):
            causes.append((where, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        if not c.get("name"):
            _required(causes, f"{where}.name")
        elif not DNS_LABEL.match(c["name"]):
            causes.append((f"{where}.name", "FieldValueInvalid", f'Invalid value: "{c["name"]}"'))
        elif c["name"] in seen:
            causes.append(
                (f"{where}.name", "FieldValueDuplicate", f'Duplicate value: "{c["name"]}"')
            )
        seen.add(c.get("name", ""))
        if not c.get("image"):
            _required(causes, f"{where}.image")
        for p, port in enumerate(c.get("ports") or []):
            cp = port.get("containerPort") if isinstance(port, dict) else None
            if not isinstance(cp, int) or not 1 <= cp <= 65535:
                causes.append(
                    (
                        f"{where}.ports[{p}].containerPort",
                        "FieldValueInvalid",
                        f"Invalid value: {cp}: must be between 1 and 65535, inclusive",
                    )
                )
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        causes.append(
            (
                f"{path}.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"',
            )
        )


def _validate_pod(obj: dict[str, Any], causes: Causes) -> None:
    _validate_pod_spec(obj.get("spec"), "spec", causes)


# -- workloads ----------------------------------------------------------------------------


def _template_defaults(spec: dict[str, Any]) -> None:
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    if isinstance(template.get("spec"), dict):
        _pod_spec_defaults(template["spec"], None)


def _deployment_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
    _template_defaults(spec)
    obj.setdefault("status", {})


def _replicaset_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template_defaults(spec)
    obj.setdefault("status", {"replicas": 0})


def _statefulset_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    spec.setdefault(
        "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
    )
    _template_defaults(spec)
    obj.setdefault("status", {"replicas": 0})


def _daemonset_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault(
        "updateStrategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
    )
    _template_defaults(spec)
    # The four counts are required fields of DaemonSetStatus; clients refuse it without them.
    obj["status"] = {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    }


def _job_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    uid = obj["metadata"]["uid"]
    if not spec.get("manualSelector"):
        # As the Job controller does: a selector on the Job's own uid.
        labels = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
        tmeta["labels"] = {
            **(tmeta.get("labels") or {}),
            **labels,
            "batch.kubernetes.io/job-name": obj["metadata"]["name"],
            "job-name": obj["metadata"]["name"],
        }
    _template_defaults(spec)
    obj.setdefault("status", {})


def _validate_workload(obj: dict[str, Any], causes: Causes) -> None:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    _validate_pod_spec(template.get("spec"), "spec.template.spec", causes)
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(
            ("spec.replicas", "FieldValueInvalid", f"Invalid value: {replicas}: must be >= 0")
        )
    if obj.get("kind") in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        selector = spec.get("selector")
        if not selector:
            _required(causes, "spec.selector")
            return
        from halab.twin.api.selectors import matches_selector

        labels = (template.get("metadata") or {}).get("labels") or {}
        if not matches_selector(selector, labels):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    "FieldValueInvalid",
                    f"Invalid value: {labels}: `selector` does not match template `labels`",
                )
            )
    if obj.get("kind") == "Job":
        policy = (template.get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            causes.append(
                (
                    "spec.template.spec.restartPolicy",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                )
            )


# -- the rest -----------------------------------------------------------------------------


def _service_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec.get("clusterIP") == "None":
        spec["clusterIPs"] = ["None"]
    # Otherwise the ClusterIP is allocated when the Service is stored (service_ips.py).
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer"):
            port.setdefault("nodePort", random.randint(30000, 32767))
    if spec["type"] == "LoadBalancer":
        spec.setdefault("externalTrafficPolicy", "Cluster")
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj.setdefault("status", {"loadBalancer": {}})


def _validate_service(obj: dict[str, Any], causes: Causes) -> None:
    spec = obj.get("spec") or {}
    if spec.get("type") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            ("spec.type", "FieldValueNotSupported", f'Unsupported value: "{spec.get("type")}"')
        )
    ports = spec.get("ports") or []
    if not ports and spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None":
        _required(causes, "spec.ports")
    for n, port in enumerate(ports):
        value = port.get("port") if isinstance(port, dict) else None
        if not isinstance(value, int) or not 1 <= value <= 65535:
            causes.append((f"spec.ports[{n}].port", "FieldValueInvalid", f"Invalid value: {value}"))


def _namespace_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    obj["status"] = {"phase": "Active"}


def _pvc_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    obj["status"] = {"phase": "Pending"}


def _pv_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    obj["status"] = {"phase": "Available"}


def _crd_defaults(obj: dict[str, Any], _t: Tolerations) -> None:
    names = (obj.get("spec") or {}).get("names") or {}
    stamp = now()
    obj["status"] = {
        "acceptedNames": names,
        "storedVersions": [
            v["name"] for v in obj.get("spec", {}).get("versions", []) if v.get("storage")
        ],
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": stamp, "reason": r, "message": m}
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ],
    }


def _validate_crd(obj: dict[str, Any], causes: Causes) -> None:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    for key in ("group", "names", "versions"):
        if not spec.get(key):
            _required(causes, f"spec.{key}")
    for key in ("plural", "kind"):
        if not names.get(key):
            _required(causes, f"spec.names.{key}")
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if names.get("plural") and spec.get("group") and obj["metadata"].get("name") != expected:
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{obj["metadata"].get("name")}": must be spec.names.plural+"."'
                f'+spec.group ("{expected}")',
            )
        )


DEFAULTS = {
    "Pod": _pod_defaults,
    "Deployment": _deployment_defaults,
    "ReplicaSet": _replicaset_defaults,
    "StatefulSet": _statefulset_defaults,
    "DaemonSet": _daemonset_defaults,
    "Job": _job_defaults,
    "Service": _service_defaults,
    "Namespace": _namespace_defaults,
    "PersistentVolumeClaim": _pvc_defaults,
    "PersistentVolume": _pv_defaults,
    "CustomResourceDefinition": _crd_defaults,
}
VALIDATORS = {
    "Pod": _validate_pod,
    "Deployment": _validate_workload,
    "ReplicaSet": _validate_workload,
    "StatefulSet": _validate_workload,
    "DaemonSet": _validate_workload,
    "Job": _validate_workload,
    "Service": _validate_service,
    "CustomResourceDefinition": _validate_crd,
}


def template_defaults_on_update(res: Resource, obj: dict[str, Any]) -> None:
    """Updates get the same template defaults, so an apply round-trips without drift."""
    spec = obj.get("spec")
    if isinstance(spec, dict) and res.kind in (
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
    ):
        _template_defaults(spec)
    if res.kind == "Pod" and isinstance(spec, dict):
        _pod_spec_defaults(spec, None)
