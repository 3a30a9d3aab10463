"""The twin's own API client for its controllers and kubelets: async, JSON, and it fails
over between API servers the way a k3s agent's client-side load balancer does."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger("halab.twin.client")

WATCH_SILENCE_S = 15.0


class ClientError(Exception):
    def __init__(self, status: int, body: dict[str, Any] | str) -> None:
        self.status = status
        self.body = body
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")


def path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    sub: str | None = None,
) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if sub:
        base += f"/{sub}"
    return base


class Client:
    def __init__(self, endpoints: list[str], timeout: float = 5.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._current = 0
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, force_close=False)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        session = await self.session()
        last: Exception | None = None
        for attempt in range(len(self.endpoints)):
            endpoint = self.endpoints[(self._current + attempt) % len(self.endpoints)]
            try:
                async with session.request(
                    method,
                    endpoint + url,
                    data=None if body is None else json.dumps(body),
                    params=params,
                    headers={"Content-Type": content_type},
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as resp:
                    text = await resp.text()
                    try:
                        doc = json.loads(text) if text else {}
                    except ValueError:
                        # Not an API server's answer (a server starting or stopping): as if
                        # it had not answered, so the caller retries or fails over.
                        last = ClientError(resp.status, text[:200])
                        continue
                    if resp.status >= 400:
                        if resp.status in (503, 504):
                            last = ClientError(resp.status, doc)
                            continue
                        raise ClientError(resp.status, doc)
                    self._current = (self._current + attempt) % len(self.endpoints)
                    result: dict[str, Any] = doc
                    return result
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = exc
        raise ClientError(503, f"no API server answered: {last}")

    async def get(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", url, params=params)

    async def create(self, url: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", url, obj)

    async def update(self, url: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", url, obj)

    async def patch(self, url: str, body: Any, kind: str = "merge") -> dict[str, Any]:
        ctype = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}[
            kind
        ]
        return await self.request("PATCH", url, body, content_type=ctype)

    async def delete(self, url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("DELETE", url, options or {})

    async def watch(
        self, url: str, resource_version: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events, bookmarks included. The server sends a bookmark each second or so
        (on etcd's progress reports), so silence for WATCH_SILENCE_S means the watch broke
        without closing (a frozen or cut-off server): it raises, and informers re-list."""
        session = await self.session()
        query = {
            **(params or {}),
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
        }
        endpoint = self.endpoints[self._current]
        async with session.get(
            endpoint + url,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=WATCH_SILENCE_S),
        ) as resp:
            if resp.status != 200:
                raise ClientError(resp.status, await resp.text())
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


Handler = Callable[[str, dict[str, Any]], None]


@dataclass
class Informer:
    """A list+watch cache of one resource, re-listing whenever the watch breaks."""

    client: Client
    url: str
    params: dict[str, str] = field(default_factory=dict)
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    handlers: list[Handler] = field(default_factory=list)
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    @staticmethod
    def key(obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata", {})
        return meta.get("namespace", ""), meta.get("name", "")

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        for handler in self.handlers:
            handler(kind, obj)

    async def run(self) -> None:
        while True:
            try:
                listed = await self.client.get(self.url, self.params)
                fresh = {self.key(o): o for o in listed.get("items", [])}
                for key in set(self.items) - set(fresh):
                    self._emit("DELETED", self.items.pop(key))
                self.items.update(fresh)
                for obj in fresh.values():
                    self._emit("ADDED", obj)
                self.synced.set()
                rv = listed["metadata"]["resourceVersion"]
                async for event in self.client.watch(self.url, rv, self.params):
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        break
                    if kind == "DELETED":
                        self.items.pop(self.key(obj), None)
                    elif kind in ("ADDED", "MODIFIED"):
                        self.items[self.key(obj)] = obj
                    else:
                        continue
                    self._emit(kind, obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("informer %s: %s", self.url, exc)
            self.client._current = (self.client._current + 1) % len(self.client.endpoints)
            await asyncio.sleep(0.3)

    def values(self) -> list[dict[str, Any]]:
        return list(self.items.values())
