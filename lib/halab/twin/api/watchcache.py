"""One etcd watch per API server, fanned out to every client watch.

Without it each client watch is its own etcd watch, and every change is decoded once per
watcher: with a hundred kubelets that is most of the twin's CPU. The cache keeps the
recent changes, so a watch from a resourceVersion it still holds replays from memory; an
older one falls back to its own etcd watch, which is always correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from halab.twin.api.status import ApiError
from halab.twin.api.store import Change, Store, progress

log = logging.getLogger("halab.twin.watchcache")


class WatchCache:
    def __init__(self, store: Store, prefix: str = "/registry/", size: int = 50_000) -> None:
        self.store = store
        self.prefix = prefix
        self.recent: deque[Change] = deque(maxlen=size)
        self.floor = 0  # every change with revision >= floor is in `recent` (0: not running)
        self.last = 0
        self.subscribers: set[asyncio.Queue[Change | None]] = set()
        self.started = asyncio.Event()  # set while floor is known
        # (kind, id(obj)) -> (obj, bytes); holding obj keeps its id from being reused.
        self._encoded: dict[tuple[str, int], tuple[dict[str, Any], bytes]] = {}

    def encoded(self, kind: str, obj: dict[str, Any]) -> bytes:
        """A watch event as bytes, encoded once however many watchers send it."""
        key = (kind, id(obj))
        found = self._encoded.get(key)
        if found is None or found[0] is not obj:
            if len(self._encoded) > 4096:
                self._encoded.clear()
            found = (obj, json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            self._encoded[key] = found
        return found[1]

    async def run(self) -> None:
        while True:
            try:
                if not self.last:
                    _, rev, _ = await self.store.list("/halab/watch-cache-probe/")
                    self.last = rev
                    self.floor = rev + 1
                    self.started.set()
                async for change in self.store.watch(self.prefix, self.last + 1):
                    if change.kind == "PROGRESS":
                        # Nothing new up to here: tell the watchers (bookmarks), keep none.
                        self.last = max(self.last, change.revision)
                        for queue in self.subscribers:
                            queue.put_nowait(change)
                        continue
                    if len(self.recent) == self.recent.maxlen:
                        self.floor = self.recent[0].revision + 1
                    self.recent.append(change)
                    self.last = change.revision
                    for queue in self.subscribers:
                        queue.put_nowait(change)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                log.debug("watch cache: %s", exc.message)
                if exc.code == 410:  # compacted past what we hold: start afresh
                    self.recent.clear()
                    self.last = self.floor = 0
                    self.started.clear()
            except Exception as exc:  # etcd went away: end the watches, resume from last
                log.debug("watch cache: %s", exc)
            for queue in self.subscribers:
                queue.put_nowait(None)  # the cache's own watch broke: end theirs
            await asyncio.sleep(0.3)

    async def changes(self, prefix: str, start_revision: int) -> AsyncIterator[Change]:
        """Changes under prefix from start_revision on, and PROGRESS marks between them."""
        # A client may list before the cache's own first list is done: wait for it a while.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.started.wait(), 5.0)
        if not self.floor or start_revision < self.floor:
            async for change in self.store.watch(prefix, start_revision):
                yield change
            return
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            replayed = start_revision - 1
            for change in list(self.recent):
                if change.revision >= start_revision and change.key.startswith(prefix):
                    replayed = change.revision
                    yield change
            quiet_since = time.monotonic()
            while True:
                live = await queue.get()
                if live is None:
                    raise ApiError(503, "the API server's watch on etcd broke; watch again")
                if live.kind != "PROGRESS" and live.revision > replayed:
                    if live.key.startswith(prefix):
                        quiet_since = time.monotonic()
                        yield live
                        continue
                    # etcd reports no progress while anything changes: a watcher whose
                    # prefix stays quiet meanwhile hears of progress once a second.
                    if time.monotonic() - quiet_since < 1.0:
                        continue
                    live = progress(live.revision)
                if live.kind == "PROGRESS":
                    quiet_since = time.monotonic()
                    yield live
        finally:
            with contextlib.suppress(KeyError):
                self.subscribers.remove(queue)
