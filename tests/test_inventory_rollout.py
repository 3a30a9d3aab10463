"""The rollout as data: which phase brings each node in, validated, planned and shown;
absurd sizes refused; the second inventory of another shape loads and plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from halab.inventory import load_inventory
from halab.plan import plan

from conftest import CLUSTER_YAML
from helpers import halab_cli, load, only, problems, problems_of_data
from twinlab import OTHER_SHAPE


def step(data: dict[str, Any], phase: int) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in data["rollout"] if s["phase"] == phase)
    return found


def test_the_plans_rollout() -> None:
    inv = load_inventory(CLUSTER_YAML)
    assert inv.rollout_phases == [0, 1, 6, 7]
    assert [n.name for n in inv.nodes_joining(1)] == ["k3s-w1", "k3s-w2"]
    assert [n.name for n in inv.servers_present(1)] == ["k3s-cp1"]
    assert [n.name for n in inv.servers_present(6)] == ["k3s-cp1", "k3s-cp2", "k3s-cp3"]
    assert inv.joins_in("k3s-w3") == 7


def test_no_rollout_means_every_node_is_there(data: dict[str, Any]) -> None:
    del data["rollout"]
    inv = load(data)
    assert inv.rollout_phases == [0]
    assert inv.nodes_joining(1) == [] and len(inv.nodes_present(0)) == len(inv.nodes)


def test_unknown_twice_and_missing_nodes(data: dict[str, Any]) -> None:
    step(data, 1)["nodes"].append("k3s-w9")
    step(data, 6)["nodes"].append("k3s-w1")
    step(data, 7)["nodes"] = ["k3s-w2"]
    found = problems_of_data(data)
    assert "node 'k3s-w9' is not in nodes" in only(found, "rollout[1].nodes[2]").message
    assert (
        "k3s-w1 joins in phase 6 and again in phase 1" in only(found, "rollout[2].nodes[2]").message
    )
    assert (
        "k3s-w2 joins in phase 7 and again in phase 1" in only(found, "rollout[3].nodes[0]").message
    )
    missing = only(found, "rollout")
    assert "k3s-w3 joins in no phase" in missing.message and "phase 0" in missing.hint


def test_nothing_joins_before_a_server(data: dict[str, Any]) -> None:
    data["rollout"][0]["phase"] = 2  # cp1 comes in phase 2, after w1 and w2 (phase 1)
    problem = only(problems_of_data(data), "rollout[1].nodes")
    assert "the first server (k3s_role: server) comes in phase 2" in problem.message
    assert "k3s-w1, k3s-w2" in problem.message


def test_a_phase_listed_twice(data: dict[str, Any]) -> None:
    step(data, 7)["phase"] = 6
    assert "listed twice" in only(problems_of_data(data), "rollout[3].phase").message


def test_rollout_problems_name_their_line(tmp_path: Path) -> None:
    text = CLUSTER_YAML.read_text().replace("nodes: [k3s-w1, k3s-w2]", "nodes: [k3s-w1, k3s-w7]")
    bad = tmp_path / "cluster.yaml"
    bad.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "k3s-w7" in t)
    problem = only(problems(bad), "rollout[1].nodes[1]")
    assert f"cluster.yaml:{line}" in str(problem)
    assert "use one of: k3s-cp1" in problem.hint


def test_absurd_sizes_are_refused_with_line_and_range(tmp_path: Path) -> None:
    text = (
        CLUSTER_YAML.read_text()
        .replace(
            "    cpu: 4\n    memory_gib: 8\n",
            "    cpu: 100000000000000000000000000\n    memory_gib: 8\n",
            1,
        )
        .replace("os_disk_gib: 64", "os_disk_gib: 1099511627776")
        .replace("volume_gib: 150", "volume_gib: 1e30")
    )
    bad = tmp_path / "cluster.yaml"
    bad.write_text(text)
    found = {p.path: p for p in problems(bad)}
    cpu = found["nodes[1].cpu"]
    assert "outside the plausible range 1-1024" in cpu.message and cpu.line
    assert "from 1 to 1024" in cpu.hint
    disk = found["nodes[5].os_disk_gib"]
    assert "1-1048576" in disk.message
    assert "nodes[1].seaweedfs.volume_gib" in found


def test_plan_shows_the_control_plane_after_each_phase() -> None:
    report = plan(load_inventory(CLUSTER_YAML))
    rows = {r["phase"]: r for r in report.rollout}
    assert rows[1]["control_plane"] == 1 and "API lost with proxmox down" in str(
        rows[1]["one_host_down"]
    )
    assert rows[6]["control_plane"] == 3 and rows[6]["one_host_down"] == "API stays up"
    assert "rollout-even-etcd" not in {f.id for f in report.findings}
    out = halab_cli("plan", str(CLUSTER_YAML))
    assert "== Rollout: the control plane after each phase ==" in out.stdout
    doc = json.loads(halab_cli("plan", str(CLUSTER_YAML), "--json").stdout)
    assert [r["phase"] for r in doc["rollout"]] == [0, 1, 6, 7]


def test_an_even_etcd_after_a_phase_is_warned(data: dict[str, Any]) -> None:
    # cp2 in phase 6 and cp3 only in phase 7: two members between them.
    step(data, 6)["nodes"] = ["k3s-cp2"]
    step(data, 7)["nodes"] = ["k3s-w3", "k3s-cp3"]
    report = plan(load(data))
    (finding,) = [f for f in report.findings if f.id == "rollout-even-etcd"]
    assert finding.severity == "warning" and "After phase 6 etcd has 2 members" in finding.title
    assert "API lost with" in finding.evidence


def test_the_other_shape_loads_and_plans() -> None:
    inv = load_inventory(OTHER_SHAPE)
    assert len(inv.hosts) == 5 and len(inv.servers) == 5
    assert inv.network.metallb.mode == "l2" and inv.storage.seaweedfs.replication == "020"
    assert len(inv.nodes_joining(1)) == 2 and len(inv.servers_present(6)) == 5
    report = plan(inv)
    rows = {r["phase"]: r for r in report.rollout}
    assert rows[6]["etcd"] == "5 members, needs 3"
    current = [p for p in report.placement if p["code"] == "020" and p["racks"] == "host"]
    assert current and current[0]["feasible"] and current[0]["distinct_hosts"]
    # Nothing of the plan's cluster leaks into this one's analysis.
    text = json.dumps(report.as_dict())
    for name in ("k3s-", "proxmox", "unraid", "192.168.1."):
        assert name not in text, name
