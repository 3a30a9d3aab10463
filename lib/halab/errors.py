"""One small hierarchy of errors, so callers catch what they can act on.

Every error carries text meant for a person: what is wrong, where, and what to do.
The CLI maps them to exit codes (2 for bad input, 1 for a failed step or check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class HalabError(Exception):
    """Base of every error the kit raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input, located as precisely as we can."""

    path: str  # YAML path such as "nodes[3].address"; "" for the whole file
    message: str
    hint: str = ""
    file: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(file)"
        text = f"{where}: {self.message}"
        if self.file:
            loc = f"{self.file}:{self.line}" if self.line else self.file
            text += f" ({loc})"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class InputError(HalabError):
    """Bad input: every problem found in one input, reported at once."""

    exit_code = 2
    what = "input"

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{source}: {count} problem{'s' if count != 1 else ''} in the {self.what}"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class InventoryError(InputError):
    """The inventory file cannot be used as it is."""

    what = "inventory"


class TargetError(InputError):
    """The target file (how to reach a cluster) cannot be used as it is."""

    what = "target file"


class StepError(HalabError):
    """A build step could not do what it had to."""


class CheckFailed(HalabError):
    """A required check failed; raised by evidence.finish() to fail a notebook run."""

    def __init__(self, notebook: str, failed: Sequence[str]) -> None:
        self.notebook = notebook
        self.failed = list(failed)
        super().__init__(
            f"{notebook}: {len(self.failed)} required check(s) failed: " + ", ".join(self.failed)
        )
