"""The home gateway (the inventory's network.gateway, the plan's UniFi Dream Machine) as a
twin host: the real FRR bgpd, loaded with the BGP configuration the kit renders for it
(external/udm/frr-bgp.conf), and an sshd on its address where `vtysh` reaches that bgpd.

bgpd runs alone (no zebra, `-n`: nothing is installed into this machine's routing
table), listening only on the gateway's twin address. The rendered file is loaded with its
home-network addresses moved onto the twin's network, plus the lines that loopback needs
and a home gateway does not (reference/bgp-real.md): `bgp allow-martian-nexthop` (FRR
treats 127/8 next hops as martian and resets the session on every update), and the
peer group's `update-source` and `timers connect`. Those lines never reach the rendered
file. Only inventories whose MetalLB speaks BGP have this host.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

GATEWAY = "udm"  # the twin host's name, and its SSH name
BGPD = "/usr/lib/frr/bgpd"
RENDERED = "frr-bgp.rendered"
IPV4 = re.compile(r"\b(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\b")


def twin_config(rendered: str, to_twin: Callable[[str], str | None], router: str) -> str:
    """The rendered configuration as the twin's gateway loads it."""
    text = IPV4.sub(lambda m: to_twin(m.group(1)) or m.group(1), rendered)
    out: list[str] = []
    for line in text.splitlines():
        out.append(line)
        words = line.split()
        if words == ["no", "bgp", "ebgp-requires-policy"]:
            out.append("! halab twin only: next hops on 127.0.0.0/8 are martian to FRR")
            out.append(" bgp allow-martian-nexthop")
        if len(words) == 4 and words[0] == "neighbor" and words[2] == "remote-as":
            group = words[1]
            out.append("! halab twin only: sessions from the twin address, retried quickly")
            out.append(f" neighbor {group} update-source {router}")
            out.append(f" neighbor {group} timers connect 5")
    return "\n".join(out) + "\n"


def vty_dir(directory: Path) -> Path:
    """Where bgpd's vty socket is: `vtysh --vty_socket DIR` reaches it."""
    return directory / "run"


def start_bgpd(directory: Path, config: str, router: str) -> subprocess.Popen[bytes]:
    """bgpd on the router's address with `config`, in this process's group."""
    if not Path(BGPD).exists():
        raise RuntimeError(f"{BGPD} is missing: `apt-get install frr` (make setup does)")
    run = vty_dir(directory)
    run.mkdir(parents=True, exist_ok=True)
    conf = directory / "frr.conf"
    conf.write_text(config)
    out = (directory / "bgpd.out").open("ab")
    try:
        return subprocess.Popen(
            [
                BGPD,
                "-f",
                str(conf),
                "-i",
                str(run / "bgpd.pid"),
                "--vty_socket",
                str(run),
                "-S",  # no privilege drop (frr's user may not read the twin's files)
                "-Z",  # no zebra
                "-l",
                router,  # listen only here; implies -n: no routes into this machine's table
                "-n",
                "-P",
                "0",  # no TCP vty
                "--log",
                f"file:{directory / 'bgpd.log'}",
                "--log-level",
                "info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        out.close()
