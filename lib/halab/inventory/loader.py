"""load_inventory(): YAML file -> Inventory, or InventoryError with every problem.

Two passes: the schema (shapes and types, all errors at once), then the cluster's
own rules on a well-typed model (again all at once). The rules need a typed model,
so they run only when the schema holds; the message says so.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from halab.errors import InventoryError, Problem
from halab.inventory.model import Inventory
from halab.inventory.rules import check_rules
from halab.inventory.yaml_source import (
    PathKey,
    YamlReadError,
    YamlSource,
    format_path,
    read_yaml,
)

_FRIENDLY_TYPES = {
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "string_type": "is not text",
    "ip_v4_address": "is not an IPv4 address",
    "ip_v4_network": "is not an IPv4 network (write it as 192.168.1.0/24)",
}

_HINTS = {
    "ip_v4_address": "write four numbers from 0 to 255, e.g. 192.168.1.10",
    "ip_v4_network": "write the network address and prefix, e.g. 192.168.1.0/24",
    "int_parsing": "write a plain whole number without units",
    "string_pattern_mismatch": "names are lower-case letters, digits and '-' (RFC 1123), "
    "e.g. k3s-w1",
}


def load_inventory(path: str | Path) -> Inventory:
    """Load and check an inventory file; raise InventoryError listing every problem."""
    try:
        source = read_yaml(path)
    except YamlReadError as exc:
        raise InventoryError(str(path), [exc.problem]) from None
    return inventory_from_source(source, str(path))


def inventory_from_data(data: Any, name: str = "<data>") -> Inventory:
    """Check already-parsed data (tests, generated inventories); no line numbers."""
    return inventory_from_source(YamlSource(file=name, data=data), name)


def inventory_from_source(source: YamlSource, label: str) -> Inventory:
    data = source.data
    if data is None:
        raise InventoryError(
            label,
            [Problem("", "the file is empty", "start from params/cluster.yaml", file=source.file)],
        )
    if not isinstance(data, dict):
        raise InventoryError(
            label,
            [
                Problem(
                    "",
                    f"the top level is a {_kind(data)}, not a mapping of sections",
                    "start with keys such as cluster:, hosts:, nodes:",
                    file=source.file,
                    line=1,
                )
            ],
        )
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems = _schema_problems(exc, source)
        raise InventoryError(label, problems) from None
    violations = check_rules(inventory)
    if violations:
        problems = [
            Problem(format_path(path), message, hint, file=source.file, line=source.line_of(path))
            for path, message, hint in violations
        ]
        raise InventoryError(label, problems)
    return inventory


def _schema_problems(exc: ValidationError, source: YamlSource) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        path = _data_path(source.data, tuple(error["loc"]))
        text = format_path(path)
        if text in seen:
            # A union (str | int | float) reports once per member; one message is enough.
            continue
        seen.add(text)
        message, hint = _describe(error, path)
        problems.append(Problem(text, message, hint, file=source.file, line=source.line_of(path)))
    # A misspelt required key shows up twice: unknown 'memroy_gib', missing 'memory_gib'.
    # The did-you-mean already says it all, so the "missing" half is dropped.
    suggested = set()
    for p in problems:
        if p.hint.startswith("did you mean '"):
            parent, _, _ = p.path.rpartition(".")
            key = p.hint.split("'")[1]
            suggested.add(f"{parent}.{key}" if parent else key)
    return [p for p in problems if not (p.path in suggested and "is missing" in p.message)]


def _data_path(data: Any, loc: tuple[Any, ...]) -> PathKey:
    """Keep the parts of a pydantic loc that index into the data (drop union tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not path_is_tag(part):
            path.append(part)  # a missing key: name it so the message can say which
            node = None
        # else: a validator tag such as 'str' or 'function-after[...]'
    return tuple(path)


def path_is_tag(part: str) -> bool:
    return part in {"str", "int", "float", "bool", "[key]"} or "[" in part


def _describe(error: Any, path: PathKey) -> tuple[str, str]:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        key = path[-1] if path else "?"
        return f"required key {key!r} is missing", f"add {key}: to this section"
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        known = _fields_at(path[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else (f"known keys here: {', '.join(known)}" if known else "remove it")
        )
        return f"unknown key {key!r}", hint
    if kind in _FRIENDLY_TYPES:
        return f"{value!r} {_FRIENDLY_TYPES[kind]}", _HINTS.get(kind, "")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{value!r} is not allowed here; expected {expected}", ""
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not have the expected form", _HINTS[kind]
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {_kind(value)}", ""
    if kind == "list_type":
        return f"expected a list, got {_kind(value)}", "write items on lines starting with '- '"
    if kind == "value_error":
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        return message, ""
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        low, high = _bounds(path)
        if low is not None and high is not None:
            return (
                f"{value!r} is outside the plausible range {low}-{high}",
                f"write a value from {low} to {high} (check the unit and the digits)",
            )
        return f"{value!r}: {error['msg'].lower()}", ""
    if kind in ("too_short", "too_long"):
        return f"{value!r}: {error['msg'].lower()}", ""
    return f"{value!r}: {error['msg']}", ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "mapping",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)


def _bounds(path: PathKey) -> tuple[float | None, float | None]:
    """The lower and upper limits the model sets on the field at `path`."""
    if not path or not isinstance(path[-1], str):
        return None, None
    model = _unwrap(_annotation_at(path[:-1]))
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None, None
    field = model.model_fields.get(path[-1])
    low = high = None
    for item in field.metadata if field else []:
        low = getattr(item, "ge", getattr(item, "gt", low))
        high = getattr(item, "le", getattr(item, "lt", high))
    return low, high


def _fields_at(path: PathKey) -> list[str]:
    """The keys the model accepts at `path` (for did-you-mean)."""
    annotation = _unwrap(_annotation_at(path))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _annotation_at(path: PathKey) -> Any:
    """The type the model expects at `path`, or None where it expects nothing."""
    annotation: Any = Inventory
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            annotation = field.annotation if field else None
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return None
    return annotation


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / X | None -> X."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else members[0]
    return annotation
