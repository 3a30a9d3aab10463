"""Plots of benchmark results (matplotlib, no pyplot state)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from halab.transcode.results import streams_frame, summary_frame


def _series(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    frame = streams_frame(doc)
    if frame.empty:
        return []
    keys = frame[["worker", "profile", "encoder"]].drop_duplicates()
    return [(str(w), str(p), str(e)) for w, p, e in keys.itertuples(index=False, name=None)]


def speed_vs_concurrency(doc: dict[str, Any]) -> Figure:
    """Each stream's steady speed at each concurrency probed; below 1.0x the stream stutters."""
    frame = streams_frame(doc)
    series = _series(doc)
    cols = max(1, min(3, len(series)))
    rows = max(1, -(-len(series) // cols))
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows))
    for i, (worker, prof, enc) in enumerate(series or [("", "", "")]):
        ax = fig.add_subplot(rows, cols, i + 1)
        part = frame[(frame.worker == worker) & (frame.profile == prof) & (frame.encoder == enc)]
        if not part.empty:
            ok = part[part.realtime]
            bad = part[~part.realtime]
            ax.scatter(ok.concurrency, ok.speed, s=14, color="#2e7d32", label="stream, realtime")
            ax.scatter(
                bad.concurrency,
                bad.speed.fillna(0),
                s=14,
                color="#c62828",
                marker="x",
                label="stream, too slow",
            )
            slowest = part.groupby("concurrency")["min_speed"].min()
            ax.plot(
                list(slowest.index),
                list(slowest.to_numpy()),
                color="#555",
                lw=1,
                label="slowest stretch",
            )
        ax.axhline(1.0, color="#c62828", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("speed (x realtime)")
        ax.set_title(f"{worker}: {prof}\n{enc}", fontsize=9)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fps_distribution(doc: dict[str, Any]) -> Figure:
    """Per-stream fps at each concurrency: the spread shows how evenly a worker shares."""
    frame = streams_frame(doc).dropna(subset=["fps"])
    series = _series(doc)
    fig = Figure(figsize=(max(6, 4.5 * len(series)), 3.6))
    for i, (worker, prof, enc) in enumerate(series or [("", "", "")]):
        ax = fig.add_subplot(1, max(1, len(series)), i + 1)
        part = frame[(frame.worker == worker) & (frame.profile == prof) & (frame.encoder == enc)]
        levels = sorted(part.concurrency.unique())
        if levels:
            ax.boxplot(
                [part[part.concurrency == n].fps.values for n in levels],
                tick_labels=[str(n) for n in levels],
            )
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("fps per stream")
        ax.set_title(f"{worker}: {prof} ({enc})", fontsize=9)
    fig.tight_layout()
    return fig


def capacity_bars(doc: dict[str, Any], community: pd.DataFrame | None = None) -> Figure:
    """Most realtime streams per worker and profile; community numbers hatched, if given."""
    summary = summary_frame(doc)
    summary = summary[summary.status == "measured"]
    labels = [f"{r.worker}\n{r.encoder}" for r in summary.itertuples()]
    fig = Figure(
        figsize=(max(6, 1.2 * (len(summary) + (0 if community is None else len(community)))), 4)
    )
    ax = fig.add_subplot(1, 1, 1)
    profiles = sorted(summary.profile.unique())
    colours = dict(zip(profiles, ["#1565c0", "#ef6c00", "#6a1b9a", "#2e7d32"], strict=False))
    x = list(range(len(summary)))
    ax.bar(
        x, summary.max_realtime_streams.astype(float), color=[colours[p] for p in summary.profile]
    )
    ticks = labels
    if community is not None and not community.empty:
        start = len(x)
        cx = list(range(start, start + len(community)))
        ax.bar(
            cx,
            community.max_streams.fillna(0).astype(float),
            color="white",
            edgecolor=[colours.get(p, "#999") for p in community.profile],
            hatch="//",
        )
        ticks = labels + [f"{g}\n(community)" for g in community.gpu]
        x = x + cx
    ax.set_xticks(x, ticks, fontsize=7)
    ax.set_ylabel("max concurrent realtime streams")
    ax.legend(handles=[Patch(color=c, label=p) for p, c in colours.items()], fontsize=7)
    ax.set_title("Transcode capacity")
    fig.tight_layout()
    return fig
