"""One inventory's analysis, computed once and shared by the report and the findings."""

from __future__ import annotations

from functools import cached_property

from halab.inventory.model import Inventory, RackLayout
from halab.plan.failures import failure_matrix
from halab.plan.placement import REFERENCE_CODES, PlacementOutcome, evaluate


class Analysis:
    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self._placements: dict[tuple[str, RackLayout], PlacementOutcome] = {}

    def placement(self, code: str, racks: RackLayout) -> PlacementOutcome:
        key = (code, racks)
        if key not in self._placements:
            self._placements[key] = evaluate(self.inv, code, racks)
        return self._placements[key]

    @property
    def current(self) -> PlacementOutcome:
        sw = self.inv.storage.seaweedfs
        return self.placement(sw.replication, sw.racks)

    @property
    def target(self) -> PlacementOutcome | None:
        sw = self.inv.storage.seaweedfs
        return self.placement(sw.target.replication, sw.target.racks) if sw.target else None

    def placement_table(self) -> list[PlacementOutcome]:
        """Every code of the reference table, with every volume server in one rack and with
        a rack per physical host (the two layouts the plan uses), plus the inventory's own."""
        sw = self.inv.storage.seaweedfs
        wanted: list[tuple[str, RackLayout]] = [
            (code, layout) for layout in ("single", "host") for code in REFERENCE_CODES
        ]
        for extra in (sw.current, sw.target):
            if extra is not None and (extra.replication.rjust(3, "0"), extra.racks) not in wanted:
                wanted.append((extra.replication.rjust(3, "0"), extra.racks))
        return [self.placement(code, layout) for code, layout in wanted]

    @cached_property
    def matrix(self) -> list[dict[str, object]]:
        return failure_matrix(self.inv)

    def matrix_row(self, hosts: list[str]) -> dict[str, object] | None:
        for row in self.matrix:
            if set(str(row["hosts_down"]).split("+")) == set(hosts):
                return row
        return None
