"""clusters/<name>/: Flux's source and the Kustomizations, ordered by dependsOn.

infrastructure-controllers -> infrastructure-configs -> storage -> apps. The MetalLB
custom resources live in a layer of their own, after the HelmRelease that installs their
CRDs, or Flux's dry run would refuse them.
"""

from __future__ import annotations

from halab.inventory import Inventory
from halab.render.objects import meta
from halab.render.yamltext import Obj, dump_all

LAYERS = [
    # (name, path, depends on); every layer waits for all its objects to be ready
    ("infrastructure-controllers", "infrastructure/controllers", None),
    ("infrastructure-configs", "infrastructure/configs", "infrastructure-controllers"),
    ("storage", "storage", "infrastructure-configs"),
    ("apps", "apps", "storage"),
]


def git_repository(inv: Inventory) -> Obj:
    assert inv.gitops is not None
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": meta("flux-system", "flux-system"),
        "spec": {
            "interval": "1m0s",
            "url": inv.gitops.repo,
            "ref": {"branch": inv.gitops.branch},
            "secretRef": {"name": "flux-system"},
        },
    }


def layer(name: str, path: str, depends: str | None) -> Obj:
    spec: Obj = {
        "interval": "10m0s",
        "retryInterval": "1m0s",
        "timeout": "5m0s",
        "path": f"./{path}",
        "prune": True,
        "wait": True,
        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
    }
    if depends:
        spec["dependsOn"] = [{"name": depends}]
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": meta(name, "flux-system"),
        "spec": spec,
    }


def render_flux(inv: Inventory) -> dict[str, str]:
    if inv.gitops is None:
        return {}
    base = inv.gitops.path.strip("/")
    files = {
        f"{base}/flux-system/gotk-sync.yaml": dump_all(
            [
                git_repository(inv),
                {
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                    "kind": "Kustomization",
                    "metadata": meta("flux-system", "flux-system"),
                    "spec": {
                        "interval": "10m0s",
                        "path": f"./{base}",
                        "prune": True,
                        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                    },
                },
            ]
        )
    }
    for name, path, depends in LAYERS:
        files[f"{base}/{name}.yaml"] = dump_all([layer(name, path, depends)])
    return files
