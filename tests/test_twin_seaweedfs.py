"""Real SeaweedFS in the session's twin, delivered from the rendered tree: the weed
binaries find each other through cluster DNS, the planner agrees with the live master,
and a volume server's host failing behaves as SeaweedFS does."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from typing import Any

import pytest
from kubernetes import client

from halab.context import Context
from halab.phases import phase2
from halab.phases.seaweed_servers import all_servers, starts, wait_restarted
from halab.seaweed import SeaweedError, SeaweedFS
from halab.seaweed_shell import volume_list
from halab.twin import supervisor
from seaweed_storage import SHARED

from twinlab import TwinLab, eventually

pytestmark = pytest.mark.twin


@pytest.fixture(scope="module")
def storage(twin: TwinLab, tmp_path_factory: pytest.TempPathFactory) -> Context:
    """SeaweedFS, shared with test_twin_seaweed_csi (seaweed_storage)."""
    return SHARED.get(twin, tmp_path_factory.mktemp("p2"))


def seaweed(twin: TwinLab, ctx: Context) -> SeaweedFS:
    return SeaweedFS(twin.api(), ctx.inventory)


def test_the_real_weed_runs_every_server(twin: TwinLab, storage: Context) -> None:
    doc = supervisor.status(twin.dir)
    servers = {f"seaweedfs/{s.pod}" for s in all_servers(storage)}
    runs = {p["pod"]: p["runs"] for p in doc["pods"] if p["pod"] in servers}
    assert set(runs) == servers
    assert all(r.startswith("real weed 4.") for r in runs.values()), runs
    sw = seaweed(twin, storage)
    status = sw.cluster_status()
    assert status["Leader"].startswith("seaweedfs-master-") and len(status["Peers"]) == 2
    # The render gave -max from the inventory's volume_gib; the master counts those slots.
    topo = sw.topology().set_index("node")
    limit = storage.inventory.storage.seaweedfs.volume_size_limit_mb
    for node in storage.inventory.seaweed_volume_servers:
        assert topo.loc[node.name, "slots"] == node.seaweedfs.volume_gib * 1024 // limit


def test_pods_resolve_cluster_names_and_nothing_else(twin: TwinLab, storage: Context) -> None:
    core = client.CoreV1Api(twin.api())
    master = core.read_namespaced_pod("seaweedfs-master-k3s-cp1-0", "seaweedfs")
    script = (
        "dig +short seaweedfs-master-k3s-cp1.seaweedfs.svc.cluster.local; "
        "dig +short +search seaweedfs-master-k3s-cp1.seaweedfs; "
        "dig seaweedfs.com | grep -o 'status: [A-Z]*'"
    )
    ns = twin.namespace()
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "dig"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "dig", "image": "debian:12", "command": ["sh", "-c", script]}
                ],
            },
        },
    )
    eventually(
        lambda: core.read_namespaced_pod("dig", ns).status.phase in ("Succeeded", "Failed"),
        60,
        "the dig pod finished",
    )
    lines = core.read_namespaced_pod_log("dig", ns).split()
    assert lines[:2] == [master.status.pod_ip] * 2, lines
    assert "NXDOMAIN" in lines  # never forwarded off this machine


def test_planner_agrees_with_the_live_master(twin: TwinLab, storage: Context) -> None:
    check, table = phase2.check_planner(storage, seaweed(twin, storage))
    assert check.status == "pass", check.detail
    refusals = dict(zip(table["code"], table["seaweedfs"], strict=True))
    assert (
        refusals["010"]
        == "refused: No matching data node found! home:Only has 1 racks, not enough for 2."
    )
    assert refusals["002"].startswith("grown, 3 copies")
    # The throwaway collection is gone again.
    assert (
        not seaweed(twin, storage).volume_copies()["collection"].str.startswith("halab-probe").any()
    )


def test_weed_shell_sees_what_the_master_says(twin: TwinLab, storage: Context) -> None:
    sw = seaweed(twin, storage)
    fid, node = sw.assign(replication="002")
    assert sw.write_blob(node, fid, b"listed").status == 201
    listed = volume_list(sw.shell(["volume.list"]))
    from_master = sw.volume_copies()
    shell_copies = sorted(zip(listed["volume"], listed["server"].map(sw.node_of), strict=True))
    assert shell_copies == sorted(zip(from_master["volume"], from_master["node"], strict=True))
    assert set(listed["replication"]) == {"002"}
    # Pairs a follower master or a filer will not ping ("unknown ping target") are
    # SeaweedFS's own answer, kept apart; every pair that was pinged must answer.
    seen: list[Any] = []
    try:
        health = eventually(
            lambda: (
                (h := sw.health())
                and seen.append(h) is None
                and not h[0].problems
                and not h[2]
                and h
            ),
            120,
            "a clean check",
        )
    except AssertionError:
        raise AssertionError(f"still unclean: {seen[-1] if seen else 'no answer'}") from None
    check, simulated, _ = health
    assert simulated and check.ok > 0


def test_a_volume_servers_host_fails_and_comes_back(twin: TwinLab, storage: Context) -> None:
    sw = seaweed(twin, storage)
    inv = storage.inventory
    data = os.urandom(64 * 1024)
    # A file whose copies span two hosts, one of them without the leading master: its host
    # fails, a copy elsewhere is read and written through, and writes keep a leader (a new
    # one takes ~30 s to take writes: seaweedfs-real.md). Placement is random: try a few.
    leader_host = inv.node(sw.leader().removeprefix("seaweedfs-master-")).host
    for _ in range(20):
        fid, node = sw.assign(replication="002")
        assert sw.write_blob(node, fid, data).status == 201
        volume = int(fid.split(",")[0])
        copies = sw.volume_copies()
        holders = sorted(set(copies.loc[copies["volume"] == volume, "node"]))
        hosts = {inv.node(n).host for n in holders} - {leader_host}
        if hosts and len({inv.node(n).host for n in holders}) > 1:
            break
    else:
        pytest.fail("no volume with copies on two hosts in 20 writes")
    down = sorted(hosts)[0]
    alive = next(n for n in holders if inv.node(n).host != down)
    gone = {n.name for n in inv.nodes_on(down)}
    before = starts(twin.api(), gone)
    twin.fail(down)
    try:
        eventually(
            lambda: down not in set(sw.volume_copies().query(f"volume == {volume}")["host"]),
            30,
            f"the master drops {down}'s copies",
        )
        # The master hands out only the live copies.
        assert set(sw.lookup(volume)) == {n for n in holders if inv.node(n).host != down}
        read = sw.read_blob(alive, fid)
        assert (
            read.status == 200
            and hashlib.sha256(read.body).digest() == hashlib.sha256(data).digest()
        )
        # A write to the volume now short of copies is refused, in SeaweedFS's own words.
        other = f"{volume},{int(time.time() * 1000):x}{secrets.token_hex(4)}"
        refused = sw.write_blob(alive, other, b"more")
        assert refused.status >= 500, refused
        assert (
            "is less than volume" in refused.error_text()
            and "replication copy count" in refused.error_text()
        )
        # weed shell, simulating the repair SeaweedFS does not make by itself. Its pod must
        # not land on the dead host's nodes before they are seen NotReady.
        eventually(
            lambda: not any(supervisor.status(twin.dir)["nodes"].get(n) for n in gone),
            30,
            f"the nodes of {down} NotReady",
        )
        # volume.list shows the volume short of a copy (short_of_copies), so health()
        # asks volume.fix.replication for SeaweedFS's own plan: the repair names it.
        _, simulated, repairs = sw.health()
        assert simulated
        short = {r.volume: r for r in repairs}
        assert volume in short and short[volume].missing >= 1 and short[volume].plan
    finally:
        twin.recover(down)
    eventually(
        lambda: set(holders) <= set(sw.volume_copies().query(f"volume == {volume}")["node"]),
        90,
        f"{down}'s copies of volume {volume} back",
    )
    again = f"{volume},{int(time.time() * 1000):x}{secrets.token_hex(4)}"
    eventually(
        lambda: sw.write_blob(alive, again, b"back").status == 201, 60, "the volume writable again"
    )
    # The host's pods started again and every SeaweedFS pod is Ready: the next test starts
    # from a whole cluster.
    back = wait_restarted(twin.api(), gone, before, {s.pod for s in phase2.servers(storage)})
    assert "Ready after" in back.detail, back.detail


def test_errors_name_the_server(twin: TwinLab, storage: Context) -> None:
    sw = seaweed(twin, storage)
    with pytest.raises(SeaweedError) as missing:
        sw.get("/no/such/file")
    assert "seaweedfs-filer-" in str(missing.value) and "HTTP 404" in str(missing.value)
    with pytest.raises(SeaweedError) as unknown:
        sw.lookup(999999)
    assert "volume id 999999 not found" in str(unknown.value)
    nowhere = SeaweedFS(twin.api(), storage.inventory, namespace="no-such-namespace")
    with pytest.raises(SeaweedError) as unreachable:
        nowhere.cluster_status()
    assert "seaweedfs-master-k3s-cp1:9333" in str(unreachable.value)


def test_a_claim_of_a_missing_class_stays_pending(twin: TwinLab, storage: Context) -> None:
    core = client.CoreV1Api(twin.api())
    ns = twin.namespace()
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "nope"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "no-such-class",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )

    def reasons() -> list[str]:
        return [f"{e.reason}: {e.message}" for e in core.list_namespaced_event(ns).items]

    seen = eventually(reasons, 30, "an event for the claim")
    assert seen == ['ProvisioningFailed: storageclass.storage.k8s.io "no-such-class" not found']
    assert core.read_namespaced_persistent_volume_claim("nope", ns).status.phase == "Pending"
