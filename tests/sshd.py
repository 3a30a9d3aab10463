"""A real OpenSSH server on a loopback address, for the SSH adapter's tests."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    address: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]


def available() -> str:
    """'' when sshd can run here, else why not."""
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        return "openssh-server is not installed (apt-get install openssh-server)"
    return ""


def start(directory: Path, address: str, extra: str = "") -> Sshd:
    """`extra`: more sshd_config lines (SetEnv, ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True
        )
    (directory / "authorized_keys").write_text((directory / "client.pub").read_text())
    with socket.socket() as s:
        s.bind((address, 0))
        port = s.getsockname()[1]
    config = directory / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress {address}
HostKey {directory / "host"}
PidFile {directory / "sshd.pid"}
AuthorizedKeysFile {directory / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
{extra}""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
    with (directory / "sshd.log").open("wb") as log:
        # The child keeps its own copy of the descriptor after this block closes ours.
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((directory / "sshd.log").read_text()) from None
            time.sleep(0.05)
    host_key = (directory / "host.pub").read_text().split()
    known = directory / "known_hosts"
    known.write_text(f"[{address}]:{port} {host_key[0]} {host_key[1]}\n")
    return Sshd(address, port, getpass.getuser(), directory / "client", known, proc)


def stop(server: Sshd) -> None:
    server.process.terminate()
    try:
        server.process.wait(5)
    except subprocess.TimeoutExpired:
        server.process.kill()
