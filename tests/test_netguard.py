"""The network guard: loopback works, anything else is refused and fails the test."""

from __future__ import annotations

import socket

import pytest

from halab import netguard


def test_loopback_is_allowed() -> None:
    server = socket.socket()
    server.bind(("127.77.0.11", 0))
    server.listen(1)
    port = server.getsockname()[1]
    # The listen backlog completes the handshake; no accept() is needed.
    with socket.create_connection(("127.77.0.11", port), timeout=5):
        pass
    server.close()


@pytest.mark.parametrize("address", [("192.168.1.11", 22), ("8.8.8.8", 53), ("10.0.0.1", 80)])
def test_other_addresses_are_refused(address: tuple[str, int]) -> None:
    with pytest.raises(netguard.NetworkGuardError, match="refused connection"):
        socket.create_connection(address, timeout=1)
    # The autouse fixture would fail this test; take the record so it can pass.
    assert address in netguard.refused
    netguard.refused.clear()


def test_connect_ex_is_guarded_too() -> None:
    s = socket.socket()
    with pytest.raises(netguard.NetworkGuardError):
        s.connect_ex(("192.168.1.100", 6443))
    s.close()
    netguard.refused.clear()


def test_allowed_rules() -> None:
    assert netguard.allowed(("127.0.0.1", 1))
    assert netguard.allowed(("::1", 1, 0, 0))
    assert netguard.allowed("/run/some.sock")
    assert not netguard.allowed(("192.168.1.29", 2049))
    assert not netguard.allowed(("::ffff:192.168.1.29", 2049, 0, 0))
