"""Transcode capacity as Plex's users see it: 1, 2, 4 ... transcodes of one library item
started at once through PMS (and so through ClusterPlex, where PMS has its dockermod),
each driven as a player drives it, with the speed Plex reports for each session.

Beside the per-worker ffmpeg capacity of `halab bench`, this is the cluster's: it
includes the orchestrator's placement, the shared directory and any fallback to PMS.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from halab.plex import Plex, PlexError


def levels(most: int) -> list[int]:
    out, n = [], 1
    while n <= most:
        out.append(n)
        n *= 2
    return out


def pick(plex: Plex, title: str | None) -> Any:
    items = plex.playable()
    if not items:
        raise PlexError(plex.url, "no movie or episode in any library: run phase 8 first")
    if title is None:
        return items[0]
    for item in items:
        if title.lower() in str(getattr(item, "title", "")).lower():
            return item
    known = ", ".join(sorted({str(i.title) for i in items}))
    raise PlexError(plex.url, f"no item titled {title!r} (there are: {known})")


def capacity(
    plex: Plex,
    item: Any,
    most: int = 8,
    height: int = 720,
    bitrate_kbps: int = 2000,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Each level's sessions and whether every one kept up (speed >= 1.0); stops after the
    first level that did not."""
    rows: list[dict[str, Any]] = []
    kept: list[int] = []
    for count in levels(most):
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=count) as pool:
            runs = list(
                pool.map(
                    lambda _n: plex.transcode(item, height=height, bitrate_kbps=bitrate_kbps),
                    range(count),
                )
            )
        speeds = [r.speed for r in runs if r.speed is not None and not r.error]
        kept_up = len(speeds) == count and min(speeds) >= 1.0
        row = {
            "transcodes": count,
            "seconds": round(time.monotonic() - started, 2),
            "speeds": speeds,
            "median speed": round(statistics.median(speeds), 2) if speeds else None,
            "slowest": round(min(speeds), 2) if speeds else None,
            "errors": [r.error for r in runs if r.error],
            "kept up": kept_up,
        }
        rows.append(row)
        if kept_up:
            kept.append(count)
        progress(
            f"{count} at once: median {row['median speed']}x, slowest {row['slowest']}x"
            + ("" if kept_up else " (below realtime or failed: stopping)")
        )
        if not kept_up:
            break
    return {
        "schema": "halab.bench.plex/1",
        "item": str(getattr(item, "title", item)),
        "height": height,
        "bitrate_kbps": bitrate_kbps,
        "levels": rows,
        "realtime_transcodes": max(kept, default=0),
    }
