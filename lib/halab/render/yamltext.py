"""Objects to YAML text, the same bytes on every run (key order as built, no timestamps)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from ruamel.yaml import YAML

Obj = dict[str, Any]


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096  # long strings (shell commands, descriptions) stay on one line
    return yaml


def dump_all(objs: Iterable[Obj]) -> str:
    """A multi-document YAML file, documents separated by ---."""
    parts = []
    for obj in objs:
        buf = io.StringIO()
        _yaml().dump(obj, buf)
        parts.append(buf.getvalue())
    return "---\n" + "---\n".join(parts) if parts else ""


def dump(obj: Obj) -> str:
    buf = io.StringIO()
    _yaml().dump(obj, buf)
    return buf.getvalue()


def load_all(text: str) -> list[Obj]:
    return [d for d in _yaml().load_all(text) if d is not None]
