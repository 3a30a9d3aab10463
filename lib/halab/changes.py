"""What a build step did: `Change(step, changed, detail)`, shown as a table.

Build steps are idempotent operations (pyinfra's sense): each returns the changes it made,
or a Change with changed=False saying the thing was already so. A dry run changes nothing
and says, in `detail`, the command it would have sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Change:
    step: str
    changed: bool
    detail: str
    dry_run: bool = False
    failed: bool = False  # the step did not get there (a wait that ran out, say)


def changes_table(changes: list[Change]) -> pd.DataFrame:
    rows = [
        {
            "step": c.step,
            "result": "would change"
            if c.dry_run
            else ("failed" if c.failed else "changed" if c.changed else "already so"),
            "detail": c.detail,
        }
        for c in changes
    ]
    return pd.DataFrame(rows, columns=["step", "result", "detail"])
