"""Objects in etcd: resourceVersion is the etcd revision, list and watch come from etcd.

The API server talks only to its own host's etcd member, as k3s's does, through etcd's
JSON gateway. Writes are compare-and-swap transactions on the key's mod_revision, so a
stale resourceVersion is a 409, never a lost update. Without quorum etcd holds a request
until its own timeout; the store gives up sooner and the server answers 504.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from halab.twin.api.status import ApiError
from halab.twin.etcd import PROGRESS_NOTIFY_S, _b64, _unb64

# Silence on an etcd watch longer than this means it broke (etcd reports progress every
# PROGRESS_NOTIFY_S seconds); generous, since a loaded machine delays those reports.
WATCH_SILENCE_S = PROGRESS_NOTIFY_S * 10.0


def prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(frozen=True)
class Stored:
    key: str
    obj: dict[str, Any]  # with metadata.resourceVersion set from the revision
    revision: int


@dataclass(frozen=True)
class Change:
    kind: str  # "PUT", "DELETE", or "PROGRESS" (every change up to revision was sent)
    key: str
    obj: dict[str, Any] | None  # the new object (None when deleted)
    prev: dict[str, Any] | None  # the object before, when etcd kept it
    revision: int


def progress(revision: int) -> Change:
    return Change("PROGRESS", "", None, None, revision)


def _decode(kv: dict[str, Any]) -> Stored:
    obj: dict[str, Any] = json.loads(_unb64(kv["value"]))
    rev = int(kv["mod_revision"])
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return Stored(_unb64(kv["key"]), obj, rev)


def _encode(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    body = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


class Store:
    def __init__(self, endpoint: str, timeout: float = 4.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        session = await self.session()
        try:
            async with asyncio.timeout(self.timeout):
                async with session.post(f"{self.endpoint}/v3/{path}", json=body) as resp:
                    doc: dict[str, Any] = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise ApiError(
                            503 if resp.status >= 500 else 500,
                            f"etcd {path}: {doc.get('message') or doc.get('error') or doc}",
                        )
                    return doc
        except TimeoutError:
            raise ApiError(
                504, f"etcd did not answer in {self.timeout:.0f} s (no quorum?)", "Timeout"
            ) from None
        except aiohttp.ClientError as exc:
            raise ApiError(503, f"etcd is unreachable: {exc}") from None

    async def get(self, key: str) -> Stored | None:
        doc = await self._call("kv/range", {"key": _b64(key)})
        kvs = doc.get("kvs", [])
        return _decode(kvs[0]) if kvs else None

    async def list(
        self, prefix: str, limit: int = 0, start: str | None = None, revision: int = 0
    ) -> tuple[list[Stored], int, str | None]:
        """Objects under prefix at one revision; returns (items, revision, next key or None)."""
        body: dict[str, Any] = {
            "key": _b64(start or prefix),
            "range_end": _b64(prefix_end(prefix)),
        }
        if limit:
            body["limit"] = str(limit + 1)
        if revision:
            body["revision"] = str(revision)
        try:
            doc = await self._call("kv/range", body)
        except ApiError as exc:
            if "compacted" in exc.message:
                raise ApiError(
                    410, "The provided continue parameter is too old", "Expired"
                ) from None
            raise
        items = [_decode(kv) for kv in doc.get("kvs", [])]
        rev = revision if revision else int(doc["header"]["revision"])
        nxt = None
        if limit and len(items) > limit:
            nxt = items[limit].key
            items = items[:limit]
        return items, rev, nxt

    async def create(self, key: str, obj: dict[str, Any]) -> Stored | None:
        """Store a new object; None when the key exists."""
        doc = await self._call(
            "kv/txn",
            {
                "compare": [
                    {
                        "key": _b64(key),
                        "target": "CREATE",
                        "create_revision": "0",
                        "result": "EQUAL",
                    }
                ],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(_encode(obj))}}],
            },
        )
        if not doc.get("succeeded"):
            return None
        return self._stored(key, obj, int(doc["header"]["revision"]))

    async def update(self, key: str, obj: dict[str, Any], revision: int) -> Stored | None:
        """Replace the object stored at `revision`; None when it changed since (or is gone)."""
        doc = await self._call(
            "kv/txn",
            {
                "compare": [{"key": _b64(key), "target": "MOD", "mod_revision": str(revision)}],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(_encode(obj))}}],
            },
        )
        if not doc.get("succeeded"):
            return None
        return self._stored(key, obj, int(doc["header"]["revision"]))

    async def delete(self, key: str, revision: int) -> int | None:
        """Remove the object stored at `revision`; returns the deletion revision or None."""
        doc = await self._call(
            "kv/txn",
            {
                "compare": [{"key": _b64(key), "target": "MOD", "mod_revision": str(revision)}],
                "success": [{"request_delete_range": {"key": _b64(key)}}],
            },
        )
        return int(doc["header"]["revision"]) if doc.get("succeeded") else None

    @staticmethod
    def _stored(key: str, obj: dict[str, Any], revision: int) -> Stored:
        out = json.loads(_encode(obj))
        out.setdefault("metadata", {})["resourceVersion"] = str(revision)
        return Stored(key, out, revision)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Change]:
        """Every change under prefix from start_revision on, until the caller stops, and a
        PROGRESS change whenever etcd reports progress without a change.

        etcd sends progress every PROGRESS_NOTIFY_S; silence for several times that is a
        watch that broke without closing (a member frozen or cut off), and raises. The
        hasleader header makes a member that lost its leader end the watch, as
        kube-apiserver's etcd client asks, rather than leave it silently behind."""
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
                "prev_kv": True,
                "progress_notify": True,
            }
        }
        session = await self.session()
        try:
            async with session.post(
                f"{self.endpoint}/v3/watch",
                json=body,
                headers={"Grpc-Metadata-hasleader": "true"},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=WATCH_SILENCE_S),
            ) as resp:
                # The gateway sends one JSON document per line.
                async for line in resp.content:
                    if not line.strip():
                        continue
                    doc = json.loads(line)
                    if "error" in doc:
                        raise ApiError(503, f"etcd watch: {doc['error'].get('message')}")
                    result = doc.get("result", {})
                    if result.get("compact_revision"):
                        raise ApiError(410, "too old resource version", "Expired")
                    if result.get("canceled"):
                        raise ApiError(503, f"etcd watch cancelled: {result.get('cancel_reason')}")
                    events = result.get("events", [])
                    for ev in events:
                        yield self._change(ev)
                    if not events and not result.get("created") and "header" in result:
                        yield progress(int(result["header"]["revision"]))
        except TimeoutError:
            raise ApiError(
                503, f"etcd watch silent for {WATCH_SILENCE_S:.0f} s", "Timeout"
            ) from None
        except aiohttp.ClientError as exc:
            raise ApiError(503, f"etcd watch broke: {exc}") from None

    @staticmethod
    def _change(ev: dict[str, Any]) -> Change:
        kv = ev["kv"]
        prev = _decode(ev["prev_kv"]).obj if ev.get("prev_kv") else None
        rev = int(kv["mod_revision"])
        key = _unb64(kv["key"])
        if ev.get("type") == "DELETE":
            if prev is not None:
                prev = {**prev, "metadata": {**prev["metadata"], "resourceVersion": str(rev)}}
            return Change("DELETE", key, None, prev, rev)
        return Change("PUT", key, _decode(kv).obj, prev, rev)
