"""Secrets are read from the environment by name and must never reach evidence.

`scan_*` look for the values of the inventory's secrets (and the target's) in executed
notebooks and other outputs; `redact_file` replaces them so a leak is contained as soon
as it is found.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

REDACTED = "«redacted»"
MIN_SECRET_LENGTH = 6  # shorter values would match ordinary text everywhere


def secret_values(
    env_names: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {
        name: env[name]
        for name in env_names
        if env.get(name) and len(env[name]) >= MIN_SECRET_LENGTH
    }


def leaks_in_text(text: str, values: Mapping[str, str]) -> list[str]:
    """The names of the secrets whose values appear in `text`."""
    return [name for name, value in values.items() if value in text]


def redact_file(path: Path, values: Mapping[str, str]) -> list[str]:
    """Replace every secret value in `path`; return the names that were found."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    found = leaks_in_text(text, values)
    if found:
        for name in found:
            text = text.replace(values[name], f"{REDACTED}({name})")
        path.write_text(text, encoding="utf-8")
    return found


def describe(name: str, environ: Mapping[str, str] | None = None) -> str:
    """'set' or 'not set', never the value or its length."""
    env = os.environ if environ is None else environ
    return "set" if env.get(name) else "not set"
