"""Helpers for tests that write inventories and look at the problems they cause."""

from __future__ import annotations

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
