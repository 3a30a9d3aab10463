"""Helpers for tests that write inventories and look at the problems they cause."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from halab.errors import InventoryError, Problem
from halab.inventory import Inventory, inventory_from_data, load_inventory


def write_yaml(path: Path, data: Any) -> Path:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
    return path


def problems(path: Path) -> list[Problem]:
    try:
        load_inventory(path)
    except InventoryError as exc:
        return exc.problems
    raise AssertionError(f"{path} loaded without problems")


def problems_of_data(data: Any) -> list[Problem]:
    try:
        inventory_from_data(data)
    except InventoryError as exc:
        return exc.problems
    raise AssertionError("data loaded without problems")


def only(found: list[Problem], path: str) -> Problem:
    matching = [p for p in found if p.path == path]
    assert matching, f"no problem at {path}; got: {[str(p) for p in found]}"
    return matching[0]


def load(data: Any) -> Inventory:
    return inventory_from_data(data)


def halab_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the halab command as a user does: a subprocess, with its exit code."""
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, "-m", "halab.cli", *args],
        cwd=cwd or root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def papermill(notebook: str, output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """papermill by hand, from the project root, as the README shows it."""
    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).with_name("papermill")
    return subprocess.run(
        [str(exe), notebook, str(output), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )


def corrected(data: dict[str, Any]) -> dict[str, Any]:
    """The plan's cluster with every finding's fix applied."""
    fixed = copy.deepcopy(data)
    sw = fixed["storage"]["seaweedfs"]
    sw.update({"replication": "010", "racks": "host"})
    sw["target"] = {"replication": "010", "racks": "host"}
    for n in fixed["nodes"]:
        n["taints"] = [
            "node-role.kubernetes.io/control-plane:NoSchedule"
            if t.startswith("node-role.kubernetes.io/master")
            else t
            for t in n.get("taints", [])
        ]
        if n["k3s_role"] == "server" and not n.get("taints"):
            n["taints"] = ["node-role.kubernetes.io/control-plane:NoSchedule"]
    shared = [
        {
            "name": "plex-cache",
            "kind": "nfs",
            "export": "plexcache",
            "read_only": True,
            "mount_path": "/config/Library/Application Support/Plex Media Server/Cache",
        },
        {
            "name": "plex-drivers",
            "kind": "nfs",
            "export": "plexdrivers",
            "read_only": True,
            "mount_path": "/config/Library/Application Support/Plex Media Server/Drivers",
        },
    ]
    fixed["storage"]["nfs"]["exports"] += [
        {"name": "plexcache", "path": "/mnt/user/plexcache", "mount_path": "/c"},
        {"name": "plexdrivers", "path": "/mnt/user/plexdrivers", "mount_path": "/d"},
    ]
    for app in fixed["apps"]:
        if app["name"] in ("plex", "sonarr", "clusterplex-orchestrator"):
            app["placement"] = {
                "required": {"role": ["primary", "backup"]},
                "preferred": [{"weight": 100, "match": {"role": "primary"}}],
            }
        if app.get("role") == "worker":
            app["volumes"] = app["volumes"] + copy.deepcopy(shared)
        if app["name"] == "clusterplex-worker":
            app["resources"] = {"limits": {"gpu.intel.com/i915": 1}}
        if app["name"] == "clusterplex-orchestrator":
            app["strategy"] = "Recreate"
            app["env"] = {"WORKER_SELECTION_STRATEGY": "LOAD_TASKS"}
        if app["name"] == "sonarr":
            app["volumes"][1]["read_only"] = True
    # The SeaweedFS masters' nodes join before SeaweedFS is deployed (phase 2).
    fixed["rollout"] = [
        {"phase": 0, "nodes": ["k3s-cp1"]},
        {"phase": 1, "nodes": ["k3s-w1", "k3s-w2", "k3s-cp2", "k3s-cp3"]},
        {"phase": 7, "nodes": ["k3s-w3"]},
    ]
    fixed["claims"] = [c for c in fixed["claims"] if c["about"] != "seaweedfs_usable_gib"]
    fixed["claims"].append(
        {
            "about": "seaweedfs_usable_gib",
            "value": 159,
            "says": "about 160 GiB usable with 010 over three hosts",
        }
    )
    for c in fixed["claims"]:
        if c["about"] == "api_when_hosts_down" and len(c["hosts"]) == 2:
            c["value"] = "unavailable"
    return fixed
