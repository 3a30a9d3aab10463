"""SSH on the twin: connect and exec times through halab.hosts (paramiko), p50/p99.

Starts a twin of the shipped inventory on 127.70.0.0/24 (or uses --target), then, on one
guest node: N fresh connections (TCP, key exchange, host key check, auth), N commands
on one reused connection, and N commands through the user's OpenSSH client. The baseline,
measured the same way in the same run: the same command as a local process, and inside
the same bubblewrap world a login builds (what the sandbox itself costs). Run:
.venv/bin/python bench/ssh.py [--count 100] [--target outputs/twin/target.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

from halab import netguard
from halab.hosts import SshHost
from halab.inventory import load_inventory
from halab.target import load_target
from halab.twin import supervisor

netguard.install()
ROOT = Path(__file__).resolve().parents[1]
COMMAND = "hostname"


def times(count: int, fn: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def line(name: str, samples: list[float], base: float | None = None) -> str:
    p50 = statistics.median(samples)
    p99 = sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]
    ratio = f"  x{p50 / base:5.1f} the local process" if base else ""
    return f"  {name:44} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms{ratio}"


def measure(target_file: Path, node: str, count: int) -> None:
    inv = load_inventory(ROOT / "params" / "cluster.yaml")
    target = load_target(target_file)
    address = str(target.addresses.map(inv.node(node).address))
    world = target_file.parent / "hosts" / inv.node(node).host / "nodes" / node / "ssh"
    login = (world / "login").read_text()
    bwrap = login.split("set -- ", 1)[1].split("\n", 1)[0]

    local = times(count, lambda: subprocess.run(["sh", "-c", COMMAND], capture_output=True))
    sandboxed = times(
        count, lambda: subprocess.run(["sh", "-c", f"{bwrap} /bin/sh -c {COMMAND}"],
                                      capture_output=True)
    )  # fmt: skip

    def connect() -> None:
        host = SshHost(node, address, target.ssh)
        host.client()
        host.close()

    connects = times(count, connect)
    reused = SshHost(node, address, target.ssh)
    reused.run(COMMAND)
    execs = times(count, lambda: reused.run(COMMAND, check=True))
    shim = times(count, lambda: reused.run("nproc", check=True))
    reused.close()
    config = target_file.parent / "ssh_config"
    openssh = times(
        count,
        lambda: subprocess.run(["ssh", "-F", str(config), node, COMMAND], capture_output=True,
                               check=True),
    )  # fmt: skip
    base = statistics.median(local)
    print(f"SSH on the twin ({node} at {address}), {count} samples each:")
    print(line(f"local process: sh -c {COMMAND} (baseline)", local))
    print(line("local process in the login's bubblewrap world", sandboxed, base))
    print(line("paramiko connect (kex, host key, auth)", connects, base))
    print(line(f"paramiko exec `{COMMAND}`, connection reused", execs, base))
    print(line("paramiko exec `nproc` (a Python shim)", shim, base))
    print(line(f"OpenSSH client `ssh {node} {COMMAND}`", openssh, base))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--target", type=Path, default=None, help="a running twin's target")
    parser.add_argument("--node", default="k3s-w1")
    args = parser.parse_args()
    if args.target is not None:
        measure(args.target, args.node, args.count)
        return
    with tempfile.TemporaryDirectory(prefix="halab-ssh-bench-") as tmp:
        directory = Path(tmp) / "twin"
        try:
            supervisor.up(
                ROOT / "params" / "cluster.yaml",
                directory,
                timeout=180,
                network=IPv4Network("127.70.0.0/24"),
            )
            measure(directory / "target.yaml", args.node, args.count)
        finally:
            supervisor.down(directory)


if __name__ == "__main__":
    main()
