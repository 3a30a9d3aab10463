"""Garbage collection by owner references: dependents of a deleted owner go (background),
an owner deleted in the foreground waits for its dependents, an orphaning delete lets
them go free."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from halab.twin.client import ClientError, path
from halab.twin.controllers.leader import parse_micro
from halab.twin.controllers.manager import WATCHED

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager


def _index(cm: Manager) -> dict[str, tuple[str, dict[str, Any]]]:
    return {o["metadata"]["uid"]: (name, o) for name in WATCHED for o in cm.cache(name)}


def _url(kind: str, obj: dict[str, Any]) -> str:
    api_version, plural = WATCHED[kind]
    meta = obj["metadata"]
    return path(api_version, plural, meta.get("namespace") or None, meta["name"])


async def reconcile(cm: Manager) -> None:
    objects = _index(cm)
    dependents: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for kind, obj in objects.values():
        for ref in obj["metadata"].get("ownerReferences") or []:
            dependents.setdefault(ref.get("uid", ""), []).append((kind, obj))
    # The kinds the twin watches can own each other; an owner of another kind (a Node
    # owning a Lease, say) is looked up by name through the API.
    for owner_uid, deps in dependents.items():
        if owner_uid in objects:
            continue
        for kind, obj in deps:
            if obj["metadata"].get("deletionTimestamp"):
                continue
            refs = [
                r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") == owner_uid
            ]
            if refs and not await _owner_exists(cm, refs[0], obj):
                try:
                    await cm.client.delete(_url(kind, obj), {"propagationPolicy": "Background"})
                except ClientError:
                    continue
    for uid, (kind, obj) in objects.items():
        finalizers = obj["metadata"].get("finalizers") or []
        if not obj["metadata"].get("deletionTimestamp"):
            continue
        deps = dependents.get(uid, [])
        if "foregroundDeletion" in finalizers:
            pending = [
                d
                for d in deps
                if any(
                    r.get("uid") == uid and r.get("blockOwnerDeletion")
                    for r in d[1]["metadata"].get("ownerReferences") or []
                )
            ]
            for dep_kind, dep in pending:
                if not dep["metadata"].get("deletionTimestamp"):
                    try:
                        await cm.client.delete(
                            _url(dep_kind, dep), {"propagationPolicy": "Foreground"}
                        )
                    except ClientError:
                        continue
            if not pending:
                await _drop_finalizer(cm, kind, obj, "foregroundDeletion")
        elif "orphan" in finalizers:
            for dep_kind, dep in deps:
                refs = [
                    r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                ]
                try:
                    await cm.client.patch(
                        _url(dep_kind, dep), {"metadata": {"ownerReferences": refs or None}}
                    )
                except ClientError:
                    continue
            await _drop_finalizer(cm, kind, obj, "orphan")


async def finish_namespaces(cm: Manager) -> None:
    """A namespace left Terminating (its API server died while emptying it) is deleted
    again, which empties and removes it: the namespace controller's retry."""
    for ns in cm.cache("namespaces"):
        stamp = ns["metadata"].get("deletionTimestamp")
        if stamp and time.time() - parse_micro(stamp) > 5:
            try:
                await cm.client.delete(path("v1", "namespaces", None, ns["metadata"]["name"]))
            except ClientError:
                continue


async def _owner_exists(cm: Manager, ref: dict[str, Any], obj: dict[str, Any]) -> bool:
    kind = ref.get("kind", "")
    for name, (api_version, plural) in WATCHED.items():
        if api_version == ref.get("apiVersion") and plural.lower().startswith(kind.lower()):
            namespace = (
                obj["metadata"].get("namespace")
                if name not in ("nodes", "pvs", "storageclasses")
                else None
            )
            try:
                found = await cm.client.get(path(api_version, plural, namespace, ref.get("name")))
            except ClientError as exc:
                return exc.status != 404
            return bool(found["metadata"].get("uid") == ref.get("uid"))
    return True  # an owner of a kind we cannot check: leave the dependent alone


async def _drop_finalizer(cm: Manager, kind: str, obj: dict[str, Any], finalizer: str) -> None:
    rest = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
    try:
        await cm.client.patch(
            _url(kind, obj),
            {
                "metadata": {
                    "finalizers": rest or None,
                    "resourceVersion": obj["metadata"]["resourceVersion"],
                }
            },
        )
    except ClientError:
        return
