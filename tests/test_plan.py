"""The planner on the plan's own cluster: its three failure scenarios, findings, timings."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from halab.inventory import load_inventory
from halab.plan import plan
from halab.plan.failover import predictions
from halab.plan.quorum import api_available, etcd_quorum

from conftest import CLUSTER_YAML
from helpers import corrected, load


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    return plan(load_inventory(CLUSTER_YAML))


def row(report, hosts: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return next(r for r in report.failure_matrix if r["hosts_down"] == hosts)


def ids(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.id for f in report.findings}


def test_quorum_for_every_single_and_double_failure(report) -> None:  # type: ignore[no-untyped-def]
    inv = report.inventory
    for host in ("proxmox", "unraid", "pi"):
        assert etcd_quorum(inv, {host}).holds
        assert api_available(inv, {host})[0]
    for pair in ({"proxmox", "unraid"}, {"proxmox", "pi"}, {"unraid", "pi"}):
        assert not etcd_quorum(inv, pair).holds
        up, text = api_available(inv, pair)
        assert not up and "VIP is released" in text
    assert [r["hosts_down"] for r in report.quorum] == [
        "proxmox",
        "unraid",
        "pi",
        "proxmox+unraid",
        "proxmox+pi",
        "unraid+pi",
    ]


def test_scenario_1_proxmox_down(report) -> None:  # type: ignore[no-untyped-def]
    r = row(report, "proxmox")
    assert r["api_via_vip"] == "up"
    assert r["seaweedfs_readable"] is False  # all three copies may sit on cp1, w1, w3
    assert "all 3 copies" in str(r["seaweedfs_read"])
    assert r["gpu_workers"] == "clusterplex-worker-unraid"
    assert r["app:plex"].startswith("moves to any of k3s-cp2, k3s-w2")
    assert r["app:clusterplex-worker"].startswith("cannot run")
    assert r["nfs_media"] == "up"


def test_scenario_2_unraid_down(report) -> None:  # type: ignore[no-untyped-def]
    r = row(report, "unraid")
    assert r["nfs_media"] == "DOWN"
    assert r["seaweedfs_readable"] is True
    assert r["app:plex"] == "stays on k3s-w1 (NFS media offline)"
    assert r["gpu_workers"] == "clusterplex-worker"
    assert r["app:clusterplex-worker-unraid"] == "down with its host"


def test_scenario_3_pi_down(report) -> None:  # type: ignore[no-untyped-def]
    r = row(report, "pi")
    assert r["seaweedfs_readable"] is True and r["seaweedfs_writable"] is True
    assert r["app:sonarr"] == "stays on k3s-w1"
    assert r["gpu_workers"] == "clusterplex-worker, clusterplex-worker-unraid"


def test_two_hosts_down_nothing_reschedules(report) -> None:  # type: ignore[no-untyped-def]
    r = row(report, "proxmox+unraid")
    assert r["api_via_vip"] == "DOWN"
    assert r["app:plex"].startswith("stopped")
    assert "no master leader" in str(r["seaweedfs_read"])


def test_placement_numbers(report) -> None:  # type: ignore[no-untyped-def]
    table = {(p["code"], p["racks"]): p for p in report.placement}
    assert table[("002", "single")]["volumes"] == 173  # 520 slots / 3
    assert table[("002", "single")]["distinct_hosts"] is False
    assert table[("020", "host")]["volumes"] == 10  # the Pi's 10 GB bound it
    assert table[("020", "host")]["distinct_hosts"] is True
    assert table[("032", "host")]["feasible"] is False
    assert table[("032", "host")]["reason"].endswith("Only has 3 racks, not enough for 4.")


EXPECTED = {
    "seaweedfs-placement",
    "seaweedfs-copies-same-host",
    "seaweedfs-readable-when-host-down",
    "seaweedfs-capacity",
    "api-when-hosts-down",
    "workload-fallback",
    "gpu-resource-name",
    "node-role-names",
    "clusterplex-worker-selection",
    "orchestrator-single-replica",
    "clusterplex-hw-shared-dirs",
    "nfs-write-to-ro-export",
    "rollout-seaweedfs-masters",
}


def test_the_plan_has_the_known_mistakes(report) -> None:  # type: ignore[no-untyped-def]
    assert ids(report) == EXPECTED
    capacity = [f for f in report.findings if f.id == "seaweedfs-capacity"]
    assert [f.plan_says for f in capacity] == [
        "Total Capacity: ~500GB usable (after 3x replication)"
    ]
    assert "020: 9.8 GiB" in capacity[0].evidence


def test_a_corrected_inventory_clears_every_finding(plan_data: dict[str, Any]) -> None:
    report = plan(load(corrected(plan_data)))
    assert report.findings == [], [f.title for f in report.findings]
    r = next(r for r in report.failure_matrix if r["hosts_down"] == "proxmox")
    assert (
        r["app:plex"] == "moves to k3s-w2 (its SeaweedFS volume may be unreadable)"
        or r["app:plex"] == "moves to k3s-w2"
    )
    assert r["seaweedfs_readable"] is True


def _app(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in data["apps"] if a["name"] == name)


def _set_sw(data: dict[str, Any], **values: Any) -> None:
    data["storage"]["seaweedfs"].update(values)


# One plan mistake put back into the corrected inventory -> the finding that must return.
BREAKERS: dict[str, Any] = {
    "seaweedfs-placement": lambda d: d["storage"]["seaweedfs"].update(
        target={"replication": "032", "racks": "host"}
    ),
    "seaweedfs-copies-same-host": lambda d: _set_sw(d, replication="002", racks="single"),
    "seaweedfs-readable-when-host-down": lambda d: _set_sw(d, replication="002", racks="single"),
    "seaweedfs-capacity": lambda d: d["claims"].append(
        {"about": "seaweedfs_usable_gib", "value": 500, "says": "~500GB"}
    ),
    "api-when-hosts-down": lambda d: d["claims"].append(
        {
            "about": "api_when_hosts_down",
            "hosts": ["proxmox", "pi"],
            "value": "read-only",
            "says": "read-only",
        }
    ),
    "workload-fallback": lambda d: (
        _app(d, "sonarr").update(
            placement={"preferred": [{"weight": 100, "match": {"role": "primary"}}]}
        ),
        d["nodes"][3].update(taints=[]),
    ),  # k3s-cp2 untainted, as in the plan
    "gpu-resource-name": lambda d: _app(d, "clusterplex-worker").update(
        resources={"limits": {"intel.com/gpu": 1}}
    ),
    "node-role-names": lambda d: d["nodes"][1]["labels"].update(
        {"node-role.kubernetes.io/worker": "true"}
    ),
    "clusterplex-worker-selection": lambda d: _app(d, "clusterplex-orchestrator").update(env={}),
    "orchestrator-single-replica": lambda d: _app(d, "clusterplex-orchestrator").update(replicas=2),
    "clusterplex-hw-shared-dirs": lambda d: _app(d, "clusterplex-worker-unraid").update(
        volumes=_app(d, "clusterplex-worker-unraid")["volumes"][:3]
    ),
    "nfs-write-to-ro-export": lambda d: _app(d, "sonarr")["volumes"][1].update(read_only=False),
    "rollout-seaweedfs-masters": lambda d: d.update(
        rollout=[
            {"phase": 0, "nodes": ["k3s-cp1"]},
            {"phase": 1, "nodes": ["k3s-w1", "k3s-w2"]},
            {"phase": 6, "nodes": ["k3s-cp2", "k3s-cp3"]},
            {"phase": 7, "nodes": ["k3s-w3"]},
        ]
    ),
}


@pytest.mark.parametrize("finding", sorted(EXPECTED))
def test_each_mistake_brings_back_its_finding(plan_data: dict[str, Any], finding: str) -> None:
    fixed = corrected(plan_data)
    BREAKERS[finding](fixed)
    assert finding in {f.id for f in plan(load(fixed)).findings}


def test_failover_predictions(report) -> None:  # type: ignore[no-untyped-def]
    rows = {r["workload"]: r for r in predictions(report.inventory)}
    # Kubernetes 1.32: 50 s grace + 300 s toleration; Plex's RWO claim adds the 6 min detach.
    assert rows["plex"]["defaults_s"] == 50 + 300 + 360
    assert rows["clusterplex-orchestrator"]["defaults_s"] == 350
    assert rows["clusterplex-orchestrator"]["tuned_s"] == 50
    assert rows["API VIP (kube-vip)"]["inventory_s"] == 6


def test_failover_honours_tuning_and_statefulsets(plan_data: dict[str, Any]) -> None:
    data = copy.deepcopy(plan_data)
    data["cluster"]["kubernetes_version"] = "1.31"
    data["cluster"]["timing"].update(
        {"node_monitor_grace_period_s": 20, "default_unreachable_toleration_s": 30}
    )
    data["apps"][4]["kind"] = "statefulset"
    rows = {r["workload"]: r for r in predictions(load(data))}
    assert rows["clusterplex-orchestrator"]["defaults_s"] == 40 + 300  # before 1.32
    assert rows["clusterplex-orchestrator"]["inventory_s"] == 50
    assert rows["sonarr"]["inventory_s"] is None  # a StatefulSet waits for a person


def test_json_is_one_document(report) -> None:  # type: ignore[no-untyped-def]
    import json

    doc = json.loads(report.to_json())
    assert set(doc) >= {
        "errors",
        "warnings",
        "quorum",
        "placement",
        "failure_matrix",
        "failover",
        "findings",
    }
