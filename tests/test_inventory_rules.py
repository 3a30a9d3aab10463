"""Every inventory rule, broken on purpose in an otherwise sound copy of the plan's cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from halab.inventory import load_inventory

from conftest import CLUSTER_YAML
from helpers import only, problems, problems_of_data, write_yaml


def node(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in data["nodes"] if n["name"] == name)


def test_the_plans_inventory_loads() -> None:
    inv = load_inventory(CLUSTER_YAML)
    assert [h.name for h in inv.hosts] == ["proxmox", "unraid", "pi"]
    assert len(inv.nodes) == 6
    assert [n.name for n in inv.servers] == ["k3s-cp1", "k3s-cp2", "k3s-cp3"]
    assert str(inv.network.vip) == "192.168.1.100"
    assert inv.node("k3s-cp3").arch == "arm64"
    assert str(inv.node("k3s-w3").taints[0]) == "gpu=true:NoSchedule"
    assert inv.storage.seaweedfs.replication == "002"
    assert inv.storage.seaweedfs.target is not None
    assert inv.storage.seaweedfs.target.replication == "032"


def test_problem_names_path_line_and_hint(tmp_path: Path) -> None:
    text = CLUSTER_YAML.read_text().replace("address: 192.168.1.13", "address: 192.168.1.300")
    bad = tmp_path / "cluster.yaml"
    bad.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "192.168.1.300" in t)
    problem = only(problems(bad), "nodes[2].address")
    assert str(problem).startswith(
        f"nodes[2].address: '192.168.1.300' is not an IPv4 address (cluster.yaml:{line})"
    )
    assert "e.g. 192.168.1.10" in problem.hint


def test_duplicate_names(data: dict[str, Any]) -> None:
    node(data, "k3s-w2")["name"] = "k3s-w1"
    problem = only(problems_of_data(data), "nodes[4].name")
    assert "'k3s-w1' is used twice" in problem.message


def test_duplicate_addresses(data: dict[str, Any]) -> None:
    node(data, "k3s-w2")["address"] = "192.168.1.12"
    assert "already used by node k3s-w1" in only(problems_of_data(data), "nodes[4].address").message


def test_bare_metal_node_may_share_its_hosts_address(data: dict[str, Any]) -> None:
    assert node(data, "k3s-cp3")["address"] == "192.168.1.30"  # the Pi and its node
    node(data, "k3s-cp3")["kind"] = "vm"
    assert "already used by host pi" in only(problems_of_data(data), "nodes[5].address").message


def test_address_outside_subnet(data: dict[str, Any]) -> None:
    node(data, "k3s-w1")["address"] = "192.168.2.12"
    assert (
        "outside the subnet 192.168.1.0/24"
        in only(problems_of_data(data), "nodes[1].address").message
    )


def test_vip_must_not_be_a_host(data: dict[str, Any]) -> None:
    data["network"]["vip"] = "192.168.1.11"
    assert "also the address of node k3s-cp1" in only(problems_of_data(data), "network.vip").message


def test_pool_must_not_hold_the_vip_or_hosts(data: dict[str, Any]) -> None:
    data["network"]["metallb"]["pool"] = ["192.168.1.10-192.168.1.120"]
    found = [p for p in problems_of_data(data) if p.path == "network.metallb.pool[0]"]
    messages = " ".join(p.message for p in found)
    assert "contains the VIP" in messages
    assert "192.168.1.11 (node k3s-cp1)" in messages


def test_pool_entries_must_not_overlap(data: dict[str, Any]) -> None:
    data["network"]["metallb"]["pool"] = ["192.168.1.150-192.168.1.200", "192.168.1.190/28"]
    assert "overlaps" in only(problems_of_data(data), "network.metallb.pool[1]").message


def test_bad_pool_syntax(data: dict[str, Any]) -> None:
    data["network"]["metallb"]["pool"] = ["192.168.1.150..200"]
    problem = only(problems_of_data(data), "network.metallb.pool")
    assert "not an address range" in problem.message


@pytest.mark.parametrize("servers", [["k3s-cp1", "k3s-cp2"], ["k3s-cp1"]])
def test_control_plane_must_be_odd_and_three(data: dict[str, Any], servers: list[str]) -> None:
    for n in data["nodes"]:
        n["k3s_role"] = "server" if n["name"] in servers else "agent"
    message = only(problems_of_data(data), "nodes").message
    assert ("odd" in message) if len(servers) % 2 == 0 else ("HA needs 3" in message)


def test_node_host_must_exist(data: dict[str, Any]) -> None:
    node(data, "k3s-w2")["host"] = "unrade"
    problem = only(problems_of_data(data), "nodes[4].host")
    assert "'unrade' is not in hosts" in problem.message
    assert "proxmox" in problem.hint


def test_gpu_node_needs_a_gpu_host(data: dict[str, Any]) -> None:
    del data["hosts"][0]["gpu"]
    assert (
        "has no GPU" in " ".join(p.message for p in problems_of_data(data))
        or "has none to pass through" in only(problems_of_data(data), "nodes[2].gpu").message
    )


def test_pi_nodes_are_arm64(data: dict[str, Any]) -> None:
    node(data, "k3s-cp3")["arch"] = "amd64"
    assert "set arch: arm64" in only(problems_of_data(data), "nodes[5].arch").hint


def test_unschedulable_workload(data: dict[str, Any]) -> None:
    worker = next(a for a in data["apps"] if a["name"] == "clusterplex-worker")
    worker["placement"]["tolerations"] = []
    problem = only(problems_of_data(data), "apps[2].placement")
    assert "fits no node" in problem.message
    assert "k3s-w3: taint gpu=true:NoSchedule not tolerated" in problem.message


def test_workload_asking_more_than_any_node_has(data: dict[str, Any]) -> None:
    data["apps"][0]["resources"] = {"requests": {"memory": "64Gi"}}
    assert "insufficient memory" in only(problems_of_data(data), "apps[0].placement").message


def test_unknown_extended_resource(data: dict[str, Any]) -> None:
    data["apps"][0]["resources"] = {"limits": {"example.com/fpga": 1}}
    assert (
        "node offers no example.com/fpga"
        in only(problems_of_data(data), "apps[0].placement").message
    )


@pytest.mark.parametrize(
    "code,words",
    [
        ("0020", "at most three digits"),
        ("300", "unexpected replication type: 300"),
        ("0a1", "unknown replication type: 0a1"),
        (2, "must be a quoted string"),
    ],
)
def test_replication_codes(data: dict[str, Any], code: object, words: str) -> None:
    data["storage"]["seaweedfs"]["replication"] = code
    found = problems_of_data(data)
    assert words in " ".join(p.message for p in found), [str(p) for p in found]


def test_even_seaweedfs_masters(data: dict[str, Any]) -> None:
    node(data, "k3s-cp3")["seaweedfs"]["master"] = False
    message = only(problems_of_data(data), "nodes").message
    assert "Only odd number of masters are supported" in message


def test_unknown_key_did_you_mean(data: dict[str, Any]) -> None:
    node(data, "k3s-w1")["memroy_gib"] = node(data, "k3s-w1").pop("memory_gib")
    found = problems_of_data(data)
    problem = only(found, "nodes[1].memroy_gib")
    assert problem.message == "unknown key 'memroy_gib'"
    assert problem.hint == "did you mean 'memory_gib'?"
    # the matching "required key 'memory_gib' is missing" would only repeat it
    assert [p.path for p in found] == ["nodes[1].memroy_gib"]


def test_unknown_top_level_key(data: dict[str, Any]) -> None:
    data["netwrok"] = data.pop("network")
    found = problems_of_data(data)
    assert only(found, "netwrok").hint == "did you mean 'network'?"
    assert [p.path for p in found] == ["netwrok"]


def test_nfs_volume_names_a_known_export(data: dict[str, Any]) -> None:
    data["apps"][0]["volumes"][1]["export"] = "movies"
    assert "media, transcode" in only(problems_of_data(data), "apps[0].volumes[1].export").hint


def test_claims_name_known_hosts_and_apps(data: dict[str, Any]) -> None:
    data["claims"][-1]["app"] = "plexx"
    data["claims"][-1]["hosts"] = ["proxmocks"]
    found = problems_of_data(data)
    assert "'plexx' is not in apps" in only(found, f"claims[{len(data['claims']) - 1}].app").message
    assert only(found, f"claims[{len(data['claims']) - 1}].hosts[0]")


def test_every_problem_at_once(data: dict[str, Any], tmp_path: Path) -> None:
    node(data, "k3s-w1")["address"] = "192.168.1.21"
    data["network"]["vip"] = "192.168.1.30"
    data["storage"]["seaweedfs"]["replication"] = "999"
    found = problems(write_yaml(tmp_path / "c.yaml", data))
    paths = {p.path for p in found}
    # the second owner of an address is the one reported
    assert {"nodes[3].address", "network.vip", "storage.seaweedfs.replication"} <= paths
    assert all(p.line for p in found), [str(p) for p in found]
