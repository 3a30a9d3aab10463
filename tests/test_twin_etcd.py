"""The twin's etcd: real members on the control-plane hosts' loopback addresses.

What must hold, as with k3s's embedded etcd: every acknowledged write survives the loss
and return of any one host, written under load while the host fails; with two hosts down
writes are refused (quickly, by the client's timeout) and come back with a member.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from halab.inventory import load_inventory
from halab.kube import etcd_divergence
from halab.target import EtcdAccess, Target
from halab.twin.etcd import (
    EtcdClient,
    EtcdError,
    EtcdProcess,
    etcd_binary,
    etcd_version,
    start_member,
)
from halab.twin.topology import TwinTopology, twin_address

from conftest import CLUSTER_YAML

try:
    etcd_binary()
    WHY = ""
except EtcdError as exc:
    WHY = str(exc)

pytestmark = pytest.mark.skipif(bool(WHY), reason=WHY)


class Cluster:
    def __init__(self, topo: TwinTopology) -> None:
        self.topo = topo
        self.procs: dict[str, EtcdProcess] = {}
        self.client = EtcdClient([m.client_url for m in topo.etcd], timeout=1.0)

    def start(self, host: str | None = None) -> None:
        for member in self.topo.etcd:
            if host is None or member.host == host:
                self.procs[member.name] = start_member(member, self.topo.initial_cluster)

    def fail(self, host: str) -> None:
        for member in self.topo.etcd_on(host):
            self.procs.pop(member.name).kill()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        self.procs.clear()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # Beside the session's twin (which holds 127.77.0.x:2379): a network of its own.
    topo = TwinTopology.from_inventory(
        load_inventory(CLUSTER_YAML), tmp_path / "twin", IPv4Network("127.78.0.0/24")
    )
    c = Cluster(topo)
    c.start()
    try:
        c.client.wait_healthy()
        yield c
    finally:
        c.stop()


def test_one_rule_for_every_address(tmp_path: Path) -> None:
    topo = TwinTopology.from_inventory(load_inventory(CLUSTER_YAML), tmp_path)
    assert twin_address(IPv4Address("192.168.1.12")) == IPv4Address("127.77.0.12")
    assert topo.vip == IPv4Address("127.77.0.100")
    assert topo.hosts == {
        "proxmox": IPv4Address("127.77.0.19"),
        "unraid": IPv4Address("127.77.0.29"),
        "pi": IPv4Address("127.77.0.30"),
    }
    assert [(m.name, m.host, m.client_url) for m in topo.etcd] == [
        ("k3s-cp1", "proxmox", "http://127.77.0.11:2379"),
        ("k3s-cp2", "unraid", "http://127.77.0.21:2379"),
        ("k3s-cp3", "pi", "http://127.77.0.30:2379"),
    ]


def test_members_and_leader(cluster: Cluster) -> None:
    names = sorted(m["name"] for m in cluster.client.members())
    assert names == ["k3s-cp1", "k3s-cp2", "k3s-cp3"]
    assert cluster.client.leader() in names


@pytest.mark.parametrize("host", ["proxmox", "unraid", "pi"])
def test_acknowledged_writes_survive_a_host_failing_under_load(cluster: Cluster, host: str) -> None:
    acked: dict[str, str] = {}
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            key, value = f"/load/{i:06d}", f"v{i}"
            try:
                cluster.client.put(key, value)
                acked[key] = value  # only what etcd acknowledged counts
            except EtcdError:
                pass  # a write in flight during the election may fail; it was not acked
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(acked) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        cluster.fail(host)  # SIGKILL: the member gets no chance to hand over leadership
        before = len(acked)
        while len(acked) < before + 50 and time.monotonic() < deadline + 20:
            time.sleep(0.01)
        assert len(acked) >= before + 50, "writes did not resume with one host down"
    finally:
        stop.set()
        thread.join()
    cluster.start(host)
    for member in cluster.topo.etcd_on(host):
        cluster.client.wait_member(member.client_url, timeout=60)
    cluster.client.wait_healthy()
    for member in cluster.topo.etcd:  # ask every member, the recovered one included
        one = EtcdClient([member.client_url], timeout=5.0)
        deadline = time.monotonic() + 30
        stored: dict[str, str] = {}
        problem = ""
        while time.monotonic() < deadline:
            try:
                stored = one.range_prefix("/load/")
                problem = ""
            except EtcdError as exc:  # a busy machine may keep a member slow for a moment
                problem = str(exc)
            if not problem and all(stored.get(k) == v for k, v in acked.items()):
                break
            time.sleep(0.2)
        missing = [k for k, v in acked.items() if stored.get(k) != v]
        assert not problem, f"{member.name} did not answer: {problem}"
        assert not missing, f"{member.name} lost {len(missing)} of {len(acked)} acknowledged writes"
    # Not only the acknowledged keys: every member holds the same history.
    found = cluster.client.divergence()
    assert found is None, found


def test_a_release_that_loses_consistency_when_killed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "etcd"
    fake.write_text('#!/bin/sh\necho "etcd Version: 3.5.1"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("HALAB_ETCD", str(fake))
    with pytest.raises(EtcdError, match=r"3\.5\.1.*etcd-io/etcd#13766.*etcd-server"):
        etcd_binary()
    fake.write_text('#!/bin/sh\necho "etcd Version: 3.5.17"\n')
    etcd_version.cache_clear()
    assert etcd_binary() == str(fake)


def test_two_hosts_down_refuses_writes_then_recovers(cluster: Cluster) -> None:
    revision = cluster.client.put("/before", "kept")
    cluster.fail("proxmox")
    cluster.fail("unraid")
    start = time.monotonic()
    with pytest.raises(EtcdError, match="failed on every endpoint"):
        cluster.client.put("/during", "refused")
    assert time.monotonic() - start < 10  # the client's timeout, not etcd's seconds-long wait
    cluster.start("unraid")
    cluster.client.wait_healthy()
    assert cluster.client.get("/before") == "kept"
    assert cluster.client.put("/after", "ok") > revision


def test_members_that_hold_different_data_are_named(cluster: Cluster, tmp_path: Path) -> None:
    # A member that came back different cannot be made on purpose with a sound etcd; two
    # clusters' members side by side disagree the same way, and are what it must catch.
    other = Cluster(
        TwinTopology.from_inventory(
            load_inventory(CLUSTER_YAML), tmp_path / "other", IPv4Network("127.78.1.0/24")
        )
    )
    other.start()
    try:
        other.client.wait_healthy()
        cluster.client.put("/only/in/the/first", "a")
        other.client.put("/only/in/the/second", "b")
        whole = Target(kind="twin", etcd=EtcdAccess(endpoints=cluster.client.endpoints))
        assert etcd_divergence(whole) is None
        assert cluster.client.divergence() is None
        stranger = other.client.endpoints[0]
        mixed = Target(
            kind="twin", etcd=EtcdAccess(endpoints=[cluster.client.endpoints[0], stranger])
        )
        found = etcd_divergence(mixed)
        assert found is not None and "disagree" in found and stranger in found
    finally:
        other.stop()
