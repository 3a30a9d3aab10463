"""apps/<namespace>/: each Kubernetes app of the inventory as a workload, Service and claims.

Placement, resources, environment and volumes come from the inventory as they are; the
planner, not the renderer, says where they are wrong. Health probes follow what each
image serves: ClusterPlex's /health on the orchestrator (3500) and the workers (3501),
a TCP check on the first port elsewhere.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from halab.inventory import App, Inventory
from halab.inventory.addresses import parse_range
from halab.render.objects import kustomization, labels, meta, selector
from halab.render.yamltext import Obj, dump, dump_all

HTTP_HEALTH = {"orchestrator": "/health", "worker": "/health"}


def _affinity(app: App) -> Obj | None:
    node: Obj = {}
    if app.placement.required:
        node["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": k, "operator": "In", "values": list(v)}
                        for k, v in app.placement.required.items()
                    ]
                }
            ]
        }
    if app.placement.preferred:
        node["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {
                "weight": p.weight,
                "preference": {
                    "matchExpressions": [
                        {"key": k, "operator": "In", "values": [v]} for k, v in p.match.items()
                    ]
                },
            }
            for p in app.placement.preferred
        ]
    return {"nodeAffinity": node} if node else None


def _tolerations(app: App) -> list[Obj]:
    out = []
    for t in app.placement.tolerations:
        tol: Obj = {"operator": t.operator}
        if t.key:
            tol["key"] = t.key
        if t.operator == "Equal":
            tol["value"] = t.value
        if t.effect:
            tol["effect"] = t.effect
        if t.toleration_seconds is not None:
            tol["tolerationSeconds"] = t.toleration_seconds
        out.append(tol)
    return out


def _quantity(value: str | int | float) -> str | int:
    return value if isinstance(value, str | int) else str(value)


def _probe(app: App) -> Obj | None:
    if not app.ports:
        return None
    path = HTTP_HEALTH.get(app.role)
    if path:
        return {"httpGet": {"path": path, "port": app.ports[0]}}
    return {"tcpSocket": {"port": app.ports[0]}}


def app_volumes(app: App) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """(pod volumes, container mounts, claims to create) of an app, as rendered."""
    volumes, mounts, claims = [], [], []
    for vol in app.volumes:
        mount: Obj = {"name": vol.name, "mountPath": vol.mount_path}
        if vol.read_only:
            mount["readOnly"] = True
        mounts.append(mount)
        if vol.kind == "nfs":
            volumes.append(
                {
                    "name": vol.name,
                    "persistentVolumeClaim": {"claimName": vol.export, "readOnly": vol.read_only},
                }
            )
        elif vol.kind == "seaweedfs":
            claim_name = f"{app.name}-{vol.name}"
            mode = {"RWO": "ReadWriteOnce", "RWX": "ReadWriteMany", "ROX": "ReadOnlyMany"}
            claims.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta(claim_name, app.namespace, labels=labels(app.name, vol.name)),
                    "spec": {
                        "accessModes": [mode[vol.access]],
                        "storageClassName": vol.storage_class,
                        "resources": {"requests": {"storage": vol.size or "1Gi"}},
                    },
                }
            )
            volumes.append({"name": vol.name, "persistentVolumeClaim": {"claimName": claim_name}})
        elif vol.kind == "empty-dir":
            volumes.append({"name": vol.name, "emptyDir": {}})
        else:
            volumes.append({"name": vol.name, "hostPath": {"path": vol.host_path}})
    return volumes, mounts, claims


TRANSCODE_DIR = "/transcode"
PREFERENCES = "/config/Library/Application Support/Plex Media Server/Preferences.xml"


def _transcode_dir_init() -> Obj:
    """Point Plex's transcoder temp dir at the shared volume (ClusterPlex needs it there).

    Plex writes Preferences.xml on its first start, so this takes effect from the second
    start on; phase 8's checks read the setting back from Plex (/:/prefs).
    """
    script = (
        f'f="{PREFERENCES}"; [ -f "$f" ] || exit 0; '
        f'if grep -q TranscoderTempDirectory= "$f"; then '
        f'sed -i \'s|TranscoderTempDirectory="[^"]*"|TranscoderTempDirectory="{TRANSCODE_DIR}"|\' '
        f'"$f"; else sed -i \'s|<Preferences |<Preferences TranscoderTempDirectory='
        f'"{TRANSCODE_DIR}" |\' "$f"; fi'
    )
    return {
        "name": "transcoder-temp-dir",
        "image": "busybox:1.36.1",
        "command": ["sh", "-c", script],
        "volumeMounts": [{"name": "config", "mountPath": "/config"}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def orchestrator_ip(inv: Inventory) -> str:
    """The orchestrator's LoadBalancer address: the pool's first, pinned so that workers
    outside Kubernetes (the Unraid container) can be configured with it."""
    return str(parse_range(inv.network.metallb.pool[0]).first)


def pinned_addresses(inv: Inventory) -> dict[str, str]:
    """Every app's LoadBalancer address, pinned: the orchestrator the pool's first, the
    others the next ones in inventory order. Pinning the orchestrator alone is not enough:
    MetalLB hands the first free address to whichever unpinned Service it sees first, and
    PMS created beside the orchestrator took the orchestrator's address (seen on the
    twin), leaving it Pending and the Unraid worker with nothing to reach. Pinned, each
    address also stays the same across re-creations (Plex clients, bookmarks)."""
    addresses = []
    for entry in inv.network.metallb.pool:
        span = parse_range(entry)
        addresses += [str(IPv4Address(n)) for n in range(int(span.first), int(span.last) + 1)]
    wanted = sorted(
        (a for a in inv.apps if a.service == "LoadBalancer" and a.ports and a.kind != "docker"),
        key=lambda a: a.role != "orchestrator",  # stable: the rest keep inventory order
    )
    return {a.name: ip for a, ip in zip(wanted, addresses, strict=False)}


def workload(app: App, inv: Inventory) -> list[Obj]:
    lab = labels(app.name, app.role)
    volumes, mounts, claims = app_volumes(app)
    env = dict(app.env)
    if app.docker_mods:
        env["DOCKER_MODS"] = "|".join(app.docker_mods)  # linuxserver.io's separator
    container: dict[str, Any] = {
        "name": app.name,
        "image": app.image,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "ports": [{"containerPort": p} for p in app.ports],
        "resources": {
            "requests": {k: _quantity(v) for k, v in app.resources.requests.items()}
            or {"cpu": "100m", "memory": "256Mi"},
            "limits": {k: _quantity(v) for k, v in app.resources.limits.items()},
        },
        "volumeMounts": mounts,
        # linuxserver.io images start as root (s6) and drop to PUID; only this holds for all.
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    if not container["resources"]["limits"]:
        del container["resources"]["limits"]
    probe = _probe(app)
    if probe:
        container["readinessProbe"] = {**probe, "periodSeconds": 10}
        container["livenessProbe"] = {**probe, "periodSeconds": 30, "failureThreshold": 5}
        # Up to 10 minutes to start (Plex's first scan), asked every 2 s so a pod that
        # moved after a failure is Ready within 2 s of answering, not 10.
        container["startupProbe"] = {**probe, "periodSeconds": 2, "failureThreshold": 300}
    pod: Obj = {"containers": [container], "volumes": volumes}
    if app.role == "plex" and any(v.mount_path == TRANSCODE_DIR for v in app.volumes):
        pod["initContainers"] = [_transcode_dir_init()]
    if app.placement.node_selector:
        pod["nodeSelector"] = dict(app.placement.node_selector)
    affinity = _affinity(app)
    if affinity:
        pod["affinity"] = affinity
    tolerations = _tolerations(app)
    if tolerations:
        pod["tolerations"] = tolerations
    template = {"metadata": {"labels": lab}, "spec": pod}
    spec: Obj = {
        "replicas": app.replicas,
        "selector": {"matchLabels": selector(app.name)},
        "template": template,
    }
    if app.kind == "deployment":
        spec["strategy"] = {"type": app.strategy}
        kind = "Deployment"
    elif app.kind == "statefulset":
        spec["serviceName"] = app.name
        kind = "StatefulSet"
    else:
        del spec["replicas"]
        kind = "DaemonSet"
    objs: list[Obj] = [
        *claims,
        {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": meta(app.name, app.namespace, labels=lab),
            "spec": spec,
        },
    ]
    if app.ports and app.service != "none":
        svc: Obj = {
            "type": app.service,
            "selector": selector(app.name),
            "ports": [{"name": f"p{p}", "port": p, "targetPort": p} for p in app.ports],
        }
        svc_meta = meta(app.name, app.namespace, labels=lab)
        pinned = pinned_addresses(inv).get(app.name) if app.service == "LoadBalancer" else None
        if pinned:
            svc_meta["annotations"] = {"metallb.io/loadBalancerIPs": pinned}
        objs.append({"apiVersion": "v1", "kind": "Service", "metadata": svc_meta, "spec": svc})
    return objs


def render_apps(inv: Inventory) -> dict[str, str]:
    by_ns: dict[str, dict[str, str]] = {}
    for app in inv.apps:
        if app.kind == "docker":
            continue
        by_ns.setdefault(app.namespace, {})[f"{app.name}.yaml"] = dump_all(workload(app, inv))
    files: dict[str, str] = {}
    for ns, group in sorted(by_ns.items()):
        for name, text in group.items():
            files[f"apps/{ns}/{name}"] = text
        files[f"apps/{ns}/kustomization.yaml"] = dump(kustomization(list(group)))
    files["apps/kustomization.yaml"] = dump(kustomization(sorted(by_ns)))
    return files
