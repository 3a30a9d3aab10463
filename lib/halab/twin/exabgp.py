"""A real BGP speaker for one twin node: ExaBGP (PyPI `exabgp`), announcing /32s.

One ExaBGP process per node while that node's MetalLB speaker pod runs, with a neighbour
block per BGPPeer, sessions opened from the node's own address; routes are static in its
configuration, and a change is a rewrite and a SIGUSR1 (ExaBGP re-reads its file and sends
the difference: a withdraw reaches the router within a few seconds). It is a child of the
node's process, in its process group: pulling the host's plug kills it and the router
sees the session close at once. Facts: reference/bgp-real.md.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("halab.twin.exabgp")
RESEND_S = 3.0


@dataclass(frozen=True)
class Peer:
    address: str  # the router's address (on the twin's network)
    my_asn: int
    peer_asn: int
    hold_time: int  # seconds; 0 or at least 3, as BGP allows


def exabgp_binary() -> str:
    return str(Path(sys.executable).with_name("exabgp"))


def config_text(local: str, peers: list[Peer], routes: list[str]) -> str:
    """ExaBGP's configuration: every route to every peer, next hop the node itself."""
    blocks = []
    statics = "".join(f"        route {r}/32 next-hop self;\n" for r in sorted(routes))
    for peer in sorted(peers, key=lambda p: p.address):
        blocks.append(
            f"neighbor {peer.address} {{\n"
            f"    router-id {local};\n"
            f"    local-address {local};\n"
            f"    local-as {peer.my_asn};\n"
            f"    peer-as {peer.peer_asn};\n"
            f"    hold-time {peer.hold_time};\n"
            "    family { ipv4 unicast; }\n"
            f"    static {{\n{statics}    }}\n"
            "}\n"
        )
    return "\n".join(blocks)


class BgpSpeaker:
    """ExaBGP for one node: started on the first peer, reloaded on a change, stopped."""

    def __init__(self, local: str, directory: Path) -> None:
        self.local = local
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.text = ""
        self.resend_at = 0.0

    @property
    def config(self) -> Path:
        return self.dir / "exabgp.conf"

    def apply(self, peers: list[Peer], routes: list[str]) -> None:
        """Make the running speaker announce exactly `routes` to `peers`."""
        if not peers:
            self.stop()
            return
        text = config_text(self.local, peers, routes)
        alive = self.proc is not None and self.proc.poll() is None
        if alive and text == self.text:
            if self.resend_at and time.monotonic() >= self.resend_at:
                # Once more after a change: a signal that lands while ExaBGP is still
                # reloading for the one before may go unseen; a reload of an unchanged
                # file sends nothing.
                self.resend_at = 0.0
                self._reload()
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text)
        self.text = text
        if alive:
            self._reload()
            self.resend_at = time.monotonic() + RESEND_S
            return
        self._start()

    def _reload(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)  # re-read the file, send the difference

    def _start(self) -> None:
        env = {
            **os.environ,
            # Run as whoever runs the twin: as root ExaBGP would otherwise drop to `nobody`
            # and lose its own files.
            "exabgp_daemon_user": "root" if os.geteuid() == 0 else getpass.getuser(),
            "exabgp_log_destination": str(self.dir / "exabgp.log"),
            "exabgp_api_cli": "false",
            "EXABGP_ENVFILE": "/dev/null",
        }
        out = (self.dir / "exabgp.out").open("ab")
        try:
            self.proc = subprocess.Popen(
                [exabgp_binary(), "server", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            out.close()
        log.info("%s: ExaBGP started (pid %d)", self.local, self.proc.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log.info("%s: ExaBGP stopped", self.local)
        self.proc = None
        self.text = ""
