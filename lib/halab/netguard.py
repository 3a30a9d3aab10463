"""Refuse every network connection outside 127.0.0.0/8 (and ::1).

Tests and the twin must never reach the inventory's real 192.168.x addresses or the
internet. `install()` patches socket connects in this process; setting
HALAB_NET_GUARD=loopback makes `import halab` install it, which is how notebook
kernels started by tests inherit the guard.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_installed = False
refused: list[object] = []  # every refused address, for test fixtures to report


class NetworkGuardError(ConnectionRefusedError):
    pass


def allowed(address: Any) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and the like never leave the machine
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0] if isinstance(host, str) else host)
    except ValueError:
        # A name: resolve it ourselves and judge what it resolves to.
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return all(allowed((info[4][0],)) for info in infos)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _refuse_unless_allowed(address: Any) -> None:
    if not allowed(address):
        refused.append(address)
        raise NetworkGuardError(
            f"halab network guard: refused connection to {address!r} "
            "(only 127.0.0.0/8 is allowed here)"
        )


def install() -> None:
    global _installed
    if _installed:
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _refuse_unless_allowed(address)
        original_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _refuse_unless_allowed(address)
        return original_connect_ex(self, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    _installed = True
