"""Phase 2's data checks: a file written through one filer and read back through every
other, its copies where SeaweedFS put them (table and figure), and the planner's
placement predictions against the live master."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from halab.context import Context
from halab.evidence import Check, timed
from halab.phases.cluster_checks import Verdict, no_target
from halab.plan.analysis import Analysis
from halab.seaweed import SeaweedError, SeaweedFS

PROBE_DIR = "/halab-checks"


@dataclass
class Probe:
    """A file written through SeaweedFS, with what is known of it."""

    path: str
    sha256: str
    size: int
    volumes: list[int] = field(default_factory=list)


def write_probe(sw: SeaweedFS, size: int = 256 * 1024) -> Probe:
    data = os.urandom(size)
    path = f"{PROBE_DIR}/probe-{uuid.uuid4().hex[:8]}.bin"
    sw.put(path, data)
    volumes = sorted({int(fid.split(",", 1)[0]) for fid in sw.chunks(path)})
    return Probe(path, hashlib.sha256(data).hexdigest(), size, volumes)


def check_read_back(sw: SeaweedFS | None, probe: Probe | None) -> Check:
    title = "A file written through one filer reads back through every other"
    if sw is None or probe is None:
        return no_target("read-back", title)

    def run() -> Verdict:
        bad: list[str] = []
        good: list[str] = []
        for filer in sw.filers:
            try:
                got = hashlib.sha256(sw.get(probe.path, filer=filer)).hexdigest()
            except SeaweedError as exc:
                bad.append(f"{filer}: {exc}")
                continue
            (good if got == probe.sha256 else bad).append(
                filer if got == probe.sha256 else f"{filer}: checksum {got[:12]} differs"
            )
        if bad:
            return "fail", "; ".join(bad)
        return (
            "pass",
            f"{probe.size} bytes, sha256 {probe.sha256[:12]}..., read via {', '.join(good)}",
        )

    return timed("read-back", title, run)


def copies_table(sw: SeaweedFS) -> pd.DataFrame:
    """Every volume with where its copies are: hosts, racks, and whether they are apart."""
    copies = sw.volume_copies()
    if copies.empty:
        return pd.DataFrame(
            columns=[
                "volume",
                "collection",
                "replication",
                "copies",
                "nodes",
                "hosts",
                "racks",
                "distinct_hosts",
            ]
        )
    grouped = copies.groupby("volume")
    table = pd.DataFrame(
        {
            "collection": grouped["collection"].first(),
            "replication": grouped["replication"].first(),
            "copies": grouped.size(),
            "nodes": grouped["node"].apply(lambda s: ", ".join(sorted(s))),
            "hosts": grouped["host"].apply(lambda s: ", ".join(sorted(set(s)))),
            "racks": grouped["rack"].apply(lambda s: ", ".join(sorted(set(s)))),
        }
    ).reset_index()
    table["distinct_hosts"] = table["hosts"].str.count(",") + 1 == table["copies"]
    return table


def check_replicated(ctx: Context, sw: SeaweedFS | None, probe: Probe | None) -> list[Check]:
    """Copies as many as the replication says, judged from where SeaweedFS put them; and
    every volume whose copies share a physical host, named. The second is advisory where
    the planner already says the layout allows it (the plan's 002 in one rack)."""
    from halab.replication import parse_replication

    titles = {
        "replicated": "Data replicated: as many copies as the replication says",
        "copies-apart": "Every volume's copies sit on distinct physical hosts",
    }
    if sw is None or probe is None:
        return [no_target(cid, title) for cid, title in titles.items()]
    sw_cfg = ctx.inventory.storage.seaweedfs
    want = parse_replication(sw_cfg.replication).copies
    table: list[pd.DataFrame] = []

    def copies() -> pd.DataFrame:
        if not table:
            table.append(copies_table(sw))
        return table[0]

    def count() -> Verdict:
        mine = copies()[copies()["volume"].isin(probe.volumes)]
        if mine.empty:
            return "fail", f"the master lists no copy of volumes {probe.volumes}"
        short = mine[mine["copies"] < want]
        where = "; ".join(f"volume {r.volume}: {r.nodes}" for r in mine.itertuples())
        if not short.empty:
            return "fail", "under-replicated: " + ", ".join(
                f"volume {r.volume} has {r.copies} of {want}" for r in short.itertuples()
            ) + f" (the probe file: {where})"
        return "pass", f"{want} copies each ({sw_cfg.replication}); the probe file: {where}"

    def apart() -> Verdict:
        every = copies()
        together = every[~every["distinct_hosts"] & (every["copies"] > 1)]
        if together.empty:
            return "pass", f"{len(every)} volumes, each with its copies on distinct hosts"
        return (
            "fail",
            f"{len(together)} of {len(every)} volumes keep two copies or more on one host: "
            + (
                "; ".join(
                    f"{r.volume} on {r.hosts} ({r.nodes})" for r in together.head(8).itertuples()
                )
            ),
        )

    predicted_apart = Analysis(ctx.inventory).current.distinct_hosts
    return [
        timed("replicated", titles["replicated"], count),
        timed("copies-apart", titles["copies-apart"], apart, required=predicted_apart),
    ]


def copies_figure(sw: SeaweedFS) -> Figure:
    """Copies per volume by host and rack: the picture of where the data is."""
    copies = sw.volume_copies()
    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    if copies.empty:
        ax.text(0.5, 0.5, "no volumes yet", ha="center", va="center")
        ax.set_axis_off()
        return fig
    copies = copies.assign(where=copies["host"] + " / " + copies["rack"])
    grid = copies.pivot_table(
        index="where", columns="volume", values="node", aggfunc="count", fill_value=0
    )
    top = int(grid.values.max())
    image = ax.imshow(grid.values, aspect="auto", cmap="Blues", vmin=0, vmax=max(top, 2))
    for (row, col), count in np.ndenumerate(grid.values):
        if count:
            # Two copies or more on one host: what a single host failure can take at once.
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="#c53030" if count > 1 else "white",
                fontweight="bold",
            )
    ax.set_yticks(range(len(grid.index)), grid.index, fontsize=8)
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], fontsize=7)
    ax.set_xlabel("volume id")
    ax.set_title("SeaweedFS copies per volume, by host / rack (red: copies sharing a host)")
    fig.colorbar(image, ax=ax, label="copies", ticks=range(0, max(top, 2) + 1))
    return fig


# -- the planner against SeaweedFS itself ---------------------------------------------------


def planner_against_master(ctx: Context, sw: SeaweedFS) -> pd.DataFrame:
    """For each replication code the planner lists for the live layout, one volume grown
    in a throwaway collection (deleted afterwards): grown or refused, beside the planner."""
    sw_cfg = ctx.inventory.storage.seaweedfs
    analysis = Analysis(ctx.inventory)
    layout = sw_cfg.racks
    rows = []
    collection = f"halab-probe-{uuid.uuid4().hex[:6]}"
    try:
        for outcome in analysis.placement_table():
            if outcome.racks != layout:
                continue
            live = sw.grow(outcome.code, collection)
            predicted = " ".join(outcome.reason.split())
            agree = live.grown == outcome.feasible and (
                live.grown or _same_refusal(live.reason, predicted)
            )
            rows.append(
                {
                    "code": outcome.code,
                    "planner": "grows" if outcome.feasible else f"refuses: {predicted}",
                    "seaweedfs": f"grown, {live.copies} copies"
                    if live.grown
                    else f"refused: {live.reason}",
                    "agree": agree,
                }
            )
    finally:
        sw.delete_collection(collection)
    return pd.DataFrame(rows, columns=["code", "planner", "seaweedfs", "agree"])


def _same_refusal(live: str, predicted: str) -> bool:
    # Both come from SeaweedFS's findEmptySlotsForOneVolume text; compare the sentence.
    return " ".join(live.split()) == predicted


def check_planner(ctx: Context, sw: SeaweedFS | None) -> tuple[Check, pd.DataFrame]:
    title = "The planner's placement agrees with the live master"
    if sw is None:
        return no_target("planner-agrees", title), pd.DataFrame()
    table: list[pd.DataFrame] = []

    def run() -> Verdict:
        frame = planner_against_master(ctx, sw)
        table.append(frame)
        wrong = frame[~frame["agree"]]
        if not wrong.empty:
            return "fail", "; ".join(
                f"{r.code}: planner {r.planner}, SeaweedFS {r.seaweedfs}"
                for r in wrong.itertuples()
            )
        return (
            "pass",
            f"{len(frame)} codes with racks: {ctx.inventory.storage.seaweedfs.racks}, "
            "every answer as predicted",
        )

    check = timed("planner-agrees", title, run)
    return check, table[0] if table else pd.DataFrame()
