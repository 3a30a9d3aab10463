"""The pure parts of Services, MetalLB and BGP in the twin: forwarding rules, MetalLB's
allocation rules and messages, the L2 election, the gateway's and speakers' configs (the
configs checked by FRR's and ExaBGP's own validators)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from halab.inventory import load_inventory
from halab.render.external import gateway_bgp
from halab.twin.controllers.metallb import Pool, allocate, pool_addresses
from halab.twin.exabgp import Peer, config_text, exabgp_binary
from halab.twin.gateway import twin_config
from halab.twin.kube_proxy import ready_backends, wanted_listeners
from halab.twin.kubelet.nfs import twin_mapper
from halab.twin.speaker import l2_winner, parse_hold

from conftest import CLUSTER_YAML


def svc(name: str, ns: str = "a", **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }


def test_listeners_follow_cluster_ips_node_ports_and_ready_endpoints() -> None:
    service = {
        "metadata": {"namespace": "m", "name": "web"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "127.42.0.7",
            "ports": [{"name": "http", "port": 8080, "targetPort": "http", "nodePort": 30080}],
        },
    }
    rules = wanted_listeners(service, ["127.77.0.11"], cluster_ips=True, extra=["127.77.0.150"])
    assert set(rules) == {("127.42.0.7", 8080), ("127.77.0.11", 30080), ("127.77.0.150", 8080)}
    endpoints = {
        "subsets": [
            {
                "addresses": [{"ip": "127.42.11.3"}, {"ip": "10.0.0.9"}],
                "notReadyAddresses": [{"ip": "127.42.12.4"}],
                "ports": [{"name": "http", "port": 80}],
            }
        ]
    }
    port = service["spec"]["ports"][0]  # type: ignore[index]
    # Ready ones only, and never one off loopback; the named target port resolved.
    assert ready_backends(endpoints, port) == [("127.42.11.3", 80)]
    assert ready_backends(None, port) == []


def test_metallb_allocation_and_its_refusals() -> None:
    pool = Pool("default", ["127.77.0.150", "127.77.0.151"], True, {})
    first = svc("one")
    users: dict[str, list[dict[str, Any]]] = {}
    assert allocate(first, [pool], users, lambda a: a) == (["127.77.0.150"], "")
    users["127.77.0.150"] = [first]
    assert allocate(svc("two"), [pool], users, lambda a: a) == (["127.77.0.151"], "")
    taken = svc("three", **{"metallb.io/loadBalancerIPs": "127.77.0.150"})
    ips, why = allocate(taken, [pool], users, lambda a: a)
    assert ips is None
    assert why == 'can\'t change sharing key for "a/three", address also in use by a/one'
    outside = svc("four", **{"metallb.io/loadBalancerIPs": "127.77.0.9"})
    assert (
        allocate(outside, [pool], users, lambda a: a)[1]
        == '["127.77.0.9"] is not allowed in config'
    )
    users["127.77.0.151"] = [svc("two")]
    assert allocate(svc("five"), [pool], users, lambda a: a) == (None, "no available IPs")
    # Sharing: the same key on other ports may share an address.
    key = {"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "127.77.0.150"}
    a, b = svc("six", **key), svc("seven", **key)
    b["spec"]["ports"] = [{"port": 81, "protocol": "TCP"}]
    assert allocate(b, [pool], {"127.77.0.150": [a]}, lambda x: x) == (["127.77.0.150"], "")
    same_port = svc("eight", **key)
    assert (
        "port TCP/80 is already in use"
        in allocate(same_port, [pool], {"127.77.0.150": [a]}, lambda x: x)[1]
    )


def test_pool_addresses_move_onto_the_twin() -> None:
    to_twin = twin_mapper(*_nets())
    pool = {"spec": {"addresses": ["192.168.1.150-192.168.1.152", "192.168.1.160/31"]}}
    assert pool_addresses(pool, to_twin) == [
        "127.77.0.150",
        "127.77.0.151",
        "127.77.0.152",
        "127.77.0.160",
        "127.77.0.161",
    ]


def _nets() -> tuple[Any, int, Any]:
    from ipaddress import IPv4Address

    return IPv4Address("192.168.1.0"), 24, IPv4Address("127.77.0.0")


def test_l2_election_is_deterministic_and_moves_when_the_winner_goes() -> None:
    nodes = ["a", "b", "c"]
    winner = l2_winner(nodes, "127.77.0.150")
    assert winner in nodes and l2_winner(list(reversed(nodes)), "127.77.0.150") == winner
    assert l2_winner([n for n in nodes if n != winner], "127.77.0.150") != winner
    assert l2_winner([], "127.77.0.150") is None
    assert parse_hold("1m30s") == 90 and parse_hold("9s") == 9 and parse_hold(None) == 90


def test_the_gateway_config_frr_accepts_with_the_lab_lines(tmp_path: Path) -> None:
    vtysh = shutil.which("vtysh")
    assert vtysh is not None, "vtysh is missing: `make system` installs Debian's frr"
    rendered = gateway_bgp(load_inventory(CLUSTER_YAML))
    text = twin_config(rendered, twin_mapper(*_nets()), "127.77.0.1")
    assert " neighbor 127.77.0.13 peer-group K8S" in text and "192.168.1." not in text
    assert " bgp allow-martian-nexthop" in text
    assert " neighbor K8S update-source 127.77.0.1" in text
    conf = tmp_path / "frr.conf"
    conf.write_text(text)
    done = subprocess.run([vtysh, "-C", "-f", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_speaker_config_exabgp_accepts(tmp_path: Path) -> None:
    if not Path(exabgp_binary()).exists():
        pytest.fail("exabgp is missing from the venv: `make setup` installs it")
    conf = tmp_path / "exabgp.conf"
    conf.write_text(
        config_text("127.77.0.11", [Peer("127.77.0.1", 64513, 64512, 90)], ["127.77.0.150"])
    )
    done = subprocess.run(
        [exabgp_binary(), "validate", str(conf)],
        capture_output=True,
        text=True,
        env={"exabgp_log_destination": "stdout", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    conf.write_text(conf.read_text().replace("local-as", "local-asn"))
    bad = subprocess.run(
        [exabgp_binary(), "validate", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0


def test_the_twin_refuses_a_gateway_it_could_not_place(plan_data: dict[str, Any]) -> None:
    from halab.errors import InventoryError
    from halab.twin.topology import TwinTopology

    from helpers import load

    data = copy.deepcopy(plan_data)
    data["network"]["gateway"] = "192.168.1.11"  # k3s-cp1's last octet
    with pytest.raises(InventoryError) as same:
        TwinTopology.from_inventory(load(data), Path("/nonexistent"))
    assert "network.gateway" in str(same.value)
    data = renamed(plan_data, plan_data["hosts"][0]["name"], "udm")
    with pytest.raises(InventoryError) as named:
        TwinTopology.from_inventory(load(data), Path("/nonexistent"))
    assert "the name the twin gives the BGP gateway" in str(named.value)
    # In L2 mode there is no gateway host, so neither refusal applies.
    data["network"]["metallb"] = {"mode": "l2", "pool": data["network"]["metallb"]["pool"]}
    assert TwinTopology.from_inventory(load(data), Path("/nonexistent")).gateway is None


def renamed(data: Any, old: str, new: str, key: str = "") -> Any:
    """The inventory with one host renamed wherever it is named (not where a kind is)."""
    if isinstance(data, dict):
        return {k: renamed(v, old, new, k) for k, v in data.items()}
    if isinstance(data, list):
        return [renamed(v, old, new, key) for v in data]
    return new if data == old and key != "kind" else data
