"""`halab twin up|status|fail|recover|down` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import halab_cli
from twinlab import TwinLab, eventually, tuned_inventory

pytestmark = pytest.mark.twin


def processes_of(directory: Path) -> list[str]:
    """Command lines of every process that belongs to the twin in directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline:
            found.append(cmdline)
    return found


def test_up_again_status_fail_recover_down(tmp_path: Path) -> None:
    inventory = tuned_inventory(tmp_path / "cluster.yaml")
    directory = tmp_path / "twin"
    try:
        first = halab_cli("twin", "--dir", str(directory), "up", str(inventory), timeout=180)
        assert first.returncode == 0, first.stderr
        assert "every node Ready" in first.stdout
        again = halab_cli("twin", "--dir", str(directory), "up", str(inventory))
        assert again.returncode == 0 and "already runs" in again.stdout
        status = halab_cli("twin", "--dir", str(directory), "status")
        assert status.returncode == 0
        assert "VIP 127.77.0.100 held by k3s-cp" in status.stdout
        assert status.stdout.count(" Ready") == 6
        unknown = halab_cli("twin", "--dir", str(directory), "fail", "nas")
        assert unknown.returncode == 1 and "proxmox" in unknown.stderr
        assert halab_cli("twin", "--dir", str(directory), "fail", "pi").returncode == 0
        assert not any("--host pi" in p for p in processes_of(directory))
        assert not any("--name k3s-cp3" in p for p in processes_of(directory))  # its etcd too
        assert halab_cli("twin", "--dir", str(directory), "recover", "pi").returncode == 0
        eventually(
            lambda: (
                "k3s-cp3    Ready" in halab_cli("twin", "--dir", str(directory), "status").stdout
            ),
            60,
            "the Pi's node is Ready again",
        )
    finally:
        down = halab_cli("twin", "--dir", str(directory), "down")
    assert down.returncode == 0, down.stderr
    assert processes_of(directory) == []  # nothing left running: hosts, etcd, pod processes
    lab = TwinLab(directory, inventory)
    assert lab.kubeconfig.exists() and (directory / "target.yaml").exists()
