"""The halab command line, run as a user runs it: a subprocess with exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import CLUSTER_YAML, ROOT
from helpers import halab_cli


def halab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return halab_cli(*args, cwd=cwd)


def test_plan_prints_tables_and_findings() -> None:
    out = halab("plan", str(CLUSTER_YAML))
    assert out.returncode == 0, out.stderr
    assert "== SeaweedFS placement per replication code ==" in out.stdout
    assert "[ERROR] gpu-resource-name" in out.stdout
    assert "Only has 3 racks, not enough for 4." in out.stdout


def test_plan_json() -> None:
    out = halab("plan", str(CLUSTER_YAML), "--json")
    assert out.returncode == 0
    doc = json.loads(out.stdout)
    assert doc["errors"] == []
    assert {r["hosts_down"] for r in doc["failure_matrix"]} >= {"proxmox", "unraid+pi"}


def test_plan_bad_inventory_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(CLUSTER_YAML.read_text().replace("vip: 192.168.1.100", "vip: 192.168.1.12"))
    out = halab("plan", str(bad))
    assert out.returncode == 2
    assert "network.vip: the VIP 192.168.1.12 is also the address of node k3s-w1" in out.stderr
    assert "Traceback" not in out.stderr
    out = halab("plan", str(bad), "--json")
    assert out.returncode == 2
    assert json.loads(out.stdout)["errors"][0]["path"] == "network.vip"


def test_plan_default_inventory_from_a_subdirectory() -> None:
    out = halab("plan", cwd=ROOT / "notebooks")
    assert out.returncode == 0, out.stderr


def test_run_unknown_phase_exits_2() -> None:
    out = halab("run", "--phases", "plan,42")
    assert out.returncode == 2
    assert "no notebook 'phase42'" in out.stderr
    assert "available: plan, phase0" in out.stderr


def test_report_on_an_empty_directory_exits_2(tmp_path: Path) -> None:
    out = halab("report", str(tmp_path))
    assert out.returncode == 2
    assert "no run evidence" in out.stderr


def test_every_command_of_the_design_is_listed() -> None:
    out = halab("--help")
    for command in ("plan", "render", "run", "bench", "twin", "report"):
        assert command in out.stdout
