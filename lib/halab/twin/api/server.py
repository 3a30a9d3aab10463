"""The twin's Kubernetes API server: HTTP routing, content negotiation, list and watch.

One runs on every control-plane host, on that node's address, storing objects in the
host's own etcd member. Clients are the official ones (kubectl, the kubernetes Python
client); nothing in the kit calls this module directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from halab.twin.api import discovery, openapi, protobuf, proxy, subresources
from halab.twin.api.admission import Tolerations
from halab.twin.api.apply import server_side_apply
from halab.twin.api.objects import Objects
from halab.twin.api.patch import json_patch, merge_patch, strategic_merge
from halab.twin.api.resources import GROUP_ORDER, Registry, Resource
from halab.twin.api.selectors import field_matcher, label_matcher
from halab.twin.api.status import ApiError, bad_request, not_found
from halab.twin.api.store import Change, Store
from halab.twin.api.tables import table
from halab.twin.api.watchcache import WatchCache

log = logging.getLogger("halab.twin.api")
CRD_PREFIX = "/registry/apiextensions.k8s.io/customresourcedefinitions/"


@dataclass(frozen=True)
class Route:
    res: Resource
    namespace: str | None
    name: str | None
    sub: str | None


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(doc, separators=(",", ":")), status=status, content_type="application/json"
    )


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _bookmark(res: Resource, revision: int) -> bytes:
    obj = {
        "kind": res.kind,
        "apiVersion": res.api_version,
        "metadata": {"resourceVersion": str(revision)},
    }
    return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


class ApiServer:
    def __init__(
        self,
        store: Store,
        tolerations: Tolerations,
        kubernetes_version: str,
        k3s_version: str,
        advertise: str,
        service_network: IPv4Network,
    ) -> None:
        self.registry = Registry.builtin()
        self.objects = Objects(store, self.registry, tolerations, service_network)
        self.store = store
        self.watches = WatchCache(store)
        self.version = discovery.version_info(kubernetes_version, k3s_version)
        self.advertise = advertise
        self._http: aiohttp.ClientSession | None = None

    # -- application ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        app["crd_watch"] = asyncio.create_task(self._follow_crds())
        app["watch_cache"] = asyncio.create_task(self.watches.run())
        app["namespaces"] = asyncio.create_task(self._follow_namespaces())

    async def _on_cleanup(self, app: web.Application) -> None:
        app["crd_watch"].cancel()
        app["watch_cache"].cancel()
        app["namespaces"].cancel()
        if self._http is not None:
            await self._http.close()
        await self.store.close()

    async def _follow_namespaces(self) -> None:
        """Keep Objects.namespaces (name -> terminating) from the watch cache."""
        prefix = "/registry/core/namespaces/"
        while True:
            try:
                items, rev, _ = await self.store.list(prefix)
                self.objects.namespaces = {
                    i.obj["metadata"]["name"]: bool(i.obj["metadata"].get("deletionTimestamp"))
                    for i in items
                }
                async for change in self.watches.changes(prefix, rev + 1):
                    if change.kind == "PROGRESS":
                        continue
                    name = change.key.rsplit("/", 1)[-1]
                    if change.obj is None:
                        self.objects.namespaces.pop(name, None)
                    else:
                        meta = change.obj["metadata"]
                        self.objects.namespaces[name] = bool(meta.get("deletionTimestamp"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # etcd away for a moment: forget, then look again
                log.debug("namespace watch: %s", exc)
                self.objects.namespaces = {}
                await asyncio.sleep(0.5)

    async def _follow_crds(self) -> None:
        """Serve the resources of CRDs created through any API server, as they come."""
        while True:
            try:
                items, rev, _ = await self.store.list(CRD_PREFIX)
                for item in items:
                    self.registry.add_crd(item.obj)
                async for change in self.store.watch(CRD_PREFIX, rev + 1):
                    if change.kind == "PROGRESS":
                        continue
                    if change.obj is not None:
                        self.registry.add_crd(change.obj)
                    elif change.prev is not None:
                        self.registry.remove_crd(change.prev)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # etcd down for a moment: look again shortly
                log.debug("CRD watch: %s", exc)
                await asyncio.sleep(0.5)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _json(exc.status(), exc.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path)
            return _json(ApiError(500, f"internal error: {exc}").status(), 500)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/version"]})
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head == "version":
            return _json(self.version)
        if head == "openapi" and parts[1:2] == ["v3"]:
            if len(parts) == 2:
                return _json(openapi.root(self.registry))
            gv = parts[2:]
            group, version = ("", gv[1]) if gv[0] == "api" else (gv[1], gv[2])
            doc = openapi.gv_doc(self.registry, group, version)
            if doc is not None:
                return _json(doc)
        if head == "api" and len(parts) == 1:
            return _json(discovery.api_versions(self.advertise))
        if head == "apis" and len(parts) == 1:
            return _json(discovery.api_group_list(self.registry))
        if head == "apis" and len(parts) == 2:
            group_doc = discovery.api_group(self.registry, parts[1])
            if group_doc is None:
                raise ApiError(404, "the server could not find the requested resource")
            return _json(group_doc)
        if head in ("api", "apis"):
            group, version, rest = (
                ("", parts[1], parts[2:])
                if head == "api"
                else (
                    parts[1],
                    parts[2],
                    parts[3:],
                )
            )
            if not rest:
                doc = discovery.resource_list(self.registry, group, version)
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource")
                return _json(doc)
            # services/NAME/proxy/PATH and pods/NAME/proxy/PATH: forwarded, any method.
            ns_rest = rest[2:] if rest[0] == "namespaces" and len(rest) > 2 else rest
            if (
                group == ""
                and rest[0] == "namespaces"
                and len(ns_rest) >= 3
                and ns_rest[0] in ("services", "pods")
                and ns_rest[2] == "proxy"
            ):
                return await proxy.forward(
                    self, request, ns_rest[0], rest[1], ns_rest[1], "/".join(ns_rest[3:])
                )
            route = self._route(group, version, rest)
            return await self._serve(request, route)
        raise ApiError(404, "the server could not find the requested resource")

    def _route(self, group: str, version: str, rest: list[str]) -> Route:
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        res = self.registry.find(group, version, rest[0])
        if res is None or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in res.subresources:
            raise ApiError(404, "the server could not find the requested resource")
        if res.namespaced and namespace is None and name is not None:
            raise ApiError(404, "the server could not find the requested resource")
        return Route(res, namespace, name, sub)

    # -- verbs ----------------------------------------------------------------------------

    async def _serve(self, request: web.Request, route: Route) -> web.StreamResponse:
        method = request.method
        res, ns, name, sub = route.res, route.namespace, route.name, route.sub
        dry = bool(request.query.get("dryRun"))
        if sub in ("log",) and method == "GET" and name:
            return await subresources.pod_log(self, request, ns, name)
        if sub == "scale" and name:
            return _json(await subresources.scale(self, request, res, ns, name))
        if sub == "eviction" and method == "POST" and name:
            return _json(await subresources.evict(self, await self._body(request), ns, name), 201)
        if sub == "binding" and method == "POST" and name:
            return _json(await subresources.bind(self, await self._body(request), ns, name), 201)
        handlers: dict[str, Callable[[], Awaitable[web.StreamResponse]]] = {}
        if name is None:
            handlers = {
                "GET": lambda: self._list_or_watch(request, res, ns),
                "POST": lambda: self._create(request, res, ns, dry),
                "DELETE": lambda: self._delete_collection(request, res, ns),
            }
        else:
            handlers = {
                "GET": lambda: self._get(request, res, ns, name),
                "PUT": lambda: self._put(request, res, ns, name, sub, dry),
                "PATCH": lambda: self._patch(request, res, ns, name, sub, dry),
                "DELETE": lambda: self._delete(request, res, ns, name, dry),
            }
        handler = handlers.get(method)
        if handler is None:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        return await handler()

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        ctype = request.headers.get("Content-Type", "")
        if "protobuf" in ctype:
            return protobuf.decode(raw)
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(
                f"the request body is not valid {'YAML' if 'yaml' in ctype else 'JSON'}: {exc}"
            ) from None

    async def _get(
        self, request: web.Request, res: Resource, ns: str | None, name: str
    ) -> web.StreamResponse:
        stored = await self.objects.get(res, ns, name)
        if _wants_table(request):
            return _json(table(res.kind, [stored.obj], {"resourceVersion": str(stored.revision)}))
        return _json(stored.obj)

    async def _list_or_watch(
        self, request: web.Request, res: Resource, ns: str | None
    ) -> web.StreamResponse:
        labels = label_matcher(request.query.get("labelSelector"))
        fields = field_matcher(request.query.get("fieldSelector"))

        def match(obj: dict[str, Any]) -> bool:
            return labels(obj) and fields(obj)

        if _flag(request, "watch"):
            return await self._watch(request, res, ns, match)
        try:
            limit = int(request.query.get("limit") or 0)
        except ValueError:
            raise bad_request("limit must be an integer") from None
        page = await self.objects.list(res, ns, match, limit, request.query.get("continue"))
        meta: dict[str, Any] = {"resourceVersion": str(page.revision)}
        if page.next_token:
            meta["continue"] = page.next_token
        if _wants_table(request):
            return _json(
                table(res.kind, page.items, meta, request.query.get("includeObject", "Metadata"))
            )
        return _json(
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": meta,
                "items": page.items,
            }
        )

    async def _watch(
        self,
        request: web.Request,
        res: Resource,
        ns: str | None,
        match: Callable[[dict[str, Any]], bool],
    ) -> web.StreamResponse:
        rv = request.query.get("resourceVersion", "")
        as_table = _wants_table(request)
        include = request.query.get("includeObject", "Metadata")
        try:
            timeout = float(request.query.get("timeoutSeconds") or 1800)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number") from None
        initial: list[dict[str, Any]] = []
        if rv in ("", "0"):
            # No version: the client wants the current state first, as synthetic ADDED events.
            page = await self.objects.list(res, ns, match)
            initial, start = page.items, page.revision + 1
        else:
            try:
                start = int(rv) + 1
            except ValueError:
                raise bad_request(f'invalid resourceVersion "{rv}"') from None
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(kind: str, obj: dict[str, Any]) -> None:
            if not as_table:
                await response.write(self.watches.encoded(kind, obj))
                return
            body = (
                table(
                    res.kind,
                    [obj],
                    {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                    include,
                )
                if as_table
                else obj
            )
            await response.write(json.dumps({"type": kind, "object": body}).encode() + b"\n")

        # Bookmarks (asked for by allowWatchBookmarks) carry the revision the watcher is
        # complete up to: one on each of etcd's progress reports and, while only changes
        # the selector filters out go by, one a second, so a watcher always hears that
        # its watch is alive.
        bookmarks = _flag(request, "allowWatchBookmarks") and not as_table
        complete, sent = start - 1, time.monotonic()
        try:
            for obj in initial:
                await send("ADDED", obj)
            async with asyncio.timeout(timeout):
                async for change in self.watches.changes(res.prefix(ns), start):
                    complete = max(complete, change.revision)
                    event = None if change.kind == "PROGRESS" else self._event(change, match)
                    if event is not None:
                        await send(*event)
                        sent = time.monotonic()
                    elif bookmarks and (change.kind == "PROGRESS" or time.monotonic() - sent > 1.0):
                        await response.write(_bookmark(res, complete))
                        sent = time.monotonic()
        except TimeoutError:
            pass
        except ApiError as exc:
            with contextlib.suppress(ConnectionResetError):
                await response.write(
                    json.dumps({"type": "ERROR", "object": exc.status()}).encode() + b"\n"
                )
        except ConnectionResetError:
            pass
        return response

    @staticmethod
    def _event(
        change: Change, match: Callable[[dict[str, Any]], bool]
    ) -> tuple[str, dict[str, Any]] | None:
        """An etcd change as a watch event; moving in or out of a selector adds or deletes."""
        was = change.prev is not None and match(change.prev)
        if change.kind == "DELETE":
            return ("DELETED", change.prev) if was and change.prev is not None else None
        assert change.obj is not None
        now = match(change.obj)
        if now and was:
            return ("MODIFIED", change.obj)
        if now:
            return ("ADDED", change.obj)
        if was:
            return ("DELETED", change.obj)
        return None

    async def _create(
        self, request: web.Request, res: Resource, ns: str | None, dry: bool
    ) -> web.StreamResponse:
        body = await self._body(request)
        return _json(await self.objects.create(res, ns, body, dry), 201)

    async def _put(
        self,
        request: web.Request,
        res: Resource,
        ns: str | None,
        name: str,
        sub: str | None,
        dry: bool,
    ) -> web.StreamResponse:
        body = await self._body(request)
        return _json(await self.objects.update(res, ns, name, body, sub, dry))

    async def _patch(
        self,
        request: web.Request,
        res: Resource,
        ns: str | None,
        name: str,
        sub: str | None,
        dry: bool,
    ) -> web.StreamResponse:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = await self._body(request)
        if ctype == "application/apply-patch+yaml":
            manager = request.query.get("fieldManager")
            if not manager:
                raise ApiError(422, "PATCH with apply requires a fieldManager query parameter")
            obj, created = await server_side_apply(
                self.objects, res, ns, name, body, manager, _flag(request, "force"), sub, dry
            )
            return _json(obj, 201 if created else 200)
        patchers: dict[str, Callable[[Any, Any], Any]] = {
            "application/merge-patch+json": merge_patch,
            "application/json-patch+json": json_patch,
            "application/strategic-merge-patch+json": strategic_merge,
        }
        patcher = patchers.get(ctype)
        if patcher is None:
            raise ApiError(415, f'the body of the request was in an unknown format "{ctype}"')
        # Custom resources have no patch strategy to merge by, as on a real API server.
        if ctype == "application/strategic-merge-patch+json" and res.group not in GROUP_ORDER:
            raise ApiError(415, "strategic merge patch is not supported for custom resources")

        def change(current: dict[str, Any]) -> dict[str, Any]:
            patched = patcher(current, body)
            if not isinstance(patched, dict):
                raise ApiError(422, "the patch did not produce an object")
            return patched

        return _json(await self.objects.mutate(res, ns, name, change, sub, dry))

    async def _delete(
        self, request: web.Request, res: Resource, ns: str | None, name: str, dry: bool
    ) -> web.StreamResponse:
        options = await self._body(request) or {}
        for key in ("gracePeriodSeconds", "propagationPolicy"):
            if key in request.query:
                value: Any = request.query[key]
                options[key] = int(value) if key == "gracePeriodSeconds" else value
        return _json(await self.objects.delete(res, ns, name, options, dry))

    async def _delete_collection(
        self, request: web.Request, res: Resource, ns: str | None
    ) -> web.StreamResponse:
        labels = label_matcher(request.query.get("labelSelector"))
        fields = field_matcher(request.query.get("fieldSelector"))
        page = await self.objects.list(res, ns, lambda o: labels(o) and fields(o))
        options = await self._body(request) or {}
        for obj in page.items:
            meta = obj["metadata"]
            with contextlib.suppress(ApiError):
                await self.objects.delete(res, meta.get("namespace"), meta["name"], options)
        return _json(
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": {},
                "items": page.items,
            }
        )

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def resource(self, group: str, version: str, plural: str) -> Resource:
        res = self.registry.find(group, version, plural)
        if res is None:
            raise not_found(plural, group, "")
        return res
