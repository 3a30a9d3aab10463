"""Pure analysis of an inventory: quorum, SeaweedFS placement, failures, failover, findings."""

from halab.plan.findings import Finding
from halab.plan.report import PlanReport, plan

__all__ = ["Finding", "PlanReport", "plan"]
