"""Label and field selectors, parsed as the API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from halab.twin.api.status import bad_request

Matcher = Callable[[dict[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


LabelTest = Callable[[dict[str, str]], bool]


def _equals(key: str, value: str, want: bool) -> LabelTest:
    return lambda labels: (labels.get(key) == value) == want


def _member(key: str, allowed: set[str], want: bool) -> LabelTest:
    return lambda labels: (labels.get(key) in allowed) == want


def _exists(key: str, want: bool) -> LabelTest:
    return lambda labels: (key in labels) == want


def label_matcher(text: str | None) -> Matcher:
    if not text:
        return lambda _obj: True
    tests: list[LabelTest] = []
    for part in _split(text):
        eq = _EQ.match(part)
        if eq:
            key, op, value = eq.groups()
            tests.append(_equals(key, value, op != "!="))
            continue
        st = _SET.match(part)
        if not st:
            raise bad_request(f'unable to parse requirement: invalid label selector "{text}"')
        neg, key, op, values = st.groups()
        if op:
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            tests.append(_member(key, allowed, op == "in"))
        else:
            tests.append(_exists(key, not neg))

    def match(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def dotted(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_matcher(text: str | None) -> Matcher:
    if not text:
        return lambda _obj: True
    tests: list[tuple[str, bool, str]] = []
    for part in _split(text):
        eq = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not eq:
            raise bad_request(f'invalid field selector "{text}": expected field=value')
        key, op, value = eq.groups()
        tests.append((key, op != "!=", value))

    def match(obj: dict[str, Any]) -> bool:
        return all((dotted(obj, k) == v) == want for k, want, v in tests)

    return match


def selector_to_text(selector: dict[str, Any] | None) -> str:
    """A LabelSelector object (matchLabels / matchExpressions) as selector text."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def matches_selector(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object against labels; an empty selector matches everything."""
    return label_matcher(selector_to_text(selector))({"metadata": {"labels": labels}})
