"""`halab plan` as text tables for a terminal."""

from __future__ import annotations

import textwrap

import pandas as pd

from halab.plan.report import PlanReport

_WIDTH = 110


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    with pd.option_context(
        "display.width", _WIDTH, "display.max_colwidth", 60, "display.max_columns", 20
    ):
        return frame[columns].to_string(index=False)


def render_text(report: PlanReport) -> str:
    frames = report.frames()
    inv = report.inventory
    out = [
        f"halab plan: {inv.cluster.name} ({len(inv.hosts)} hosts, {len(inv.nodes)} nodes, "
        f"{len(inv.servers)} control plane)",
        "",
    ]
    out += [
        "== Control plane and SeaweedFS masters, by failed hosts ==",
        _table(frames["quorum"], ["hosts_down", "etcd", "api_via_vip", "seaweedfs_masters"]),
        "",
    ]
    out += [
        "== Rollout: the control plane after each phase ==",
        _table(
            frames["rollout"],
            ["phase", "joins", "control_plane", "etcd", "one_host_down", "seaweedfs_masters"],
        ),
        "",
    ]
    placement = frames["placement"].assign(
        reason=lambda f: f["reason"].str.replace("\n", " ", regex=False)
    )
    out += [
        "== SeaweedFS placement per replication code ==",
        _table(
            placement,
            [
                "code",
                "racks",
                "copies",
                "feasible",
                "volumes",
                "usable_gib",
                "distinct_hosts",
                "worst_host",
                "reason",
            ],
        ),
        "",
    ]
    out.append("== Failure matrix ==")
    for row in report.failure_matrix:
        out.append(f"-- {row['hosts_down']} down ({row['nodes_down']})")
        keys = [
            "etcd",
            "api_via_vip",
            "seaweedfs_masters",
            "seaweedfs_read",
            "seaweedfs_write",
            "nfs_media",
            "gpu_workers",
        ]
        keys += [k for k in row if k.startswith("app:")]
        for key in keys:
            out.append(f"   {key.removeprefix('app:'):<26} {row[key]}")
    out.append("")
    out += [
        "== Predicted failover (seconds until the workload runs elsewhere) ==",
        _table(frames["failover"], ["workload", "kind", "defaults_s", "inventory_s", "tuned_s"]),
        "",
    ]
    out.append(f"== Findings: {len(report.errors)} errors, {len(report.warnings)} warnings ==")
    for f in report.findings:
        out.append(f"[{f.severity.upper()}] {f.id}: {f.title}")
        if f.plan_says:
            out.append(
                textwrap.indent(
                    f"plan says: {f.plan_says}" + (f" ({f.section})" if f.section else ""), "    "
                )
            )
        out.append(
            textwrap.fill(
                f.evidence, _WIDTH, initial_indent="    evidence: ", subsequent_indent="    "
            )
        )
        out.append(
            textwrap.fill(f.fix, _WIDTH, initial_indent="    fix: ", subsequent_indent="    ")
        )
    return "\n".join(out)
