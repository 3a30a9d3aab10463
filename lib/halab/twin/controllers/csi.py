"""What a CSI driver's controller side and Kubernetes' attach-detach controller do, for the
drivers the twin stands in for (images/seaweed_csi.py): provisioning (the external
provisioner asking the driver to make the volume: a directory on the SeaweedFS filer) and
attaching (VolumeAttachment objects, marked attached by the external attacher).

Both work only while a Ready controller pod of the driver runs, as at home. Detaching
follows Kubernetes: a volume no pod on a node needs any more is detached at once from a
healthy node (its kubelet has unmounted it), and from a node that stopped answering only
after maxWaitForUnmountDuration (6 min; the inventory's `force_detach_s` shortens a twin's).
Until then a ReadWriteOnce volume cannot attach anywhere else: the pod that wants it gets
Kubernetes' "Multi-Attach error" event.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from halab.twin.client import ClientError, path
from halab.twin.controllers.manager import is_terminating, pod_ready
from halab.twin.images import seaweed_csi

if TYPE_CHECKING:
    from halab.twin.controllers.manager import Manager

log = logging.getLogger("halab.twin.csi")
_told: dict[tuple[str, str], str] = {}  # (object uid, reason) -> message already reported
_unwanted_since: dict[str, float] = {}  # VolumeAttachment name -> when no pod needed it


async def _once(
    cm: Manager, obj: dict[str, Any], reason: str, message: str, kind: str, source: str
) -> None:
    key = (str(obj["metadata"].get("uid")), reason)
    if _told.get(key) == message:
        return
    _told[key] = message
    await cm.event(obj, reason, message, kind=kind, source=source)


def controllers(cm: Manager) -> dict[str, str]:
    """Driver name -> its filer address, for drivers with a Ready controller pod."""
    out: dict[str, str] = {}
    for pod in cm.cache("pods"):
        found = seaweed_csi.component(pod)
        if found and found[0] == "controller" and pod_ready(pod) and not is_terminating(pod):
            out[found[1]] = found[2]
    return out


def _filer_urls(cm: Manager, filer: str) -> list[str]:
    """`svc.ns:port[,...]` (the driver's --filer) -> the filer pods' URLs, through the
    Service's ready endpoints, as the driver's pod would reach them through cluster DNS."""
    urls = []
    for one in filer.split(","):
        host, _, port = one.strip().rpartition(":")
        name, _, ns = host.partition(".")
        ep = cm.get("endpoints", ns.split(".")[0] or "default", name)
        for subset in (ep or {}).get("subsets") or []:
            for address in subset.get("addresses") or []:
                url = f"http://{address['ip']}:{port}"
                if url not in urls:
                    urls.append(url)
    return urls


async def _mkdir(urls: list[str], directory: str) -> str | None:
    """Make the volume's directory on a filer; None when done, else what went wrong."""
    if not urls:
        return "no filer endpoint is ready"
    problems = []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in urls:
            try:
                # A bare POST to `<dir>/` makes the directory; with a Content-Type the
                # filer takes it for an upload and wants multipart.
                async with session.post(
                    f"{url}{directory.rstrip('/')}/", skip_auto_headers=["Content-Type"]
                ) as resp:
                    if resp.status < 300:
                        return None
                    problems.append(f"{url}: HTTP {resp.status} {(await resp.text())[:120]}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                problems.append(f"{url}: {exc or type(exc).__name__}")
    return "; ".join(problems)


async def provision(cm: Manager) -> None:
    served = controllers(cm)
    if not served:
        return
    classes = {c["metadata"]["name"]: c for c in cm.cache("storageclasses")}
    existing = {pv["metadata"]["name"] for pv in cm.cache("pvs")}
    for pvc in cm.cache("pvcs"):
        spec = pvc["spec"]
        klass = classes.get(spec.get("storageClassName") or "")
        if (
            klass is None
            or is_terminating(pvc)
            or spec.get("volumeName")
            or pvc.get("status", {}).get("phase") == "Bound"
        ):
            continue
        driver = str(klass.get("provisioner", ""))
        if driver not in served:
            continue
        name = f"pvc-{pvc['metadata']['uid']}"
        if name in existing:
            continue
        params = {k: str(v) for k, v in (klass.get("parameters") or {}).items()}
        context = seaweed_csi.volume_context(name, params)
        problem = await _mkdir(_filer_urls(cm, served[driver]), context["path"])
        if problem:
            await _once(
                cm,
                pvc,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{klass["metadata"]["name"]}": '
                f"rpc error: code = Internal desc = {problem}",
                "Warning",
                driver,
            )
            continue
        size = (spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi")
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": driver}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": klass.get("reclaimPolicy", "Delete"),
                "storageClassName": klass["metadata"]["name"],
                "csi": {"driver": driver, "volumeHandle": name, "volumeAttributes": context},
            },
        }
        try:
            await cm.client.create(path("v1", "persistentvolumes"), body)
        except ClientError as exc:
            if exc.status != 409:
                continue
        await cm.event(
            pvc,
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {name}",
            source=f"{driver}_{cm.settings.identity}",
        )


# -- attach / detach ----------------------------------------------------------------------


def _node_healthy(cm: Manager, name: str) -> bool:
    node = cm.get("nodes", "", name)
    conditions = (node or {}).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _pod_volumes(cm: Manager, pod: dict[str, Any], needs_attach: set[str]) -> list[dict[str, Any]]:
    """The attach-requiring CSI PVs a pod uses."""
    ns = pod["metadata"]["namespace"]
    out = []
    for vol in pod["spec"].get("volumes") or []:
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        pvc = cm.get("pvcs", ns, claim) if claim else None
        pv_name = (pvc or {}).get("spec", {}).get("volumeName")
        pv = cm.get("pvs", "", pv_name) if pv_name else None
        if pv and (pv["spec"].get("csi") or {}).get("driver") in needs_attach:
            out.append(pv)
    return out


def _wanted(cm: Manager, pod: dict[str, Any]) -> bool:
    """Whether a pod's volumes stay in the desired state of the world: a pod deleted on a
    node that stopped answering no longer needs them (the clock to force detach starts)."""
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if is_terminating(pod):
        return _node_healthy(cm, pod["spec"]["nodeName"])
    return True


def _exclusive(pv: dict[str, Any]) -> bool:
    modes = set(pv["spec"].get("accessModes") or [])
    return not modes & {"ReadWriteMany", "ReadOnlyMany"}


async def attach_detach(cm: Manager) -> None:
    needs_attach = {
        d["metadata"]["name"]
        for d in cm.cache("csidrivers")
        if (d.get("spec") or {}).get("attachRequired", True)
    }
    if not needs_attach:
        return
    attachments = {va["metadata"]["name"]: va for va in cm.cache("volumeattachments")}
    by_pv: dict[str, list[dict[str, Any]]] = {}
    for va in attachments.values():
        by_pv.setdefault(va["spec"]["source"].get("persistentVolumeName", ""), []).append(va)
    desired: set[str] = set()
    for pod in cm.cache("pods"):
        node = pod["spec"].get("nodeName")
        if not node or not _wanted(cm, pod):
            continue
        for pv in _pod_volumes(cm, pod, needs_attach):
            driver = pv["spec"]["csi"]["driver"]
            handle = pv["spec"]["csi"]["volumeHandle"]
            name = seaweed_csi.attachment_name(driver, handle, node)
            desired.add(name)
            if name in attachments:
                continue
            elsewhere = [
                va for va in by_pv.get(pv["metadata"]["name"], []) if va["spec"]["nodeName"] != node
            ]
            if elsewhere and _exclusive(pv):
                await _once(
                    cm,
                    pod,
                    "FailedAttachVolume",
                    f'Multi-Attach error for volume "{pv["metadata"]["name"]}" Volume is already '
                    "exclusively attached to one node and can't be attached to another",
                    "Warning",
                    "attachdetach-controller",
                )
                continue
            body = {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "VolumeAttachment",
                "metadata": {"name": name},
                "spec": {
                    "attacher": driver,
                    "nodeName": node,
                    "source": {"persistentVolumeName": pv["metadata"]["name"]},
                },
            }
            try:
                created = await cm.client.create(
                    path("storage.k8s.io/v1", "volumeattachments"), body
                )
            except ClientError:
                continue
            attachments[name] = created
            by_pv.setdefault(pv["metadata"]["name"], []).append(created)
    served = controllers(cm)
    for name, va in attachments.items():
        if name in desired:
            _unwanted_since.pop(name, None)
            if not (va.get("status") or {}).get("attached") and va["spec"]["attacher"] in served:
                await _mark_attached(cm, va)
            continue
        await _detach(cm, va)
    for gone in set(_unwanted_since) - set(attachments):
        _unwanted_since.pop(gone, None)


async def _mark_attached(cm: Manager, va: dict[str, Any]) -> None:
    url = path("storage.k8s.io/v1", "volumeattachments", None, va["metadata"]["name"], "status")
    try:
        await cm.client.update(url, {**va, "status": {"attached": True}})
    except ClientError as exc:
        log.debug("attach %s: %s", va["metadata"]["name"], exc)


async def _detach(cm: Manager, va: dict[str, Any]) -> None:
    name, node = va["metadata"]["name"], va["spec"]["nodeName"]
    if not _node_healthy(cm, node):
        since = _unwanted_since.setdefault(name, time.monotonic())
        waited = time.monotonic() - since
        if waited < cm.settings.force_detach:
            return
        pv = cm.get("pvs", "", va["spec"]["source"].get("persistentVolumeName", ""))
        if pv is not None:
            await cm.event(
                pv,
                "ForceDetach",
                f"volume detached from node {node}, which stopped answering: "
                f"maxWaitForUnmountDuration {cm.settings.force_detach:.0f}s expired",
                kind="Warning",
                source="attachdetach-controller",
            )
    try:
        await cm.client.delete(path("storage.k8s.io/v1", "volumeattachments", None, name))
    except ClientError as exc:
        log.debug("detach %s: %s", name, exc)
    _unwanted_since.pop(name, None)
