"""A machine's cgroup takes all its processes at once: those it forked, those already
orphaned under init, and those in the groups of its guests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from halab.twin import cgroups

from twinlab import TwinLab, eventually

pytestmark = pytest.mark.skipif(
    cgroups.machine_group(Path("/")) is None,
    reason="no writable cgroup v2 on this machine: the twin falls back on its sweeps",
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _machine(group: Path, pids: Path) -> subprocess.Popen[bytes]:
    """A 'machine': enters its group, leaves one child orphaned under init (its parent
    shell exits at once) and keeps one of its own; writes their pids."""
    script = (
        "import os, subprocess, sys\n"
        "from pathlib import Path\n"
        "from halab.twin import cgroups\n"
        f"assert cgroups.enter(Path({str(group)!r}))\n"
        "subprocess.run(['sh', '-c', 'sleep 300 & echo $! > ' + sys.argv[1] + '.orphan'])\n"
        "kept = subprocess.Popen(['sleep', '300'])\n"
        "Path(sys.argv[1] + '.kept').write_text(str(kept.pid))\n"
        "kept.wait()\n"
    )
    return subprocess.Popen([sys.executable, "-c", script, str(pids)])


@pytest.fixture
def twin_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    cgroups.kill(cgroups.machine_group(tmp_path))


def _started(pids: Path) -> tuple[int, int]:
    eventually(
        lambda: Path(f"{pids}.orphan").exists() and Path(f"{pids}.kept").exists(),
        10,
        "the machine has forked",
    )
    return int(Path(f"{pids}.orphan").read_text()), int(Path(f"{pids}.kept").read_text())


def test_killing_a_host_takes_its_orphans_and_its_guests(twin_dir: Path) -> None:
    host = cgroups.machine_group(twin_dir, "proxmox")
    guest = cgroups.machine_group(twin_dir, "proxmox", "k3s-w1")
    assert host is not None and guest is not None
    machines = [_machine(host, twin_dir / "host"), _machine(guest, twin_dir / "guest")]
    started = [*_started(twin_dir / "host"), *_started(twin_dir / "guest")]
    # The orphan's shell has exited: it is no longer below the machine's process.
    assert int(Path(f"/proc/{started[0]}/stat").read_text().split()[3]) != machines[0].pid
    assert set(started) <= set(cgroups.members(host))

    assert cgroups.kill(host)

    eventually(lambda: not [p for p in started if _alive(p)], 5, "every process of the host gone")
    for machine in machines:
        assert machine.wait(5) == -9
    assert not host.exists(), "the host's groups are removed"


def test_a_guest_goes_alone(twin_dir: Path) -> None:
    host = cgroups.machine_group(twin_dir, "proxmox")
    guest = cgroups.machine_group(twin_dir, "proxmox", "k3s-w1")
    assert host is not None and guest is not None
    on_host = _machine(host, twin_dir / "host")
    in_guest = _machine(guest, twin_dir / "guest")
    host_pids, guest_pids = _started(twin_dir / "host"), _started(twin_dir / "guest")

    assert cgroups.kill(guest)

    eventually(lambda: not [p for p in guest_pids if _alive(p)], 5, "the guest's processes gone")
    assert in_guest.wait(5) == -9
    time.sleep(0.2)
    assert all(_alive(p) for p in host_pids) and on_host.poll() is None
    assert cgroups.kill(host)
    on_host.wait(5)


def test_a_missing_group_is_no_kill(twin_dir: Path) -> None:
    assert cgroups.kill(cgroups.machine_group(twin_dir, "nobody")) is False


def _sandboxes_of(uid: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"bwrap") and any(uid.encode() in a for a in argv):
                found.append(int(proc.name))
    return found


@pytest.mark.twin
def test_a_containers_sandbox_runs_in_a_group_of_its_own_that_goes_with_it(
    twin: TwinLab,
) -> None:
    """As the kubelet gives each pod a cgroup: the sandbox (both its bubblewraps) is in
    one below its machine's, and once the container is gone so is the group."""
    core, ns = client.CoreV1Api(twin.api()), twin.namespace()
    body = {
        "metadata": {"name": "grouped"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}]},
    }
    core.create_namespaced_pod(ns, body)
    uid = core.read_namespaced_pod("grouped", ns).metadata.uid
    pids = eventually(lambda: _sandboxes_of(uid), 30, "the pod's sandbox runs")
    groups = {Path(f"/proc/{pid}/cgroup").read_text().split("0::", 1)[1].strip() for pid in pids}
    (group,) = groups  # outer and inner bubblewrap together
    machine = cgroups.machine_group(twin.dir)
    assert machine is not None and group.startswith(f"/{machine.name}/"), (group, machine)
    assert group.rsplit("/", 1)[-1].startswith("c-"), group
    where = machine.parent / group.lstrip("/")
    assert where.is_dir()
    core.delete_namespaced_pod("grouped", ns, grace_period_seconds=0)
    eventually(lambda: not where.exists() and not _sandboxes_of(uid), 30, "group and sandbox gone")
