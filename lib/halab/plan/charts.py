"""Charts of a plan report: capacity per replication code, and the failure matrix at a glance."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from halab.plan.report import PlanReport


def capacity_chart(report: PlanReport) -> Figure:
    """Usable GiB per code and rack layout; hatched bars do not keep copies on distinct hosts."""
    rows = [p for p in report.placement if p["racks"] in ("single", "host")]
    codes = list(dict.fromkeys(str(p["code"]) for p in rows))
    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.38
    for k, (layout, colour) in enumerate((("single", "#8fb3d9"), ("host", "#5a9e6f"))):
        for i, code in enumerate(codes):
            match = [p for p in rows if p["code"] == code and p["racks"] == layout]
            if not match:
                continue
            p = match[0]
            x = i + (k - 0.5) * width
            if not p["feasible"]:
                ax.text(x, 4, "✗", ha="center", color="#c0392b", fontsize=11)
                continue
            ax.bar(
                x,
                cast(float, p["usable_gib"]),
                width,
                color=colour,
                edgecolor="#333",
                hatch="" if p["distinct_hosts"] else "//",
            )
    for claim in report.inventory.claims:
        if claim.about == "seaweedfs_usable_gib":
            ax.axhline(float(claim.value), ls="--", color="#7f4f00", lw=1)
            ax.text(
                len(codes) - 0.5,
                float(claim.value),
                f"plan: ~{claim.value} GB",
                va="bottom",
                ha="right",
                fontsize=8,
                color="#7f4f00",
            )
    ax.set_xticks(range(len(codes)), codes)
    ax.set_xlabel("replication code")
    ax.set_ylabel("usable GiB")
    ax.set_title("SeaweedFS usable capacity by replication code (✗ = cannot be placed)")
    ax.legend(
        handles=[
            Patch(fc="#8fb3d9", ec="#333", label="one rack (plan's interim)"),
            Patch(fc="#5a9e6f", ec="#333", label="rack per physical host"),
            Patch(fc="white", ec="#333", hatch="//", label="copies may share a host"),
        ],
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def failure_heatmap(report: PlanReport) -> Figure:
    """Green works, red does not: one row per failure set, one column per service."""
    Row = dict[str, object]
    columns: list[tuple[str, Callable[[Row], bool]]] = [
        ("etcd quorum", lambda r: "NO quorum" not in str(r["etcd"])),
        ("API via VIP", lambda r: r["api_via_vip"] == "up"),
        ("SeaweedFS read", lambda r: bool(r["seaweedfs_readable"])),
        ("SeaweedFS write", lambda r: bool(r["seaweedfs_writable"])),
        ("NFS media", lambda r: r["nfs_media"] == "up"),
        ("GPU worker", lambda r: r["gpu_workers"] != "none"),
    ]
    rows = report.failure_matrix
    grid = [[1.0 if ok(r) else 0.0 for _, ok in columns] for r in rows]
    fig = Figure(figsize=(7, 0.5 * len(rows) + 1.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, cmap=ListedColormap(["#e74c3c", "#2ecc71"]), vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), [c for c, _ in columns], rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), [f"{r['hosts_down']} down" for r in rows])
    ax.set_title("What survives each failure")
    fig.tight_layout()
    return fig
