"""What `weed shell` prints, parsed: its exit code says nothing (a bad flag exits 0 too).

The texts are SeaweedFS 4.x's, as run in the twin (`volume.list`, `cluster.check`,
`volume.fix.replication` without -apply, which only simulates: seaweedfs-real.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

_VOLUME = re.compile(r"volume Id:(\d+), Size:(\d+), ReplicaPlacement:(\d+), Collection:([^,]*),")
_FILES = re.compile(r"FileCount:(\d+),.*ReadOnly:(true|false)")
_CHECK = re.compile(r"^checking (.+?) to (.+?) \.\.\. (.*)$")
_UNDER = re.compile(r"^volume (\d+) replication (\d+), but under replicated \+(\d+)")
_PLAN = re.compile(r"^replicating volume (\d+) (\d+) from (\S+) to dataNode (\S+)")


def volume_list(text: str) -> pd.DataFrame:
    """One row per volume copy, with its data center, rack and server."""
    rows = []
    dc = rack = server = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("DataCenter "):
            dc = line.split()[1]
        elif line.startswith("Rack "):
            rack = line.split()[1]
        elif line.startswith("DataNode "):
            server = line.split()[1]
        elif match := _VOLUME.search(line):
            files = _FILES.search(line)
            rows.append(
                {
                    "data_center": dc,
                    "rack": rack,
                    "server": server,
                    "volume": int(match.group(1)),
                    "size": int(match.group(2)),
                    "replication": match.group(3).rjust(3, "0"),
                    "collection": match.group(4),
                    "files": int(files.group(1)) if files else 0,
                    "read_only": bool(files and files.group(2) == "true"),
                }
            )
    columns = ["data_center", "rack", "server", "volume", "size", "replication", "collection"]
    return pd.DataFrame(rows, columns=[*columns, "files", "read_only"])


def short_of_copies(copies: pd.DataFrame) -> list[int]:
    """The volumes of a `volume_list` with fewer copies than their replication asks for."""
    from halab.replication import parse_replication

    short = []
    for volume, rows in copies.groupby("volume"):
        wanted = parse_replication(str(rows["replication"].iloc[0])).copies
        if len(rows) < wanted:
            short.append(int(str(volume)))
    return sorted(short)


@dataclass(frozen=True)
class ClusterCheck:
    ok: int
    problems: list[str]  # "from -> to: what went wrong"
    # Pairs the asking server refused to ping because it does not track the target: since
    # 4.4x a server pings only members it knows (no SSRF), and a follower master or a filer
    # may not know a volume server that registered with the leader later. Not checked,
    # rather than broken.
    unknown: list[str] = field(default_factory=list)


def cluster_check(text: str) -> ClusterCheck:
    """Each `checking A to B ... ok` pair; "unknown ping target" apart; the rest problems."""
    ok, problems, unknown = 0, [], []
    for line in text.splitlines():
        match = _CHECK.match(line.strip())
        if not match:
            continue
        pair = f"{match.group(1)} -> {match.group(2)}"
        if match.group(3).startswith("ok"):
            ok += 1
        elif "unknown ping target" in match.group(3):
            unknown.append(pair)
        else:
            problems.append(f"{pair}: {match.group(3)}")
    return ClusterCheck(ok, problems, unknown)


@dataclass(frozen=True)
class Repair:
    volume: int
    replication: str
    missing: int
    plan: list[str]  # "from X to Y", as the simulation would copy


def fix_replication(text: str) -> tuple[bool, list[Repair]]:
    """(simulated, the under-replicated volumes with what a repair would copy)."""
    simulated = "simulation mode" in text
    found: dict[int, Repair] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _UNDER.match(line):
            vid = int(match.group(1))
            found[vid] = Repair(vid, match.group(2).rjust(3, "0"), int(match.group(3)), [])
        elif (match := _PLAN.match(line)) and int(match.group(1)) in found:
            found[int(match.group(1))].plan.append(f"from {match.group(3)} to {match.group(4)}")
    return simulated, list(found.values())
