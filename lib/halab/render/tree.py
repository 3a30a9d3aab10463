"""render(): Inventory -> {path: text}, the whole GitOps tree and every external file."""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from halab.errors import Problem
from halab.inventory import Inventory
from halab.plan.placement import evaluate
from halab.render.apps import render_apps
from halab.render.external import render_external
from halab.render.flux import render_flux
from halab.render.infrastructure import render_infrastructure
from halab.render.storage import render_storage
from halab.render.validate import RenderError
from halab.render.yamltext import load_all


def render(inv: Inventory) -> dict[str, str]:
    """Every file of the tree; RenderError if SeaweedFS could not place its volumes."""
    sw = inv.storage.seaweedfs
    outcome = evaluate(inv, sw.replication, sw.racks)
    if not outcome.feasible:
        # Rendering it anyway would give a storage layer that accepts no writes.
        raise RenderError(
            "render",
            [
                Problem(
                    "storage.seaweedfs.replication",
                    f"{sw.replication} with racks: {sw.racks} cannot be placed: {outcome.reason}",
                    "see `halab plan` for the codes this topology can place",
                )
            ],
        )
    files: dict[str, str] = {}
    for part in (render_flux, render_infrastructure, render_storage, render_apps, render_external):
        files.update(part(inv))
    return dict(sorted(files.items()))


def objects_table(files: dict[str, str]) -> pd.DataFrame:
    """One row per object: the directory Flux applies it from, its kind, name, namespace."""
    rows = []
    for path, text in files.items():
        if not path.endswith((".yaml", ".yml")) or path.startswith("external/"):
            continue
        if path.endswith("kustomization.yaml"):
            continue
        for doc in load_all(text):
            meta = doc.get("metadata", {})
            rows.append(
                {
                    "directory": str(PurePosixPath(path).parent),
                    "file": PurePosixPath(path).name,
                    "kind": doc.get("kind", ""),
                    "name": meta.get("name", ""),
                    "namespace": meta.get("namespace", ""),
                }
            )
    return pd.DataFrame(rows, columns=["directory", "file", "kind", "name", "namespace"])
