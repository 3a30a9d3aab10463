"""plan(): an inventory's whole analysis as tables, findings and JSON (pure)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from halab.inventory.model import Inventory
from halab.plan.analysis import Analysis
from halab.plan.failover import predictions
from halab.plan.findings import Finding, find_all
from halab.plan.quorum import rollout_quorum


@dataclass
class PlanReport:
    inventory: Inventory
    quorum: list[dict[str, object]]
    placement: list[dict[str, object]]
    failure_matrix: list[dict[str, object]]
    failover: list[dict[str, object]]
    findings: list[Finding]
    rollout: list[dict[str, object]]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def frames(self) -> dict[str, pd.DataFrame]:
        findings = pd.DataFrame(
            [f.as_dict() for f in self.findings],
            columns=["id", "severity", "title", "evidence", "fix", "plan_says", "section"],
        )
        return {
            "quorum": pd.DataFrame(self.quorum),
            # SeaweedFS's multi-line refusals read better on one line in a table.
            "placement": pd.DataFrame(self.placement).assign(
                reason=lambda f: f["reason"].str.split().str.join(" ")
            ),
            "failure_matrix": pd.DataFrame(self.failure_matrix),
            "failover": pd.DataFrame(self.failover),
            "findings": findings,
            "rollout": pd.DataFrame(
                self.rollout,
                columns=[
                    "phase",
                    "joins",
                    "control_plane",
                    "etcd",
                    "one_host_down",
                    "seaweedfs_masters",
                ],
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "halab.plan/v1",
            "cluster": self.inventory.cluster.name,
            "errors": [],  # inventory errors never reach a report; see halab.cli
            "warnings": [f.title for f in self.warnings],
            "quorum": self.quorum,
            "rollout": self.rollout,
            "placement": self.placement,
            "failure_matrix": self.failure_matrix,
            "failover": self.failover,
            "findings": [f.as_dict() for f in self.findings],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=str)


def plan(inv: Inventory) -> PlanReport:
    analysis = Analysis(inv)
    matrix = analysis.matrix
    quorum = [
        {
            "hosts_down": row["hosts_down"],
            "etcd": row["etcd"],
            "api_via_vip": row["api_via_vip"],
            "seaweedfs_masters": row["seaweedfs_masters"],
        }
        for row in matrix
    ]
    placement = [asdict(p) for p in analysis.placement_table()]
    return PlanReport(
        inv, quorum, placement, matrix, predictions(inv), find_all(analysis), rollout_quorum(inv)
    )
