"""Just enough OpenAPI v3 for kubectl: for every served kind, a PATCH operation that
declares the fieldValidation query parameter, so kubectl leaves validation to the server
(as it does with k3s) instead of downloading schemas the twin does not have.

The request bodies name JSON and merge patches only; kubectl then builds strategic merge
patches from its own compiled-in types, as it does whenever a schema lacks them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from halab.twin.api.resources import Registry, Resource


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def root(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.groups().items():
        for version in versions:
            path = _gv_path(group, version)
            digest = hashlib.sha256(str(gv_doc(registry, group, version)).encode()).hexdigest()
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest[:32].upper()}"}
    return {"paths": paths}


def _operation(res: Resource) -> dict[str, Any]:
    return {
        "operationId": f"patch{res.kind}",
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {
            "group": res.group,
            "version": res.version,
            "kind": res.kind,
        },
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in ("dryRun", "fieldManager", "fieldValidation", "force")
        ],
        "requestBody": {
            "content": {
                ctype: {"schema": {"type": "object"}}
                for ctype in (
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                )
            },
            "required": True,
        },
        "responses": {"200": {"description": "OK"}},
    }


def gv_doc(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    found = registry.in_group_version(group, version)
    if not found:
        return None
    paths: dict[str, Any] = {}
    for res in found:
        base = f"/{_gv_path(group, version)}"
        where = f"{base}/namespaces/{{namespace}}" if res.namespaced else base
        paths[f"{where}/{res.plural}/{{name}}"] = {"patch": _operation(res)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "halab-twin"},
        "paths": paths,
        "components": {"schemas": {}},
    }
