"""What a notebook shows of experiments before and after: the planner's expectation for
each, from where the apps run now, and every sample and event kept beside the evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from halab.context import Context
from halab.experiments.expect import outlook
from halab.experiments.model import Experiment
from halab.experiments.runner import Outcome, controller_lease, followed_now, nodes_now


def expectations(ctx: Context, api: Any, experiments: list[Experiment]) -> pd.DataFrame:
    """Per experiment and followed app: the nodes lost, where it runs now and next, the
    predicted seconds and why, and the longest the experiment may take (its abort time)."""
    rows = []
    for exp in experiments:
        running = followed_now(api, ctx, exp) if api is not None else {}
        seen = (
            outlook(ctx.inventory, exp, running, nodes_now(api), controller_lease(api))
            if api is not None
            else outlook(ctx.inventory, exp, running)
        )
        for app in seen.apps or (None,):
            rows.append(
                {
                    "experiment": exp.id,
                    "nodes lost": ", ".join(seen.down_nodes) or "none",
                    "SeaweedFS": seen.seaweed_text,
                    "app": app.app if app else "-",
                    "runs on now": (app.before or "not running") if app else "-",
                    "then on": (" or ".join(app.next_nodes) or "nowhere") if app else "-",
                    "predicted s": app.predicted_s if app else None,
                    "why": app.why if app else "",
                    "aborted after s": exp.abort_after_s,
                }
            )
    return pd.DataFrame(rows)


def keep(ctx: Context, notebook: str, outcome: Outcome) -> list[Path]:
    """Every probe sample and every event of an experiment, as CSV beside the evidence."""
    if not outcome.samples:
        return []
    stem = f"{notebook}.{outcome.experiment.id}"
    samples = ctx.run_dir / f"{stem}.samples.csv"
    events = ctx.run_dir / f"{stem}.timeline.csv"
    outcome.samples_frame().to_csv(samples, index=False)
    outcome.timeline.to_csv(events, index=False)
    return [samples, events]
