"""Every phase that exists, against a twin of the second inventory (five hosts, five
servers, two workers, other names, another subnet, MetalLB L2), as against the plan's.
Its twin runs beside the session's on 127.78.0.0/24."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from halab.inventory import load_inventory
from halab.twin import supervisor

from twinlab import OTHER_NETWORK, OTHER_SHAPE, ROOT, TwinLab, start

pytestmark = [pytest.mark.twin, pytest.mark.notebook]

PLAN_NAMES = ("k3s-", "proxmox", "unraid", "192.168.1.", "127.77.")


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinLab]:
    directory = tmp_path_factory.mktemp("other-twin")
    try:
        yield start(directory, OTHER_SHAPE, OTHER_NETWORK)
    finally:
        supervisor.down(directory / "twin")


def run(*args: str, out: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    done = subprocess.run(
        [sys.executable, "-m", "halab.cli", "run", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    runs = sorted(out.iterdir())
    return done, runs[-1]


def checks_of(run_dir: Path, name: str) -> list[dict[str, Any]]:
    doc = json.loads((run_dir / f"{name}.checks.json").read_text())
    found: list[dict[str, Any]] = doc["checks"]
    return found


def test_the_other_twin_is_its_own_cluster(other: TwinLab) -> None:
    target = (other.dir / "target.yaml").read_text()
    assert "last_octet_on: 127.78.0.0/24" in target
    doc = supervisor.status(other.dir)
    assert doc["vip"] == "127.78.0.60"
    assert sorted(doc["etcd"]["members"]) == sorted(
        n.name for n in load_inventory(OTHER_SHAPE).servers
    )


def test_phases_0_1_and_6_on_the_other_shape(other: TwinLab, tmp_path: Path) -> None:
    # Phase 0 offline: its live part needs SSH on every host, which the twin has not yet.
    done, offline = run("--phases", "0", "--inventory", str(other.inventory), out=tmp_path / "a")
    assert done.returncode == 0, done.stdout + done.stderr
    done, live = run(
        "--phases", "1,6", "--inventory", str(other.inventory),
        "--target", str(other.dir / "target.yaml"), "--allow-disruption",
        out=tmp_path / "b",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    phase0 = {c["id"]: c for c in checks_of(offline, "phase0")}
    assert phase0["inventory-sound"]["detail"].startswith("5 hosts, 7 nodes (5 control plane)")
    assert {"ssh-atlas", "ssh-worker-jade", "ssh-eos"} <= set(phase0)
    assert "ssh-cyclops" in phase0 and "ssh-eos" in phase0  # bare-metal: checked once each
    phase1 = {c["id"]: c for c in checks_of(live, "phase1")}
    assert set(phase1) == {
        f"{kind}-{node}"
        for kind in ("ready", "labels", "test-pod")
        for node in ("worker-amber", "worker-jade")
    }
    # worker-jade carries a taint and a label set after join; both are checked.
    assert "accel=yes:NoSchedule" in phase1["labels-worker-jade"]["detail"]
    assert "zone=right" in phase1["labels-worker-jade"]["detail"]
    phase6 = {c["id"]: c for c in checks_of(live, "phase6")}
    assert phase6["etcd-quorum"]["title"] == "etcd has 5 members and one leader"
    assert phase6["control-plane"]["title"] == "5 control-plane nodes Ready"
    assert phase6["api-survives-host-loss"]["status"] == "pass"
    every = list(phase1.values()) + list(phase6.values()) + list(phase0.values())
    failed = [(c["id"], c["detail"]) for c in every if c["status"] == "fail"]
    assert not failed, failed
    for check in every:
        text = f"{check['id']} {check['title']} {check['detail']}"
        assert not any(name in text for name in PLAN_NAMES), text
    assert all(c["seconds"] > 0 for c in list(phase1.values()) + list(phase6.values()))
