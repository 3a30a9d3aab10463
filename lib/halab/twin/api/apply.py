"""Server-side apply (PATCH application/apply-patch+yaml).

Each field manager owns the set of fields it applied, recorded in managedFields as the
real server does (FieldsV1). Applying a field that another applier owns with a different
value is a 409 conflict naming the manager, unless force=true moves the ownership. Fields
a manager applied before and no longer applies are removed when nobody else owns them.

A simplification, said plainly: only appliers own fields here. Writes through update and
the other patch types do not take ownership, so they never cause apply conflicts.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from halab.twin.api.admission import now
from halab.twin.api.patch import MERGE_KEYS, strategic_merge
from halab.twin.api.resources import Resource
from halab.twin.api.status import ApiError, bad_request

if TYPE_CHECKING:
    from halab.twin.api.objects import Objects

Path = tuple[str, ...]
_IGNORED = {("f:apiVersion",), ("f:kind",)}
_IGNORED_META = {
    "name",
    "namespace",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
}


def _list_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports":
        return "containerPort" if "containerPort" in items[0] else "port"
    key = MERGE_KEYS.get(field)
    return key if key and all(key in i for i in items) else None


def fields_of(obj: Any, prefix: Path = (), field: str = "") -> set[Path]:
    out: set[Path] = set()
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            if not prefix and key == "status":
                continue
            if prefix == ("f:metadata",) and key in _IGNORED_META:
                continue
            out |= fields_of(value, (*prefix, f"f:{key}"), key)
        return out - _IGNORED
    if isinstance(obj, list) and obj:
        key = _list_key(field, obj)
        if key is not None:
            for item in obj:
                seg = f"k:{json.dumps({key: item[key]}, separators=(',', ':'))}"
                out.add((*prefix, seg))
                out |= fields_of({k: v for k, v in item.items() if k != key}, (*prefix, seg), "")
            return out
    out.add(prefix)
    return out


def _step(cur: Any, seg: str) -> Any:
    if cur is None:
        return None
    if seg.startswith("f:"):
        return cur.get(seg[2:]) if isinstance(cur, dict) else None
    if seg.startswith("k:") and isinstance(cur, list):
        ((key, val),) = json.loads(seg[2:]).items()
        return next((i for i in cur if isinstance(i, dict) and i.get(key) == val), None)
    return None


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for seg in path:
        cur = _step(cur, seg)
    return cur


def remove_at(obj: Any, path: Path) -> None:
    parent = value_at(obj, path[:-1])
    seg = path[-1]
    if seg.startswith("f:") and isinstance(parent, dict):
        parent.pop(seg[2:], None)
    elif seg.startswith("k:") and isinstance(parent, list):
        ((key, val),) = json.loads(seg[2:]).items()
        parent[:] = [i for i in parent if not (isinstance(i, dict) and i.get(key) == val)]


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for seg in path:
            node = node.setdefault(seg, {})
        if path and path[-1].startswith("k:"):
            node.setdefault(".", {})
    return root


def from_fields_v1(doc: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for seg, child in doc.items():
        if seg == ".":
            out.add(prefix)
            continue
        if child:
            out |= from_fields_v1(child, (*prefix, seg))
        else:
            out.add((*prefix, seg))
    return out


def _owners(obj: dict[str, Any]) -> dict[str, set[Path]]:
    return {
        e["manager"]: from_fields_v1(e.get("fieldsV1") or {})
        for e in obj.get("metadata", {}).get("managedFields") or []
        if e.get("operation") == "Apply"
    }


def _record(obj: dict[str, Any], owners: dict[str, set[Path]], api_version: str) -> None:
    obj["metadata"]["managedFields"] = [
        {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(paths),
        }
        for manager, paths in sorted(owners.items())
        if paths
    ]


def merge_applied(
    live: dict[str, Any], applied: dict[str, Any], manager: str, force: bool
) -> dict[str, Any]:
    owners = _owners(live)
    mine = fields_of(applied)
    conflicts = []
    for other, paths in owners.items():
        if other == manager:
            continue
        for path in sorted(mine & paths):
            if value_at(live, path) != value_at(applied, path):
                if force:
                    paths.discard(path)
                else:
                    conflicts.append((other, path))
    if conflicts:
        causes = [
            {
                "reason": "FieldManagerConflict",
                "message": f'conflict with "{other}"',
                "field": "."
                + ".".join(s[2:] if s.startswith("f:") else f"[{s[2:]}]" for s in path),
            }
            for other, path in conflicts
        ]
        raise ApiError(
            409,
            f"Apply failed with {len(conflicts)} conflict(s): "
            + "; ".join(f"{c['message']}: {c['field']}" for c in causes),
            reason="Conflict",
            details={"causes": causes},
        )
    result = copy.deepcopy(live)
    others = set().union(*(p for m, p in owners.items() if m != manager)) if owners else set()
    for path in sorted(owners.get(manager, set()) - mine, key=len, reverse=True):
        if path not in others and not any(o[: len(path)] == path for o in others):
            remove_at(result, path)
    merged: dict[str, Any] = strategic_merge(
        result, {k: v for k, v in applied.items() if k != "status"}
    )
    result = merged
    owners[manager] = mine
    _record(result, owners, applied.get("apiVersion", ""))
    return result


async def server_side_apply(
    objects: Objects,
    res: Resource,
    ns: str | None,
    name: str,
    body: Any,
    manager: str,
    force: bool,
    sub: str | None,
    dry_run: bool,
) -> tuple[dict[str, Any], bool]:
    if not isinstance(body, dict):
        raise bad_request("an apply patch is a whole object in YAML or JSON")
    if body.get("kind") != res.kind or body.get("apiVersion") != res.api_version:
        raise bad_request(
            f"the applied object is {body.get('apiVersion')}/{body.get('kind')}, "
            f"the URL is for {res.api_version}/{res.kind}"
        )
    if (body.get("metadata") or {}).get("name") != name:
        raise bad_request("the name of the applied object does not match the URL")
    try:
        await objects.get(res, ns, name)
    except ApiError as exc:
        if exc.code != 404:
            raise
        fresh: dict[str, Any] = copy.deepcopy(body)
        _record(fresh, {manager: fields_of(body)}, res.api_version)
        return await objects.create(res, ns, fresh, dry_run), True
    return (
        await objects.mutate(
            res, ns, name, lambda live: merge_applied(live, body, manager, force), sub, dry_run
        ),
        False,
    )
