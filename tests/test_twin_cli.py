"""`halab twin up|status|fail|recover|down` as a user runs them, on the session's twin
(twins share 127.77.0.x, so there is one at a time); it is left running, as found."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from halab.twin.kubelet.runtime import sandbox_command

from helpers import halab_cli
from twinlab import TwinLab, eventually

pytestmark = pytest.mark.twin
GATEWAY_BGP = "127.77.0.1"  # the plan's gateway on the session's twin network


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


def twin_cli(lab: TwinLab, *args: str) -> tuple[int, str, str]:
    done = halab_cli("twin", "--dir", str(lab.dir), *args, timeout=180)
    return done.returncode, done.stdout, done.stderr


def test_status_up_again_fail_recover(twin: TwinLab) -> None:
    code, out, _ = twin_cli(twin, "status")
    assert code == 0 and "VIP 127.77.0.100 held by k3s-cp" in out
    assert out.count(" Ready") == 6
    code, out, _ = twin_cli(twin, "up", str(twin.inventory))
    assert code == 0 and "already runs" in out
    code, _, err = twin_cli(twin, "fail", "nas")
    assert code == 1 and "proxmox" in err  # the error lists the hosts there are
    assert twin_cli(twin, "fail", "pi")[0] == 0
    left = processes_of(twin.dir)
    assert not any("--host pi" in p for p in left)
    assert not any("--name k3s-cp3" in p for p in left)  # its etcd went with it
    assert twin_cli(twin, "recover", "pi")[0] == 0
    eventually(
        lambda: "k3s-cp3    Ready" in twin_cli(twin, "status")[1],
        60,
        "the Pi's node is Ready again",
    )


def test_down_leaves_nothing_and_up_starts_again(twin: TwinLab) -> None:
    # A pod sandbox that missed its host's death (started as the host went down): one
    # made here, in a session of its own, parented by no host at all.
    stray = subprocess.Popen(
        sandbox_command(["sleep", "600"], {}, "/", str(twin.dir)),
        start_new_session=True,
        env={"HALAB_TWIN": str(twin.dir), "PATH": "/usr/bin:/bin"},
    )
    code, out, _ = twin_cli(twin, "down")
    assert stray.wait(10) == -9  # down found it by the twin's directory and killed it
    assert code == 0 and "proxmox" in out
    assert processes_of(twin.dir) == []  # hosts, etcd members, pods, bgpd, ExaBGP
    for address, port in ((GATEWAY_BGP, 179), (GATEWAY_BGP, 22)):
        with pytest.raises(ConnectionRefusedError):  # no listener outlives the twin
            socket.create_connection((address, port), timeout=3).close()
    code, out, _ = twin_cli(twin, "status")
    assert code == 1 and "stopped" in out
    code, out, err = twin_cli(twin, "up", str(twin.inventory))
    assert code == 0, err
    assert "every node Ready" in out and twin.kubeconfig.exists()
    # --fresh only from a stopped twin: it would throw away the disks of a running one.
    code, _, err = twin_cli(twin, "up", "--fresh", str(twin.inventory))
    assert code == 1 and "to start fresh" in err, err


def test_fresh_forgets_the_disks_and_keeps_the_clip_cache(tmp_path: Path) -> None:
    from halab.twin.supervisor import TwinPaths, _wipe

    for name in ("hosts/unraid/root/mnt/user/media/x.mkv", "media-cache/c.mkv", "state.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    _wipe(TwinPaths(tmp_path))
    assert not (tmp_path / "hosts").exists() and not (tmp_path / "state.json").exists()
    assert (tmp_path / "media-cache" / "c.mkv").exists()


def test_a_second_twin_is_refused_while_one_holds_the_addresses(
    twin: TwinLab, tmp_path: Path
) -> None:
    done = halab_cli("twin", "up", str(twin.inventory), "--dir", str(tmp_path / "other"))
    assert done.returncode == 1
    assert "already in use: another twin runs" in done.stderr
    assert processes_of(tmp_path / "other") == []
