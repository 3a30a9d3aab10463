"""Flux's stand-in in the twin: its HelmRepository and HelmRelease CRDs, and a
helm-controller that installs the charts the twin has a copy of.

The twin fetches nothing (tests and the twin reach only loopback), so a HelmRepository is
never downloaded: it is marked Ready with a message saying so, and a HelmRelease of a
chart in the twin's chart catalogue (the SeaweedFS CSI driver, images/seaweed_csi.py, and
MetalLB, images/metallb.py)
gets that chart's objects. Any other chart is not installed, and its HelmRelease says so in
its Ready condition rather than pretending.

Facts, from Flux's helm-controller: a release is `<targetNamespace or namespace>/<releaseName
or name>`; a successful install reads "Helm install succeeded for release NS/NAME.v1 with chart
CHART@VERSION" (reason InstallSucceeded); objects carry the labels
`helm.toolkit.fluxcd.io/name` and `helm.toolkit.fluxcd.io/namespace`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from halab.twin.api.admission import now
from halab.twin.client import ClientError, path
from halab.twin.images import metallb, seaweed_csi
from halab.twin.images.crds import crd

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager

HELM_GROUP, SOURCE_GROUP = "helm.toolkit.fluxcd.io", "source.toolkit.fluxcd.io"
HASH = "halab.twin/chart-values-hash"
# Charts the twin can install: name -> (version, objects for release, namespace, values).
CHARTS: dict[str, tuple[str, Callable[[str, str, dict[str, Any]], list[dict[str, Any]]]]] = {
    seaweed_csi.CHART: (seaweed_csi.CHART_VERSION, seaweed_csi.chart_objects),
    metallb.CHART: (metallb.CHART_VERSION, metallb.chart_objects),
}
PLURALS = {
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "CSIDriver": ("storage.k8s.io/v1", "csidrivers", False),
    "StorageClass": ("storage.k8s.io/v1", "storageclasses", False),
    "Deployment": ("apps/v1", "deployments", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
    "CustomResourceDefinition": (
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
}


def _installed(cm: Manager) -> dict[str, str]:
    """HelmRelease uid -> the generation and values last installed: as helm-controller,
    install or upgrade when the release changes, not on every pass."""
    found: dict[str, str] = cm.memory("helm-controller", dict)
    return found


def crds() -> list[dict[str, Any]]:
    return [
        crd(SOURCE_GROUP, "v1", "HelmRepository", "helmrepositories", ["helmrepo"]),
        crd(HELM_GROUP, "v2", "HelmRelease", "helmreleases", ["hr"]),
    ]


def _ready(status: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now(),
    }


async def _set_ready(
    cm: Manager, obj: dict[str, Any], plural: str, version: str, ok: bool, reason: str, text: str
) -> None:
    meta = obj["metadata"]
    generation = int(meta.get("generation", 1))
    old: dict[str, Any] = next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        {},
    )
    if (old.get("status"), old.get("message"), old.get("observedGeneration")) == (
        "True" if ok else "False",
        text,
        generation,
    ):
        return
    body = {
        **obj,
        "status": {
            **(obj.get("status") or {}),
            "observedGeneration": generation,
            "conditions": [_ready(ok, reason, text, generation)],
        },
    }
    group = HELM_GROUP if plural == "helmreleases" else SOURCE_GROUP
    url = path(f"{group}/{version}", plural, meta["namespace"], meta["name"], "status")
    try:
        await cm.client.update(url, body)
    except ClientError:
        return


async def reconcile(cm: Manager) -> None:
    for repo in cm.cache("helmrepositories"):
        url = (repo.get("spec") or {}).get("url", "")
        await _set_ready(
            cm,
            repo,
            "helmrepositories",
            "v1",
            True,
            "Succeeded",
            f"halab twin: {url} is never fetched; charts come from the twin's chart catalogue",
        )
    await cm.each("helm-controller", cm.cache("helmreleases"), lambda r: _release(cm, r))


async def _release(cm: Manager, release: dict[str, Any]) -> None:
    spec = release.get("spec") or {}
    meta = release["metadata"]
    chart = ((spec.get("chart") or {}).get("spec") or {}).get("chart", "")
    wanted = str(((spec.get("chart") or {}).get("spec") or {}).get("version", ""))
    name = spec.get("releaseName") or meta["name"]
    namespace = spec.get("targetNamespace") or meta["namespace"]
    version, render = CHARTS.get(chart, ("", None))
    refusal = (
        f"halab twin: chart {chart}@{wanted} is not in the twin's chart catalogue "
        f"(known: {', '.join(CHARTS)}); nothing of it is installed"
        if render is None
        else f"halab twin: the twin has {chart}@{version}, not {wanted}"
        if wanted and wanted != version
        else ""
    )
    if refusal or render is None:
        await _set_ready(cm, release, "helmreleases", "v2", False, "ArtifactFailed", refusal)
        return
    values = spec.get("values") or {}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    done = f"{meta.get('generation', 1)}/{digest}"
    installed = _installed(cm)
    if installed.get(meta["uid"]) != done:
        for obj in render(name, namespace, values):
            await _install(cm, obj, meta, digest)
        installed[meta["uid"]] = done
    await _set_ready(
        cm,
        release,
        "helmreleases",
        "v2",
        True,
        "InstallSucceeded",
        f"Helm install succeeded for release {namespace}/{name}.v1 with chart {chart}@{version}",
    )


async def _install(cm: Manager, obj: dict[str, Any], owner: dict[str, Any], digest: str) -> None:
    api_version, plural, namespaced = PLURALS[obj["kind"]]
    meta = obj["metadata"]
    meta.setdefault("labels", {}).update(
        {
            "helm.toolkit.fluxcd.io/name": owner["name"],
            "helm.toolkit.fluxcd.io/namespace": owner["namespace"],
        }
    )
    meta.setdefault("annotations", {})[HASH] = digest
    ns = meta.get("namespace") if namespaced else None
    url = path(api_version, plural, ns, meta["name"])
    try:
        live = await cm.client.get(url)
    except ClientError as exc:
        if exc.status != 404:
            return
        try:
            await cm.client.create(path(api_version, plural, ns), obj)
        except ClientError:
            return
        return
    if (live["metadata"].get("annotations") or {}).get(HASH) == digest:
        return  # installed from these values already: an upgrade only when they change
    obj["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
    try:
        await cm.client.update(url, obj)
    except ClientError:
        return
