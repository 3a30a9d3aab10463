"""What a phase acts on: the inventory, the target (if any), the run directory, options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from halab.evidence import Evidence, open_evidence
from halab.inventory import Inventory, load_inventory
from halab.paths import resolve
from halab.target import Target, load_target


@dataclass
class Context:
    inventory: Inventory
    inventory_path: Path
    target: Target | None
    run_dir: Path
    allow_disruption: bool = False

    def summary(self) -> pd.DataFrame:
        """What this run will act on, for the notebook's first output."""
        rows = [
            ("inventory", str(self.inventory_path)),
            ("cluster", self.inventory.cluster.name),
            ("hosts", ", ".join(h.name for h in self.inventory.hosts)),
            ("nodes", ", ".join(n.name for n in self.inventory.nodes)),
            (
                "target",
                f"{self.target.kind} ({self.target.source})"
                if self.target
                else "none: checks that need a live cluster are skipped",
            ),
            ("run directory", str(self.run_dir)),
            ("disruption allowed", str(self.allow_disruption)),
        ]
        return pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")


def open_context(
    inventory: str | Path,
    target: str | Path | None = None,
    run_dir: str | Path = "outputs/runs/interactive",
    allow_disruption: bool = False,
) -> Context:
    inv_path = resolve(inventory)
    tgt = load_target(resolve(target)) if target else None
    out = resolve(run_dir) if not Path(run_dir).is_absolute() else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    return Context(load_inventory(inv_path), inv_path, tgt, out, allow_disruption)


def evidence_for(ctx: Context, name: str) -> Evidence:
    return open_evidence(name, ctx.run_dir)
