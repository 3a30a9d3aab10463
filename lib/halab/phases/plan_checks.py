"""Checks of the plan notebook: the HA properties that must hold, and every finding.

Required checks are the ones a rollout cannot go on without. Findings are advisory:
an error-level finding shows as a failed check (red) without failing the run, because
reporting where the plan is wrong is this notebook's job.
"""

from __future__ import annotations

from halab.evidence import Check
from halab.plan import PlanReport
from halab.plan.quorum import api_available


def property_checks(report: PlanReport) -> list[Check]:
    inv = report.inventory
    single = [(h.name, api_available(inv, {h.name})) for h in inv.hosts]
    lost = [name for name, (up, _) in single if not up]
    checks = [
        Check(
            "api-survives-any-host",
            "The API stays up through the VIP when any one host fails",
            "fail" if lost else "pass",
            f"lost with {', '.join(lost)} down"
            if lost
            else "; ".join(f"{name}: {text}" for name, (_, text) in single),
        )
    ]
    sw = inv.storage.seaweedfs
    current = next(
        p
        for p in report.placement
        if p["code"] == sw.replication.rjust(3, "0") and p["racks"] == sw.racks
    )
    checks.append(
        Check(
            "seaweedfs-current-placeable",
            f"SeaweedFS can place volumes with {sw.replication} (racks: {sw.racks})",
            "pass" if current["feasible"] else "fail",
            f"{current['volumes']} volumes, {current['usable_gib']} GiB usable"
            if current["feasible"]
            else str(current["reason"]),
        )
    )
    return checks


def finding_checks(report: PlanReport) -> list[Check]:
    checks = []
    for i, f in enumerate(report.findings):
        checks.append(
            Check(
                f"finding-{f.id}-{i}",
                f.title,
                "fail" if f.severity == "error" else "warn",
                f"{f.evidence}\nfix: {f.fix}",
                data=f.as_dict(),
                required=False,
            )
        )
    if not report.findings:
        checks.append(
            Check("findings", "The plan's claims hold for this inventory", "pass", "no findings")
        )
    return checks
