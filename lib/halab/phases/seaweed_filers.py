"""Phase 2's build step for the filers: every filer sees what was written through every
other, and a filer that does not is restarted.

SeaweedFS filers learn their peers from the master: each lists the filers registered
when it starts, then follows the master's updates. A filer that registers between those
two steps can be missed, and the filer that missed it never subscribes to its metadata:
what is written through the missed filer never shows through this one (seen on the twin
with the real weed 4.48: a file written through k3s-cp1's filer answered 404 through
k3s-cp2's for the whole run, its log listing every peer but cp1). SeaweedFS does not
repair it; restarting the blind filer does (it lists its peers again, all of them now).
The step writes a marker through each filer, reads every marker through every filer, and
restarts the filers still blind after a while; the markers are removed.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from halab.changes import Change
from halab.kube import wait_for
from halab.phases.seaweed_data import PROBE_DIR
from halab.phases.seaweed_servers import wait_ready
from halab.render.storage import NS
from halab.seaweed import SeaweedError, SeaweedFS

SETTLE_S = 20.0  # a new file reaches the other filers within a second or two here


def blind_spots(sw: SeaweedFS, markers: dict[str, str]) -> dict[str, list[str]]:
    """Reader filer -> the filers whose marker it cannot read."""
    out: dict[str, list[str]] = {}
    for reader in sw.filers:
        for writer, path in markers.items():
            try:
                sw.get(path, filer=reader)
            except SeaweedError:
                out.setdefault(reader, []).append(writer)
    return out


def _settled(sw: SeaweedFS, markers: dict[str, str], seconds: float) -> dict[str, list[str]]:
    deadline = time.monotonic() + seconds
    while True:
        blind = blind_spots(sw, markers)
        if not blind or time.monotonic() > deadline:
            return blind
        time.sleep(1.0)


def converge(sw: SeaweedFS, api: Any, timeout: float = 180) -> Change:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    step = "filers see each other's files"
    token = uuid.uuid4().hex[:8]
    markers = {}
    for filer in sw.filers:
        path = f"{PROBE_DIR}/sync-{token}-{filer}"
        sw.put(path, token.encode(), filer=filer)
        markers[filer] = path
    try:
        blind = _settled(sw, markers, SETTLE_S)
        if not blind:
            return Change(step, False, f"each of {len(sw.filers)} filers reads every other's")
        said = "; ".join(f"{r} missed {', '.join(w)}" for r, w in sorted(blind.items()))
        core = client.CoreV1Api(api)
        pods = {f"{reader}-0" for reader in blind}  # a StatefulSet of one per filer
        old = {pod: core.read_namespaced_pod(pod, NS).metadata.uid for pod in pods}
        for pod in sorted(pods):
            core.delete_namespaced_pod(pod, NS)

        def replaced() -> bool | None:
            # The old pods must be gone before Ready means anything: each is back under its
            # name (a StatefulSet's) with a new uid.
            for pod, uid in old.items():
                try:
                    if core.read_namespaced_pod(pod, NS).metadata.uid == uid:
                        return None
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise
            return True

        wait_for(replaced, timeout, f"{', '.join(sorted(pods))} replaced")
        wait_ready(api, pods, timeout)
        still = _settled(sw, markers, SETTLE_S)
        if still:
            left = "; ".join(f"{r} still misses {', '.join(w)}" for r, w in sorted(still.items()))
            return Change(step, True, f"{said}: restarted them, but {left}")
        return Change(step, True, f"{said} (SeaweedFS's peer discovery): restarted, now all read")
    finally:
        for filer, path in markers.items():
            with contextlib.suppress(SeaweedError):
                sw.delete(path, filer=filer)
