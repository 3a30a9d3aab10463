"""Phase 0's checks, offline and live against real listeners on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from halab.context import open_context
from halab.errors import TargetError
from halab.phases import phase0
from halab.target import load_target

from conftest import CLUSTER_YAML


def test_offline_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K3S_TOKEN", "K10-very-secret-token")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    ctx = open_context(CLUSTER_YAML, run_dir=tmp_path)
    checks = {c.id: c for c in phase0.all_checks(ctx)}
    assert checks["inventory-sound"].status == "pass"
    assert checks["secret-k3s_token"].status == "pass"
    assert checks["secret-flux_github_pat"].status == "warn"
    assert "K10-very-secret-token" not in repr(list(checks.values()))
    assert all(c.status == "skip" for k, c in checks.items() if k.startswith(("ssh-", "api-")))
    plan = phase0.address_plan(ctx)
    assert list(plan["address"])[:3] == ["192.168.1.1", "192.168.1.11", "192.168.1.12"]
    assert "k3s-cp3" in set(plan["name"]) and "pi" in set(plan["name"])


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """SSH on the Proxmox host and its nodes (one port, four addresses), and the VIP's API."""
    socks: list[socket.socket] = []
    port = 0
    for last in (19, 11, 12, 13):
        s = socket.socket()
        s.bind((f"127.77.0.{last}", port))
        port = s.getsockname()[1]  # the first bind picks a free port; the rest share it
        s.listen(4)
        socks.append(s)
    api = socket.socket()
    api.bind(("127.77.0.100", 0))
    api.listen(4)
    socks.append(api)
    yield socks
    for s in socks:
        s.close()


def test_live_checks_through_the_target_map(tmp_path: Path, listeners: list[socket.socket]) -> None:
    ssh_port = listeners[0].getsockname()[1]
    api_port = listeners[-1].getsockname()[1]
    target = tmp_path / "target.yaml"
    target.write_text(
        f"kind: cluster\napi_port: {api_port}\nssh: {{port: {ssh_port}}}\n"
        "addresses: {last_octet_on: 127.77.0.0/24}\n"
    )
    ctx = open_context(CLUSTER_YAML, target=target, run_dir=tmp_path)
    checks = {c.id: c for c in phase0.check_live(ctx)}
    for up in ("ssh-proxmox", "ssh-k3s-cp1", "ssh-k3s-w1", "ssh-k3s-w3", "api-vip"):
        assert checks[up].status == "pass", checks[up].detail
    for down in ("ssh-unraid", "ssh-pi", "ssh-k3s-cp2", "ssh-k3s-w2"):
        assert checks[down].status == "fail"
        assert "127.77.0." in checks[down].detail  # mapped, never 192.168.1.x
    assert "ssh-k3s-cp3" not in checks  # the Pi's node is the Pi: checked once


def test_bad_target_file(tmp_path: Path) -> None:
    target = tmp_path / "t.yaml"
    target.write_text("kind: cloud\nssh: {port: 0}\n")
    with pytest.raises(TargetError) as info:
        load_target(target)
    paths = {p.path for p in info.value.problems}
    assert paths == {"kind", "ssh.port"}


def test_the_example_target_loads() -> None:
    target = load_target(CLUSTER_YAML.with_name("target-home.example.yaml"))
    assert target.kind == "cluster" and target.ssh.user == "ubuntu"
    assert str(target.addresses.map(IPv4Address("192.168.1.12"))) == "192.168.1.12"
