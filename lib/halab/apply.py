"""Deliver rendered objects by server-side apply (field manager `halab`), as DESIGN.md's
"delivery: apply" says: idempotent, each object reported as changed or already so."""

from __future__ import annotations

from typing import Any

from halab.changes import Change
from halab.explain import explain

FIELD_MANAGER = "halab"


def _label(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


def apply_objects(api: Any, objects: list[dict[str, Any]], dry_run: bool = False) -> list[Change]:
    """Server-side apply every object; a kind the cluster does not serve (Flux's CRDs on a
    cluster without Flux) is reported, not applied, and the rest go on."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    dynamic = DynamicClient(api)
    changes = []
    for obj in objects:
        label = _label(obj)
        try:
            resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            changes.append(
                Change(
                    f"apply {label}",
                    False,
                    f"not applied: the cluster serves no {obj['apiVersion']} {obj['kind']} "
                    "(its controller, e.g. Flux, is not installed)",
                )
            )
            continue
        meta = obj["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        before = _version(resource, meta["name"], namespace)
        if dry_run:
            what = "create" if before is None else "apply over the live object"
            changes.append(Change(f"apply {label}", True, f"would {what}", dry_run=True))
            continue
        try:
            after = resource.server_side_apply(
                body=obj,
                name=meta["name"],
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except Exception as exc:  # one refused object: say why, apply the others
            changes.append(Change(f"apply {label}", False, f"refused: {explain(exc)}"))
            continue
        version = after.metadata.resourceVersion
        if before is None:
            changes.append(Change(f"apply {label}", True, "created"))
        elif version != before:
            changes.append(Change(f"apply {label}", True, "updated"))
        else:
            changes.append(Change(f"apply {label}", False, "already so"))
    return changes


def _version(resource: Any, name: str, namespace: str | None) -> str | None:
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        live = resource.get(name=name, namespace=namespace)
    except NotFoundError:
        return None
    return str(live.metadata.resourceVersion)
