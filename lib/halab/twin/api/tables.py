"""The Table format (meta.k8s.io/v1) that kubectl asks for, with the columns of the real
API server's printers, so `kubectl get` shows what it shows against k3s."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Cells = list[Any]
Column = tuple[str, str, int]  # name, type, priority (1 = shown with -o wide)


def age(stamp: str | None, now: datetime | None = None) -> str:
    if not stamp:
        return "<unknown>"
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    secs = int(((now or datetime.now(UTC)) - then).total_seconds())
    secs = max(secs, 0)
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 8:
        return f"{hours}h{mins % 60}m" if mins % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _meta(o: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = o.get("metadata") or {}
    return m


def _spec(o: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = o.get("spec") or {}
    return s


def _status(o: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = o.get("status") or {}
    return s


def _containers(o: dict[str, Any]) -> tuple[str, str]:
    cs = _spec(o).get("template", {}).get("spec", {}).get("containers", [])
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _selector(o: dict[str, Any]) -> str:
    from halab.twin.api.selectors import selector_to_text

    return selector_to_text(_spec(o).get("selector")) or "<none>"


def pod_status_text(o: dict[str, Any]) -> str:
    st = _status(o)
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if _meta(o).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod(o: dict[str, Any]) -> Cells:
    st = _status(o)
    statuses = st.get("containerStatuses") or []
    total = len(_spec(o).get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    gates = _spec(o).get("readinessGates")
    return [
        _meta(o).get("name"),
        f"{ready}/{total}",
        pod_status_text(o),
        restarts,
        age(_meta(o).get("creationTimestamp")),
        st.get("podIP") or "<none>",
        _spec(o).get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        f"{len(gates)}" if gates else "<none>",
    ]


def node_ready(o: dict[str, Any]) -> str:
    for cond in _status(o).get("conditions") or []:
        if cond.get("type") == "Ready":
            return "Ready" if cond.get("status") == "True" else "NotReady"
    return "Unknown"


def _node(o: dict[str, Any]) -> Cells:
    labels = _meta(o).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    status = node_ready(o)
    if _spec(o).get("unschedulable"):
        status += ",SchedulingDisabled"
    info = _status(o).get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in _status(o).get("addresses") or []}
    return [
        _meta(o).get("name"),
        status,
        ",".join(roles) or "<none>",
        age(_meta(o).get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        addrs.get("InternalIP", "<none>"),
        addrs.get("ExternalIP", "<none>"),
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _deployment(o: dict[str, Any]) -> Cells:
    st = _status(o)
    names, images = _containers(o)
    return [
        _meta(o).get("name"),
        f"{st.get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(_meta(o).get("creationTimestamp")),
        names,
        images,
        _selector(o),
    ]


def _replicaset(o: dict[str, Any]) -> Cells:
    st = _status(o)
    names, images = _containers(o)
    return [
        _meta(o).get("name"),
        _spec(o).get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        age(_meta(o).get("creationTimestamp")),
        names,
        images,
        _selector(o),
    ]


def _statefulset(o: dict[str, Any]) -> Cells:
    names, images = _containers(o)
    return [
        _meta(o).get("name"),
        f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}",
        age(_meta(o).get("creationTimestamp")),
        names,
        images,
    ]


def _daemonset(o: dict[str, Any]) -> Cells:
    st = _status(o)
    names, images = _containers(o)
    sel = _spec(o).get("template", {}).get("spec", {}).get("nodeSelector") or {}
    return [
        _meta(o).get("name"),
        st.get("desiredNumberScheduled", 0),
        st.get("currentNumberScheduled", 0),
        st.get("numberReady", 0),
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>",
        age(_meta(o).get("creationTimestamp")),
        names,
        images,
        _selector(o),
    ]


def _job(o: dict[str, Any]) -> Cells:
    st = _status(o)
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = (
        "Complete"
        if conds.get("Complete") == "True"
        else "Failed"
        if conds.get("Failed") == "True"
        else "Running"
    )
    names, images = _containers(o)
    return [
        _meta(o).get("name"),
        status,
        f"{st.get('succeeded', 0)}/{_spec(o).get('completions', 1)}",
        age(st.get("startTime")) if st.get("startTime") else "",
        age(_meta(o).get("creationTimestamp")),
        names,
        images,
        _selector(o),
    ]


def _service(o: dict[str, Any]) -> Cells:
    spec = _spec(o)
    ingress = _status(o).get("loadBalancer", {}).get("ingress") or []
    external = ",".join(i.get("ip", "") for i in ingress) or (
        "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
    )
    ports = ",".join(
        f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/"
        f"{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    sel = spec.get("selector") or {}
    return [
        _meta(o).get("name"),
        spec.get("type"),
        spec.get("clusterIP") or "<none>",
        external,
        ports or "<none>",
        age(_meta(o).get("creationTimestamp")),
        ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>",
    ]


def _namespace(o: dict[str, Any]) -> Cells:
    return [_meta(o).get("name"), _status(o).get("phase"), age(_meta(o).get("creationTimestamp"))]


def _lease(o: dict[str, Any]) -> Cells:
    holder = _spec(o).get("holderIdentity") or ""
    return [_meta(o).get("name"), holder, age(_meta(o).get("creationTimestamp"))]


def _pv(o: dict[str, Any]) -> Cells:
    spec = _spec(o)
    ref = spec.get("claimRef") or {}
    return [
        _meta(o).get("name"),
        spec.get("capacity", {}).get("storage", ""),
        ",".join(_modes(spec.get("accessModes"))),
        spec.get("persistentVolumeReclaimPolicy", ""),
        _status(o).get("phase", ""),
        f"{ref.get('namespace')}/{ref.get('name')}" if ref else "",
        spec.get("storageClassName", ""),
        "<unset>",
        _status(o).get("reason", ""),
        age(_meta(o).get("creationTimestamp")),
        spec.get("volumeMode", ""),
    ]


def _modes(modes: list[str] | None) -> list[str]:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX"}
    return [short.get(m, m) for m in modes or []]


def _pvc(o: dict[str, Any]) -> Cells:
    spec, st = _spec(o), _status(o)
    return [
        _meta(o).get("name"),
        st.get("phase", ""),
        spec.get("volumeName", ""),
        st.get("capacity", {}).get("storage", ""),
        ",".join(_modes(st.get("accessModes"))),
        spec.get("storageClassName", ""),
        "<unset>",
        age(_meta(o).get("creationTimestamp")),
        spec.get("volumeMode", ""),
    ]


def _endpoints(o: dict[str, Any]) -> Cells:
    addrs = [
        f"{a.get('ip')}:{p.get('port')}"
        for s in o.get("subsets") or []
        for a in s.get("addresses") or []
        for p in s.get("ports") or [{}]
    ]
    shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    return [_meta(o).get("name"), shown or "<none>", age(_meta(o).get("creationTimestamp"))]


def _event(o: dict[str, Any]) -> Cells:
    inv = o.get("involvedObject") or {}
    return [
        age(o.get("lastTimestamp") or _meta(o).get("creationTimestamp")),
        o.get("type", ""),
        o.get("reason", ""),
        f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
        o.get("message", ""),
        (o.get("source") or {}).get("component", ""),
        o.get("count", 1),
        _meta(o).get("name"),
    ]


def _default(o: dict[str, Any]) -> Cells:
    return [_meta(o).get("name"), _meta(o).get("creationTimestamp")]


N = ("Name", "string", 0)
AGE = ("Age", "string", 0)
CONTAINERS = [("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
PRINTERS: dict[str, tuple[list[Column], Callable[[dict[str, Any]], Cells]]] = {
    "Pod": (
        [
            N,
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod,
    ),
    "Node": (
        [
            N,
            ("Status", "string", 0),
            ("Roles", "string", 0),
            AGE,
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        _node,
    ),
    "Deployment": (
        [
            N,
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            AGE,
            *CONTAINERS,
        ],
        _deployment,
    ),
    "ReplicaSet": (
        [
            N,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            AGE,
            *CONTAINERS,
        ],
        _replicaset,
    ),
    "StatefulSet": ([N, ("Ready", "string", 0), AGE, *CONTAINERS[:2]], _statefulset),
    "DaemonSet": (
        [
            N,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            AGE,
            *CONTAINERS,
        ],
        _daemonset,
    ),
    "Job": (
        [
            N,
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            AGE,
            *CONTAINERS,
        ],
        _job,
    ),
    "Service": (
        [
            N,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            AGE,
            ("Selector", "string", 1),
        ],
        _service,
    ),
    "Namespace": ([N, ("Status", "string", 0), AGE], _namespace),
    "Lease": ([N, ("Holder", "string", 0), AGE], _lease),
    "PersistentVolume": (
        [
            N,
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            AGE,
            ("VolumeMode", "string", 1),
        ],
        _pv,
    ),
    "PersistentVolumeClaim": (
        [
            N,
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            AGE,
            ("VolumeMode", "string", 1),
        ],
        _pvc,
    ),
    "Endpoints": ([N, ("Endpoints", "string", 0), AGE], _endpoints),
    "Event": (
        [
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            ("Source", "string", 1),
            ("Count", "integer", 1),
            ("Name", "string", 1),
        ],
        _event,
    ),
}
DEFAULT: tuple[list[Column], Callable[[dict[str, Any]], Cells]] = (
    [N, ("Created At", "date", 0)],
    _default,
)


def table(
    kind: str, objects: list[dict[str, Any]], list_meta: dict[str, Any], include: str = "Metadata"
) -> dict[str, Any]:
    columns, cells = PRINTERS.get(kind, DEFAULT)
    rows = []
    for obj in objects:
        if include == "Object":
            embedded: dict[str, Any] | None = obj
        elif include == "None":
            embedded = None
        else:
            embedded = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": _meta(obj),
            }
        rows.append({"cells": cells(obj), "object": embedded})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {
                "name": name,
                "type": kind_,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": prio,
            }
            for name, kind_, prio in columns
        ],
        "rows": rows,
    }
