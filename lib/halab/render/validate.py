"""Validation of a rendered tree: every object against a schema, and nothing unchecked.

- Built-in Kubernetes objects: kubernetes-validate in strict mode (unknown fields are
  errors) for the inventory's Kubernetes version.
- Flux and MetalLB custom resources: the JSON schemas in render/schemas/, written from
  the CRD facts in reference/k3s-ha.md §4 and §6.
- kustomization.yaml: every listed resource exists beside it.
- docker-compose.yml: the subset of the Compose file format the kit writes.
An object that matches no schema is itself an error: nothing passes unchecked.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

from halab.errors import InputError, Problem
from halab.render.yamltext import Obj, load_all

BUILTIN_GROUPS = {
    "v1",
    "apps/v1",
    "batch/v1",
    "rbac.authorization.k8s.io/v1",
    "storage.k8s.io/v1",
    "networking.k8s.io/v1",
    "policy/v1",
}


class RenderError(InputError):
    what = "rendered tree"


@cache
def _crd_schemas() -> dict[tuple[str, str], Any]:
    out = {}
    for entry in resources.files("halab.render.schemas").iterdir():
        if entry.name.endswith(".json"):
            schema = json.loads(entry.read_text(encoding="utf-8"))
            props = schema["properties"]
            out[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return out


_COMPOSE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["services"],
    "properties": {
        "services": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "minLength": 1},
                    "container_name": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"},
                    "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
                    "environment": {"type": "object", "additionalProperties": {"type": "string"}},
                    "volumes": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^/[^:]*:/[^:]*(:(ro|rw))?$"},
                    },
                    "devices": {"type": "array", "items": {"type": "string", "pattern": "^/dev/"}},
                    "ports": {
                        "type": "array",
                        "items": {"type": "string", "pattern": r"^\d+:\d+(/(tcp|udp))?$"},
                    },
                },
            },
        }
    },
}


def _where(doc: Obj, index: int) -> str:
    meta = doc.get("metadata", {}) if isinstance(doc, dict) else {}
    return f"document {index + 1} ({doc.get('kind', '?')} {meta.get('name', '?')})"


def validate_object(doc: Obj, kube_version: str) -> list[str]:
    """Messages for one object; empty when it is valid."""
    import jsonschema
    import kubernetes_validate

    api, kind = str(doc.get("apiVersion")), str(doc.get("kind"))
    if (api, kind) in _crd_schemas():
        validator = jsonschema.Draft202012Validator(_crd_schemas()[(api, kind)])
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        ]
    if api in BUILTIN_GROUPS:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top)"
            return [f"{path}: {exc.message}"]
        except kubernetes_validate.SchemaNotFoundError:
            return [f"no Kubernetes {kube_version} schema for {kind} {api}"]
        return []
    return [f"no schema for {kind} {api}: the kit cannot check it"]


def validate_tree(files: dict[str, str], kube_version: str) -> None:
    """Raise RenderError listing every invalid object of every file."""
    # Imported here, not with the module: jsonschema's format checkers build a grammar at
    # import (1.3 s here), and every notebook kernel that imports a phase would pay it.
    import jsonschema

    problems: list[Problem] = []
    version = f"{kube_version}.0" if kube_version.count(".") == 1 else kube_version
    for path, text in files.items():
        name = PurePosixPath(path).name
        if not name.endswith((".yaml", ".yml")):
            continue
        docs = load_all(text)
        if name == "kustomization.yaml":
            folder = PurePosixPath(path).parent
            for res in docs[0].get("resources", []):
                if f"{folder}/{res}" not in files and not any(
                    p.startswith(f"{folder}/{res}/") for p in files
                ):
                    problems.append(
                        Problem(
                            path,
                            f"resource {res} is not in the tree",
                            "render the whole tree together",
                        )
                    )
            continue
        if name == "docker-compose.yml":
            validator = jsonschema.Draft202012Validator(_COMPOSE)
            for err in validator.iter_errors(docs[0]):
                where = ".".join(str(p) for p in err.absolute_path) or "(top)"
                problems.append(Problem(path, f"{where}: {err.message}"))
            continue
        for i, doc in enumerate(docs):
            for message in validate_object(doc, version):
                problems.append(Problem(f"{path}: {_where(doc, i)}", message))
    if problems:
        raise RenderError("render", problems)
