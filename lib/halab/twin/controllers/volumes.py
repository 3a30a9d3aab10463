"""Volume binding: claims bind to a fitting static PersistentVolume (class, access modes,
size), and a StorageClass's claims get a volume provisioned for them when none fits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from halab.inventory.quantity import parse_quantity
from halab.twin.client import ClientError, path
from halab.twin.controllers.manager import is_terminating

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
# Provisioners the twin itself runs: k3s's local-path (a directory per claim). Claims of
# any other provisioner (the SeaweedFS CSI driver, until the twin runs it) stay Pending.
TWIN_PROVISIONERS = frozenset({"rancher.io/local-path"})
_told: set[tuple[str, str]] = set()  # (claim uid, reason) already reported in an Event


async def _once(
    cm: Manager, pvc: dict[str, Any], reason: str, message: str, kind: str = "Normal"
) -> None:
    key = (str(pvc["metadata"].get("uid")), reason)
    if key in _told:
        return
    _told.add(key)
    await cm.event(pvc, reason, message, kind=kind, source="persistentvolume-controller")


def _size(value: Any) -> float:
    try:
        return float(parse_quantity(value or "0"))
    except ValueError:
        return 0.0


def fits(pvc: dict[str, Any], pv: dict[str, Any], klass: str) -> bool:
    spec, pv_spec = pvc["spec"], pv["spec"]
    if pv.get("status", {}).get("phase") != "Available":
        return False
    ref = pv_spec.get("claimRef")
    if ref:
        # Pre-bound (claimRef without a uid): the volume is that claim's alone.
        meta = pvc["metadata"]
        mine = (ref.get("namespace"), ref.get("name")) == (meta["namespace"], meta["name"])
        if not mine or ref.get("uid") not in (None, meta.get("uid")):
            return False
    if (pv_spec.get("storageClassName") or "") != klass:
        return False
    if not set(spec.get("accessModes") or []) <= set(pv_spec.get("accessModes") or []):
        return False
    wanted = _size((spec.get("resources") or {}).get("requests", {}).get("storage"))
    return _size((pv_spec.get("capacity") or {}).get("storage")) >= wanted


async def reconcile(cm: Manager) -> None:
    classes = {c["metadata"]["name"]: c for c in cm.cache("storageclasses")}
    default = next(
        (
            n
            for n, c in classes.items()
            if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
        ),
        None,
    )
    pvs = cm.cache("pvs")
    for pvc in cm.cache("pvcs"):
        if is_terminating(pvc) or pvc.get("status", {}).get("phase") == "Bound":
            continue
        spec = pvc["spec"]
        klass = spec.get("storageClassName")
        if klass is None:
            klass = default or ""
        named = spec.get("volumeName")
        candidates = [
            pv
            for pv in pvs
            if (not named or pv["metadata"]["name"] == named) and fits(pvc, pv, klass)
        ]
        if candidates:
            best = min(
                candidates, key=lambda pv: _size(pv["spec"].get("capacity", {}).get("storage"))
            )
            await _bind(cm, pvc, best, klass)
            pvs = [pv for pv in pvs if pv is not best]
        elif klass in classes and not named:
            provisioner = str(classes[klass].get("provisioner", ""))
            if provisioner in TWIN_PROVISIONERS:
                await _provision(cm, pvc, classes[klass])
            else:
                # No stand-in pretends to be a driver the twin does not run: the claim
                # waits, as it would at home with the driver missing.
                await _once(
                    cm,
                    pvc,
                    "ExternalProvisioning",
                    f"Waiting for a volume to be created either by the external provisioner "
                    f'"{provisioner}" or manually by the system administrator. If volume '
                    "creation is delayed, please verify that the provisioner is running and "
                    "correctly registered.",
                )
        elif klass and not named:
            await _once(
                cm,
                pvc,
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{klass}" not found',
                kind="Warning",
            )


async def _bind(cm: Manager, pvc: dict[str, Any], pv: dict[str, Any], klass: str) -> None:
    meta = pvc["metadata"]
    pv_body = {
        **pv,
        "spec": {
            **pv["spec"],
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": "v1",
            },
        },
    }
    try:
        bound = await cm.client.update(
            path("v1", "persistentvolumes", None, pv["metadata"]["name"]), pv_body
        )
        await cm.client.update(
            path("v1", "persistentvolumes", None, pv["metadata"]["name"], "status"),
            {**bound, "status": {"phase": "Bound"}},
        )
        claim = await cm.client.patch(
            path("v1", "persistentvolumeclaims", meta["namespace"], meta["name"]),
            {"spec": {"volumeName": pv["metadata"]["name"], "storageClassName": klass}},
        )
        claim["status"] = {
            "phase": "Bound",
            "accessModes": pv["spec"].get("accessModes"),
            "capacity": pv["spec"].get("capacity"),
        }
        await cm.client.update(
            path("v1", "persistentvolumeclaims", meta["namespace"], meta["name"], "status"), claim
        )
    except ClientError:
        return
    await cm.event(
        pvc,
        "Bound",
        f"bound to volume {pv['metadata']['name']}",
        source="persistentvolume-controller",
    )


async def _provision(cm: Manager, pvc: dict[str, Any], klass: dict[str, Any]) -> None:
    meta = pvc["metadata"]
    name = f"pvc-{meta['uid']}"
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {"pv.kubernetes.io/provisioned-by": klass.get("provisioner", "")},
        },
        "spec": {
            "capacity": {
                "storage": (pvc["spec"].get("resources") or {})
                .get("requests", {})
                .get("storage", "1Gi")
            },
            "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": klass.get("reclaimPolicy", "Delete"),
            "storageClassName": klass["metadata"]["name"],
            "csi": {"driver": klass.get("provisioner", "twin"), "volumeHandle": name},
        },
    }
    try:
        await cm.client.create(path("v1", "persistentvolumes"), body)
    except ClientError as exc:
        if exc.status != 409:
            return
    await cm.event(
        pvc,
        "ProvisioningSucceeded",
        f"Successfully provisioned volume {name}",
        source=klass.get("provisioner", ""),
    )
