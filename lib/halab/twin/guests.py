"""A physical host's guests: its VM and LXC nodes, each one process the host starts.

A guest's process (python -m halab.twin.host --node NAME) holds that node's etcd member,
control plane, kubelet and sshd; its pods are its children. Stopping a guest SIGKILLs that
whole tree at once, as a hypervisor's power-off does; a shutdown asks it first (SIGTERM),
as ACPI does. Guests share their host's process group, so pulling the host's plug takes
them too. Ids are Proxmox's style (from 100, in inventory order); libvirt's running-domain
ids count up with each start, as virsh shows them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from halab.inventory import Inventory
from halab.inventory.model import Node
from halab.twin import cgroups

FIRST_VMID = 100


def guest_ids(inv: Inventory, host: str) -> dict[str, int]:
    """node name -> its VM/CT id on `host`, for the nodes that are guests there."""
    guests = [n for n in inv.nodes if n.host == host and n.kind != "bare-metal"]
    return {n.name: FIRST_VMID + i for i, n in enumerate(guests)}


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (pods run in sessions of their own, so
    a process group would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def sandboxes_under(prefix: Path) -> list[int]:
    """bubblewrap sandboxes (pods, SSH sessions) whose command line names a path under
    `prefix`: how a machine's pods are found even once their parent is gone."""
    exact = str(prefix).rstrip("/").encode()
    needle = exact + b"/"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # The path itself (a sandbox's tag) or anything below it, not a sibling's prefix.
        if argv and argv[0].endswith(b"bwrap") and any(a == exact or needle in a for a in argv):
            found.append(int(proc.name))
    return found


def kill_sandboxes(prefixes: list[Path], timeout: float = 5.0, quiet: float = 0.0) -> None:
    """SIGKILL every sandbox under `prefixes` (killing the outer bubblewrap ends its whole
    PID namespace) and wait until they are gone. Pods die with their parent through
    --die-with-parent; this makes sure, as a power-off takes everything.

    `quiet`: keep looking until none has been seen for that long. A child forked just
    before its parent was killed has not exec'd bubblewrap yet, so it is not found by
    its command line; once it does, its parent is already gone and --die-with-parent
    never fires (seen in CI: a weed pod of a failed host reparented to pid 1)."""
    deadline = time.monotonic() + timeout
    last_seen = time.monotonic()
    while True:
        left = [pid for prefix in prefixes for pid in sandboxes_under(prefix)]
        now = time.monotonic()
        if left:
            last_seen = now
        if (not left and now - last_seen >= quiet) or now > deadline:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
                "SC_PAGE_SIZE"
            )
    return total


@dataclass
class Guest:
    node: Node
    vmid: int
    process: subprocess.Popen[bytes] | None = None
    domain_id: int | None = None  # libvirt's id while running
    started_at: float = 0.0
    history: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def memory_used(self) -> int:
        if not self.running:
            return 0
        assert self.process is not None
        return rss_bytes([self.process.pid, *descendants(self.process.pid)])


class Guests:
    """The guests of one host, started at the host's boot (onboot, as the plan's VMs are)."""

    def __init__(
        self, inv: Inventory, inventory_file: str, directory: Path, host: str, network: str
    ) -> None:
        self.inventory_file = inventory_file
        self.dir = directory
        self.host = host
        self.network = network
        ids = guest_ids(inv, host)
        self.guests = {n.name: Guest(n, ids[n.name]) for n in inv.nodes if n.name in ids}
        self._next_domain = 1

    def find(self, name_or_id: str) -> Guest | None:
        for guest in self.guests.values():
            if name_or_id in (guest.node.name, str(guest.vmid)):
                return guest
        return None

    def start(self, guest: Guest) -> bool:
        """False when it already runs."""
        if guest.running:
            return False
        log = (self.dir / "hosts" / self.host / "host.log").open("ab")
        with log:
            guest.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "halab.twin.host",
                    "--inventory",
                    self.inventory_file,
                    "--dir",
                    str(self.dir),
                    "--host",
                    self.host,
                    "--node",
                    guest.node.name,
                    "--network",
                    self.network,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        guest.domain_id = self._next_domain
        self._next_domain += 1
        guest.started_at = time.time()
        guest.history.append(f"{time.strftime('%H:%M:%S')} started")
        return True

    def stop(self, guest: Guest, graceful: bool, timeout: float = 20.0) -> bool:
        """Power the guest off (graceful: shut it down first). False when it was not
        running. Returns once every process of it is gone."""
        if not guest.running:
            return False
        assert guest.process is not None
        pid = guest.process.pid
        if graceful:
            guest.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                guest.process.wait(timeout)
        # Once it has exited its children are init's: the path sweep below finds its pods.
        tree = [pid, *descendants(pid)] if guest.process.poll() is None else []
        cgroups.kill(cgroups.machine_group(self.dir, self.host, guest.node.name))
        for member in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        guest.process.wait()
        host_dir = self.dir / "hosts" / self.host
        kill_sandboxes(
            [host_dir / "kubelet" / guest.node.name, host_dir / "nodes" / guest.node.name],
            quiet=0.5,  # a pod forked as the guest died execs bubblewrap a moment later
        )
        # Grandchildren (its pods, its etcd) are reparented when it dies: wait for them.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_exists(p) for p in tree):
            time.sleep(0.05)
        self._unmount(guest)
        guest.domain_id = None
        guest.history.append(f"{time.strftime('%H:%M:%S')} {'shut down' if graceful else 'off'}")
        return True

    def _unmount(self, guest: Guest) -> None:
        # A killed FUSE daemon leaves its mount ("Transport endpoint is not connected");
        # a real VM's mounts go with its kernel.
        from halab.twin.kubelet.csi import lazy_unmount, mounts_under

        for point in mounts_under(self.dir / "hosts" / self.host / "kubelet" / guest.node.name):
            lazy_unmount(point)

    def stop_all(self) -> None:
        """Shut every guest down at once (the host's own shutdown)."""
        import threading

        threads = [
            threading.Thread(target=self.stop, args=(g, True, 5.0)) for g in self.guests.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
