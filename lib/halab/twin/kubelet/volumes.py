"""Where a pod's volumes live on this machine: always under the twin's directory, never
on the real paths the manifests name (a hostPath of /mnt/user/media is a folder in the
twin's host directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halab.twin.client import Client, ClientError, path

if TYPE_CHECKING:
    from halab.twin.kubelet.csi import CsiNode
    from halab.twin.kubelet.nfs import NfsMounts


async def volume_dirs(
    client: Client,
    pod: dict[str, Any],
    pod_dir: Path,
    host_root: Path,
    twin_root: Path,
    csi: CsiNode | None = None,
    nfs: NfsMounts | None = None,
) -> dict[str, Path]:
    """Volume name -> directory, created and filled (configMap/secret keys as files).
    NFS volumes are mounted from their server (`nfs`); without it, a folder of the twin."""
    out: dict[str, Path] = {}
    ns = pod["metadata"]["namespace"]
    uid = pod["metadata"]["uid"]
    for vol in pod["spec"].get("volumes") or []:
        name = vol["name"]
        mounted: Path | None = None  # a FUSE mount: never stat it from the event loop
        if "hostPath" in vol:
            where = host_root / vol["hostPath"]["path"].lstrip("/")
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]
            pv = await _claim_pv(client, ns, claim["claimName"])
            spec = pv.get("spec", {})
            where = _claim_dir(pv, host_root, twin_root)
            if csi is not None and "csi" in spec:
                mounted = await csi.mount(pv, pod, name, pod_dir)
            elif nfs is not None and "nfs" in spec:
                read_only = bool(spec["nfs"].get("readOnly") or claim.get("readOnly"))
                mounted = await nfs.mount(
                    str(spec["nfs"]["server"]),
                    str(spec["nfs"]["path"]),
                    read_only,
                    uid,
                    str(pv["metadata"]["name"]),
                    pod_dir,
                )
        elif "nfs" in vol and nfs is not None:
            where = mounted = await nfs.mount(
                str(vol["nfs"]["server"]),
                str(vol["nfs"]["path"]),
                bool(vol["nfs"].get("readOnly")),
                uid,
                name,
                pod_dir,
            )
        elif "nfs" in vol:
            where = twin_root / "nfs" / vol["nfs"]["server"] / vol["nfs"]["path"].lstrip("/")
        else:
            where = pod_dir / "volumes" / name
        if mounted is not None:
            out[name] = mounted
            continue
        where.mkdir(parents=True, exist_ok=True)
        for kind, plural, key in (
            ("configMap", "configmaps", "name"),
            ("secret", "secrets", "secretName"),
        ):
            if kind in vol:
                await _fill(client, ns, plural, vol[kind].get(key, ""), where, kind == "secret")
        out[name] = where
    return out


async def _claim_pv(client: Client, ns: str, claim: str) -> dict[str, Any]:
    """The PersistentVolume a claim is bound to; 409 while it is not bound."""
    pvc = await client.get(path("v1", "persistentvolumeclaims", ns, claim))
    volume = pvc.get("spec", {}).get("volumeName")
    if not volume:
        raise ClientError(409, f"persistentvolumeclaim {claim} is not bound")
    return await client.get(path("v1", "persistentvolumes", None, volume))


def _claim_dir(pv: dict[str, Any], host_root: Path, twin_root: Path) -> Path:
    spec: dict[str, Any] = pv.get("spec", {})
    if "nfs" in spec:
        return twin_root / "nfs" / str(spec["nfs"]["server"]) / str(spec["nfs"]["path"]).lstrip("/")
    if "hostPath" in spec:
        return host_root / str(spec["hostPath"]["path"]).lstrip("/")
    if "local" in spec:
        return host_root / str(spec["local"]["path"]).lstrip("/")
    # Provisioned volumes, and CSI volumes of drivers the twin does not stand in for: one
    # directory per volume, shared by the whole twin. A SeaweedFS CSI volume gets the
    # kubelet's weed mount instead (CsiNode.mount).
    return twin_root / "volumes" / str(pv["metadata"]["name"])


async def _fill(client: Client, ns: str, plural: str, name: str, where: Path, secret: bool) -> None:
    import base64

    doc = await client.get(path("v1", plural, ns, name))
    for key, value in (doc.get("data") or {}).items():
        data = base64.b64decode(value) if secret else str(value).encode()
        (where / key).write_bytes(data)
        if secret:
            (where / key).chmod(0o600)  # as the kubelet writes secret volumes
    for key, value in (doc.get("binaryData") or {}).items():
        (where / key).write_bytes(base64.b64decode(value))
    (where / ".halab-source").write_text(json.dumps({"kind": plural, "name": name}))
