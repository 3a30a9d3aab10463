"""The planner against the live SeaweedFS master for the plan's phase-6 target layout (a
rack per physical host), on a twin of its own beside the session's: "032" is refused by
both with "Only has 3 racks, not enough for 4.", and every other code is answered as the
planner predicts."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from halab.context import open_context
from halab.inventory.yaml_source import read_yaml
from halab.phases import phase2
from halab.seaweed import SeaweedFS
from halab.twin import supervisor

from helpers import write_yaml
from twinlab import ROOT, TwinLab, eventually, start

pytestmark = [pytest.mark.twin, pytest.mark.slow]


@pytest.fixture(scope="module")
def target_layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinLab]:
    directory = tmp_path_factory.mktemp("target-layout")
    data: dict[str, Any] = copy.deepcopy(read_yaml(ROOT / "params" / "cluster.yaml").data)
    data["storage"]["seaweedfs"]["racks"] = "host"  # the plan's phase-6 layout, code kept
    source = write_yaml(directory / "target-layout.yaml", data)
    try:
        yield start(directory, source, IPv4Network("127.79.0.0/24"))
    finally:
        supervisor.down(directory / "twin")


def test_the_planner_agrees_on_the_target_layout(target_layout: TwinLab, tmp_path: Path) -> None:
    ctx = open_context(
        target_layout.inventory, target=target_layout.dir / "target.yaml", run_dir=tmp_path
    )
    api = target_layout.api()
    phase2.deliver(ctx, api)
    ready = phase2.wait_running(ctx, api)
    assert "Ready after" in ready.detail, ready.detail
    sw = SeaweedFS(api, ctx.inventory)
    # Phase 2 waits for its own nodes' volume servers; the later phases' (cp2, cp3, w3)
    # register with the master a moment after: every one of them is needed here.
    every = {n.name for n in ctx.inventory.seaweed_volume_servers}
    eventually(lambda: set(sw.topology()["node"]) >= every, 60, "every volume server registered")
    assert set(sw.topology()["rack"]) == {"proxmox", "unraid", "pi"}
    check, table = phase2.check_planner(ctx, sw)
    assert check.status == "pass", check.detail
    answers = dict(zip(table["code"], table["seaweedfs"], strict=True))
    assert answers["032"] == (
        "refused: No matching data node found! home:Only has 3 racks, not enough for 4."
    )
    assert answers["010"].startswith("grown, 2 copies")
