"""Helpers for tests that write inventories and look at the problems they cause."""

from __future__ import annotations

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
