"""Whether etcd's members hold the same data, asked of each member's own copy.

A member that crashed can come back with data that differs from its peers' (etcd 3.5.0 to
3.5.2, etcd-io/etcd#13766) while answering as healthy; the API server that reads it then
serves another cluster's view. Shared by the phase checks (halab.kube) and the twin.
"""

from __future__ import annotations

from typing import Any


def all_keys_at(revision: int) -> dict[str, Any]:
    """A range request for every key's name and last-write revision, as one member holds
    them at `revision` (serializable: that member's own data, not the leader's)."""
    return {
        "key": "AA==",  # "\0" and range_end "\0": every key
        "range_end": "AA==",
        "revision": str(revision),
        "serializable": True,
        "keys_only": True,
    }


def member_disagreement(
    revisions: dict[str, int], states: dict[str, list[tuple[str, str]]], common: int
) -> str | None:
    """None when every member's (key, mod_revision) list is the same; else who differs."""
    if len({tuple(state) for state in states.values()}) <= 1:
        return None
    held = [f"{e} holds {len(states[e])} keys (now at {revisions[e]})" for e in states]
    return f"etcd members disagree at revision {common}: {', '.join(held)}"
