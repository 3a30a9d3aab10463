"""A twin machine's processes held in a cgroup of their own, so that pulling its plug
takes every one of them at once.

cgroup v2's `cgroup.kill` reaches a process while it is being forked and one whose
parent has already died; a sweep by command line or by parentage misses both (seen in
CI: a pod's sandbox of a failed VM left under init, its parent-death signal never
fired). The groups nest as the machines do: `halab-<twin>/<host>/<guest>`, so failing a
host also takes its VMs, and each container has one below its machine's, as the kubelet
gives each pod a cgroup: what outlives a container's sandbox is killed with it. Where
this machine offers no writable cgroup v2 (a container without its cgroup namespace, no
root), the twin falls back on its sweeps."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

# cgroup v2 alone, or the unified hierarchy of a hybrid (v1 controllers plus v2) layout.
ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def _root() -> Path | None:
    for root in ROOTS:
        if (root / "cgroup.controllers").is_file() and os.access(root, os.W_OK):
            return root
    return None


def machine_group(twin_dir: Path, *machine: str) -> Path | None:
    """The group of one machine (`host`, or `host, guest`), or of the whole twin (no
    names); None where cgroups cannot be used."""
    root = _root()
    if root is None:
        return None
    key = hashlib.sha1(str(twin_dir.resolve()).encode()).hexdigest()[:12]
    return root.joinpath(f"halab-{key}", *machine)


def enter(group: Path | None) -> bool:
    """Move this process into `group` (made if missing); its children follow it there.
    False when that cannot be done, and the machine goes on without."""
    if group is None:
        return False
    try:
        group.mkdir(parents=True, exist_ok=True)
        (group / "cgroup.procs").write_text(f"{os.getpid()}\n")
    except OSError:
        return False
    return True


def own_group() -> Path | None:
    """The group this process runs in, when it is a twin machine's (None elsewhere: a
    process outside the twin makes no groups)."""
    root = _root()
    if root is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::/halab-"):
                return root / line[3:].lstrip("/")
    return None


def step_out(group: Path | None) -> None:
    """Move this process out of `group` (into its parent) if it runs inside it: the
    power-off a host asks for over SSH is carried out by a process of that host's."""
    root = _root()
    if group is None or root is None:
        return
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                here = root / line[3:].lstrip("/")
                if here == group or group in here.parents:
                    enter(group.parent)


def members(group: Path | None) -> list[int]:
    """Every process in the group and the groups below it."""
    if group is None or not group.is_dir():
        return []
    found: list[int] = []
    for procs in group.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(line) for line in procs.read_text().split()]
    return found


def kill(group: Path | None, timeout: float = 5.0) -> bool:
    """SIGKILL everything in the group and below, wait until it is empty and remove the
    groups. False when there was no such group (or it could not be killed)."""
    if group is None or not group.is_dir():
        return False
    try:
        (group / "cgroup.kill").write_text("1\n")
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    while members(group) and time.monotonic() < deadline:
        time.sleep(0.02)
    # A group can only go once it and its children are empty; the deepest go first.
    for sub in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        group.rmdir()
    return True
