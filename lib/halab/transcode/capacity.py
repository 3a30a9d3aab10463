"""The capacity search: the most concurrent streams that all hold realtime.

Doubling finds a bracket (1, 2, 4, ... until a probe fails or the cap is reached), then
bisection narrows it. Every probe is a fresh set of processes, so no probe inherits
another's warm caches or backlog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from halab.transcode.harness import Probe


@dataclass
class SearchResult:
    max_streams: int  # 0 when even one stream is not realtime
    probes: list[Probe]
    capped: bool  # True when max_streams is the cap: the worker may hold more


def search(probe: Callable[[int], Probe], cap: int) -> SearchResult:
    if cap < 1:
        raise ValueError("the stream cap must be at least 1")
    probes: list[Probe] = []
    done: dict[int, bool] = {}

    def ok(n: int) -> bool:
        if n not in done:
            result = probe(n)
            probes.append(result)
            done[n] = result.ok
        return done[n]

    good, bad = 0, None
    n = 1
    while n <= cap:
        if ok(n):
            good = n
            n *= 2
        else:
            bad = n
            break
    if bad is None:
        if good < cap and ok(cap):
            good = cap
        elif good < cap:
            bad = cap
    if bad is not None:
        while bad - good > 1:
            mid = (good + bad) // 2
            if ok(mid):
                good = mid
            else:
                bad = mid
    return SearchResult(good, probes, capped=good == cap)
