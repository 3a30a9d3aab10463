"""The journal: what an experiment is about to change and how to undo it, written before
the change, beside the target file (`target.yaml` -> `target.journal.json`).

Each undo action is plain data a later process can carry out, so a run killed outright
(the kernel died, the laptop slept) is undone by `halab restore`, and no experiment starts
while a journal is there. The file is replaced atomically, and removed only once every
action has been carried out.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halab.errors import StepError
from halab.target import Target

Action = dict[str, Any]


class JournalError(StepError):
    pass


def journal_path(target: Target) -> Path:
    if not target.source:
        raise JournalError("the target was not read from a file: no place for a journal")
    source = Path(target.source)
    return source.with_name(f"{source.stem}.journal.json")


@dataclass
class Journal:
    path: Path

    @classmethod
    def for_target(cls, target: Target) -> Journal:
        return cls(journal_path(target))

    def read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            doc: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise JournalError(
                f"{self.path}: unreadable journal ({exc}); undo by hand what it names, "
                "then delete it"
            ) from None
        return doc

    def refuse_if_pending(self) -> None:
        doc = self.read()
        if doc is not None:
            raise JournalError(
                f"experiment {doc.get('experiment')!r} (started {doc.get('started')}) was "
                f"interrupted and left changes: {describe(doc)}. Run `halab restore "
                f"--target {self._target_hint()}` first (it undoes them and removes "
                f"{self.path.name})"
            )

    def _target_hint(self) -> str:
        return str(self.path.with_name(self.path.name.removesuffix(".journal.json") + ".yaml"))

    def begin(self, experiment: str, fault: str, inventory: Path) -> None:
        self.refuse_if_pending()
        self._write(
            {
                "experiment": experiment,
                "fault": fault,
                "inventory": str(inventory.resolve()),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "pid": os.getpid(),
                "undo": [],
            }
        )

    def will(self, action: Action) -> None:
        """Record an undo action before the change it undoes is made."""
        doc = self.read()
        if doc is None:
            raise JournalError(f"{self.path}: no experiment begun")
        doc["undo"].append(action)
        self._write(doc)

    def done(self, action: Action) -> None:
        """An undo action carried out: struck from the journal."""
        doc = self.read()
        if doc is None:
            return
        doc["undo"] = [a for a in doc["undo"] if a != action]
        self._write(doc)

    def close(self) -> None:
        doc = self.read()
        if doc is not None and doc["undo"]:
            raise JournalError(f"{self.path}: not closed, undo still due: {describe(doc)}")
        self.path.unlink(missing_ok=True)

    def _write(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(scratch, self.path)


def describe(doc: dict[str, Any]) -> str:
    actions = doc.get("undo") or []
    return "; ".join(action_text(a) for a in reversed(actions)) or "nothing left to undo"


def action_text(action: Action) -> str:
    kind = action.get("do")
    if kind == "uncordon":
        return f"uncordon {action['node']}"
    if kind == "scale":
        return (
            f"scale {action['kind']} {action['namespace']}/{action['name']} to {action['replicas']}"
        )
    if kind == "power-on":
        return f"power {action['name']} on"
    if kind == "exports":
        return f"put {action['host']}'s /etc/exports back and run exportfs -ra"
    return json.dumps(action)
