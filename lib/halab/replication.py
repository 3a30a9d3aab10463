"""SeaweedFS replica placement codes ("xyz"), parsed as SeaweedFS parses them.

Facts: reference/seaweedfs.md §1 (weed/storage/super_block/replica_placement.go).
x = extra copies in other data centers, y = in other racks of the same data center,
z = on other servers of the same rack.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaPlacement:
    diff_data_center: int  # x
    diff_rack: int  # y
    same_rack: int  # z

    @property
    def copies(self) -> int:
        return self.diff_data_center + self.diff_rack + self.same_rack + 1

    def __str__(self) -> str:
        return f"{self.diff_data_center}{self.diff_rack}{self.same_rack}"


class ReplicationCodeError(ValueError):
    pass


def parse_replication(code: str) -> ReplicaPlacement:
    """Parse like SeaweedFS: left-pad to three digits, refuse values above one byte.

    SeaweedFS itself only refuses characters below '0' and totals over 255; it would
    read a letter as a large digit. The kit refuses any non-digit and any string longer
    than three characters too, because such a code is always a typo.
    """
    if not isinstance(code, str):
        raise ReplicationCodeError(
            f'replication {code!r} must be a quoted string such as "001" '
            "(unquoted, YAML reads 001 as the number 1)"
        )
    if len(code) > 3:
        raise ReplicationCodeError(f"unknown replication type: {code} (at most three digits)")
    padded = code.rjust(3, "0")
    digits = []
    for char in padded:
        value = ord(char) - ord("0")
        if value < 0 or value > 9:
            raise ReplicationCodeError(f"unknown replication type: {padded}")
        digits.append(value)
    x, y, z = digits
    if 100 * x + 10 * y + z > 255:
        raise ReplicationCodeError(
            f"unexpected replication type: {padded} (placement is stored in one byte, max 255)"
        )
    return ReplicaPlacement(x, y, z)
