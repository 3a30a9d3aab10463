"""Read a YAML file into plain Python data plus a map from data path to line.

ruamel.yaml's round-trip loader keeps the position of every key and item, which is
what lets an error say `cluster.yaml:57` instead of only a path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from halab.errors import Problem

PathKey = tuple[str | int, ...]


@dataclass
class YamlSource:
    """Plain data read from a YAML file and the line of every path in it."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None


class YamlReadError(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def read_yaml(path: str | Path) -> YamlSource:
    """Load `path`; raise YamlReadError with one located Problem when it cannot be read."""
    p = Path(path)
    name = p.name
    if not p.exists():
        raise YamlReadError(
            Problem(
                "",
                f"file not found: {p}",
                "give the path of an inventory such as params/cluster.yaml",
                file=str(p),
            )
        )
    if p.is_dir():
        raise YamlReadError(
            Problem(
                "",
                f"{p} is a directory, not a file",
                "name the YAML file inside it, e.g. params/cluster.yaml",
                file=str(p),
            )
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlReadError(
            Problem("", f"cannot read {p}: {exc}", "save the file as UTF-8 text", file=name)
        ) from exc
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str = "<string>") -> YamlSource:
    yaml = YAML(typ="rt", pure=True)
    try:
        node = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlReadError(
            Problem(
                "",
                f"YAML syntax error: {what}",
                "check indentation, colons and quotes on that line",
                file=name,
                line=line,
            )
        ) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        # ruamel raises plain errors for a few malformed scalars (e.g. bad dates).
        raise YamlReadError(
            Problem("", f"YAML could not be read: {exc}", "quote unusual values", file=name)
        ) from exc
    source = YamlSource(file=name, data=None)
    try:
        source.data = _plain(node, (), source.lines, _Budget(), frozenset())
    except _TooBig as exc:
        raise YamlReadError(
            Problem(
                "",
                str(exc),
                "an inventory is a few hundred lines; remove the aliases "
                "that expand into each other",
                file=name,
            )
        ) from exc
    return source


class _TooBig(Exception):
    pass


class _Budget:
    """Aliases can expand exponentially (or into themselves); cap the work."""

    limit = 200_000

    def __init__(self) -> None:
        self.used = 0

    def spend(self) -> None:
        self.used += 1
        if self.used > self.limit:
            raise _TooBig(f"YAML expands to more than {self.limit} values")


def _plain(
    node: Any, path: PathKey, lines: dict[PathKey, int], budget: _Budget, parents: frozenset[int]
) -> Any:
    """Convert ruamel's commented containers to dict/list, recording key lines."""
    budget.spend()
    if isinstance(node, CommentedMap | CommentedSeq):
        if id(node) in parents:
            raise _TooBig("YAML alias refers to itself")
        parents = parents | {id(node)}
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        if path not in lines and node.lc.line is not None:
            lines[path] = node.lc.line + 1
        for raw_key in node:
            # Complex keys (mappings, floats, dates) become text so paths stay printable.
            key = raw_key if isinstance(raw_key, str | int) else str(raw_key)
            child = (*path, key)
            try:
                pos = node.lc.key(raw_key)
                lines[child] = pos[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            out[key] = _plain(node[raw_key], child, lines, budget, parents)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        if path not in lines and node.lc.line is not None:
            lines[path] = node.lc.line + 1
        for index, item in enumerate(node):
            child = (*path, index)
            try:
                pos = node.lc.item(index)
                lines[child] = pos[0] + 1
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            items.append(_plain(item, child, lines, budget, parents))
        return items
    if isinstance(node, str):
        return str(node)  # drop ruamel's scalar string subclasses
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def format_path(path: PathKey) -> str:
    """("nodes", 3, "address") -> "nodes[3].address"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
