"""The kubelet's NFS volumes: a rendered NFS PersistentVolume, or an inline `nfs:` volume,
mounted for one pod by the twin's FUSE NFS client (nfs_fuse.py), from the node's own
address, as the node's kernel would mount it at home.

The volume's server is the inventory's address (the rendered tree names 192.168.1.20);
the twin maps it as it maps every host, and refuses one it cannot map rather than let a
mount leave loopback. A mount that fails leaves the pod in ContainerCreating with the
FailedMount event a kubelet writes, quoting mount.nfs; it is tried again a little later.
A mount is a process of this host: failing the host kills it (PDEATHSIG), and the
supervisor lazily unmounts what is left, as a reboot would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from halab.twin.kubelet.csi import (
    MountPending,
    PodMounts,
    _die_with_parent,
    is_mounted,
    unmount_fuse,
)
from halab.twin.nfs_server import MOUNT_PORT, NFS_PORT

MOUNT_WAIT_S = 15.0
RETRY_AFTER_S = 3.0  # a failed mount is not tried again sooner (each try is a process)


@dataclass
class NfsMount:
    pod_uid: str
    target: Path
    process: asyncio.subprocess.Process


class NfsMounts(PodMounts):
    def __init__(self, source: str, to_twin: Callable[[str], str | None]) -> None:
        self.source = source  # the node's address: every mount connects from it
        self.to_twin = to_twin  # inventory address -> the twin's, None when not mapped
        self.mounts: list[NfsMount] = []
        self._failed: dict[Path, tuple[float, str]] = {}

    async def mount(
        self, server: str, export: str, read_only: bool, pod_uid: str, volume: str, pod_dir: Path
    ) -> Path:
        base = pod_dir / "nfs" / volume
        target = base / "mount"
        for m in self.mounts:
            if m.pod_uid == pod_uid and m.target == target and m.process.returncode is None:
                return target
        what = f"{server}:{export}"
        args = f"-t nfs -o {'ro,' if read_only else ''}hard {what} {target}"
        failed = self._failed.get(target)
        if failed and time.monotonic() - failed[0] < RETRY_AFTER_S:
            raise MountPending(failed[1])
        address = self.to_twin(server)
        if address is None:
            return self._fail(
                target,
                volume,
                args,
                f"mount.nfs: Connection timed out ({server} is not "
                "an address of the inventory's network, which is all the twin can reach)",
            )
        target.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "halab.twin.kubelet.nfs_fuse",
            "--server",
            address,
            "--export",
            export,
            "--mountpoint",
            str(target),
            "--source",
            self.source,
            "--nfs-port",
            str(NFS_PORT),
            "--mount-port",
            str(MOUNT_PORT),
            "--name",
            what,
        ]
        if read_only:
            command.append("--ro")
        log_path = base / "mount.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        mount = NfsMount(pod_uid, target, process)
        self.mounts.append(mount)
        deadline = time.monotonic() + MOUNT_WAIT_S
        while not is_mounted(target):
            if process.returncode is not None or time.monotonic() > deadline:
                await self._unmount(mount)
                said = [
                    line
                    for line in log_path.read_text(errors="replace").splitlines()
                    if line.startswith("mount.nfs:")
                ]
                reason = said[-1] if said else "mount.nfs: timed out"
                return self._fail(target, volume, args, reason)
            await asyncio.sleep(0.05)
        self._failed.pop(target, None)
        return target

    def _fail(self, target: Path, volume: str, args: str, reason: str) -> Path:
        message = (
            f'for volume "{volume}" : mount failed: exit status 32; '
            f"Mounting command: mount; Mounting arguments: {args}; Output: {reason}"
        )
        self._failed[target] = (time.monotonic(), message)
        raise MountPending(message)

    async def _unmount(self, mount: NfsMount) -> None:
        with contextlib.suppress(ValueError):
            self.mounts.remove(mount)
        await unmount_fuse(mount.target, mount.process)


def twin_mapper(
    subnet_base: IPv4Address, prefix: int, network_base: IPv4Address
) -> Callable[[str], str | None]:
    """The twin's map of an NFS server address: the inventory's subnet by last octet onto
    the twin's network; loopback stays; anything else cannot be reached."""
    from ipaddress import IPv4Network, ip_address

    subnet = IPv4Network(f"{subnet_base}/{prefix}", strict=False)

    def to_twin(server: str) -> str | None:
        try:
            address = ip_address(server)
        except ValueError:
            return None  # a name: the twin resolves no names of the home network
        if address.is_loopback:
            return server
        if address in subnet:
            return str(IPv4Address(int(network_base) + (int(address) & 0xFF)))
        return None

    return to_twin
