"""Create, read, update, patch and delete of stored objects, with the API server's rules:
compare-and-swap on resourceVersion, status and spec kept apart by subresource, graceful
pod deletion, finalizers and deletion propagation, generation bumps on spec changes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network
from typing import Any

from halab.twin.api import admission
from halab.twin.api.resources import Registry, Resource
from halab.twin.api.selectors import Matcher
from halab.twin.api.service_ips import ServiceIps, keep_allocated
from halab.twin.api.status import ApiError, already_exists, bad_request, conflict, not_found
from halab.twin.api.store import Store, Stored

CAS_RETRIES = 20


@dataclass
class Page:
    items: list[dict[str, Any]]
    revision: int
    next_token: str | None


def _token(revision: int, start: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"rv": revision, "start": start}).encode()).decode()


def _untoken(text: str) -> tuple[int, str]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(text.encode()))
        return int(doc["rv"]), str(doc["start"])
    except (ValueError, KeyError, TypeError):
        raise bad_request(f'invalid continue token "{text[:40]}"') from None


def _strip_status(res: Resource, new: dict[str, Any], old: dict[str, Any]) -> None:
    """A write to the main resource cannot change status where status is a subresource."""
    if "status" in res.subresources:
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)


def _keep_identity(new: dict[str, Any], old: dict[str, Any]) -> None:
    meta, prev = new.setdefault("metadata", {}), old["metadata"]
    for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if key in prev:
            meta[key] = prev[key]
        else:
            meta.pop(key, None)
    if "namespace" in prev:
        meta["namespace"] = prev["namespace"]
    new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
    if "generation" in prev:
        changed = new.get("spec") != old.get("spec")
        meta["generation"] = prev["generation"] + (1 if changed else 0)


class Objects:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        tolerations: admission.Tolerations,
        service_network: IPv4Network,
    ) -> None:
        self.store = store
        self.registry = registry
        self.tolerations = tolerations
        services = registry.find("", "v1", "services")
        assert services is not None
        self.service_ips = ServiceIps(store, service_network, services.key)
        self._tasks: set[asyncio.Task[None]] = set()
        self.namespaces: dict[str, bool] = {}  # name -> terminating, kept by the server

    # -- reads --------------------------------------------------------------------------

    async def get(self, res: Resource, ns: str | None, name: str) -> Stored:
        found = await self.store.get(res.key(ns, name))
        if found is None:
            raise not_found(res.plural, res.group, name)
        return found

    async def list(
        self,
        res: Resource,
        ns: str | None,
        match: Matcher,
        limit: int = 0,
        token: str | None = None,
    ) -> Page:
        prefix = res.prefix(ns)
        revision, start = _untoken(token) if token else (0, None)
        out: list[dict[str, Any]] = []
        last_key: str | None = None
        while True:
            # Filtering happens after the range, so keep reading until the page is full
            # and one more match shows whether a next page exists.
            batch, revision, nxt = await self.store.list(prefix, limit, start, revision)
            for item in batch:
                if not match(item.obj):
                    continue
                if limit and len(out) == limit:
                    assert last_key is not None
                    return Page(out, revision, _token(revision, last_key + "\x00"))
                out.append(item.obj)
                last_key = item.key
            if not limit or nxt is None:
                return Page(out, revision, None)
            start = nxt

    # -- writes -------------------------------------------------------------------------

    async def create(
        self, res: Resource, ns: str | None, obj: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise bad_request("the request body is not an object")
        if obj.get("kind") and obj["kind"] != res.kind:
            raise bad_request(
                f"the kind of the body ({obj['kind']}) does not match the URL ({res.kind})"
            )
        if res.namespaced:
            await self._namespace_accepts(ns or obj.get("metadata", {}).get("namespace"))
        obj = admission.admit_create(res, copy.deepcopy(obj), ns, self.tolerations)
        if dry_run:
            return obj
        name = obj["metadata"]["name"]
        key = res.key(obj["metadata"].get("namespace"), name)
        if res.kind == "Service":
            if await self.store.get(key) is not None:  # before claiming an address for it
                raise already_exists(res.plural, res.group, name)
            await self.service_ips.allocate(obj)
        stored = await self.store.create(key, obj)
        if stored is None:
            if res.kind == "Service":
                await self.service_ips.release(obj)
            raise already_exists(res.plural, res.group, name)
        return stored.obj

    async def _namespace_accepts(self, ns: str | None) -> None:
        if not ns:
            return
        # Known namespaces come from the API server's watch (as the NamespaceLifecycle
        # admission plugin reads an informer); an unknown one is looked up in etcd.
        terminating = self.namespaces.get(ns)
        if terminating is None:
            ns_res = self.registry.find("", "v1", "namespaces")
            assert ns_res is not None
            found = await self.store.get(ns_res.key(None, ns))
            if found is None:
                raise not_found("namespaces", "", ns)
            terminating = bool(found.obj.get("metadata", {}).get("deletionTimestamp"))
        if terminating:
            raise ApiError(
                403,
                f"unable to create new content in namespace {ns} because it is being terminated",
                details={"name": ns, "kind": "namespaces"},
            )

    async def update(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        new: dict[str, Any],
        sub: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        if not isinstance(new, dict):
            raise bad_request("the request body is not an object")
        body_name = new.get("metadata", {}).get("name")
        if body_name and body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        want_rv = new.get("metadata", {}).get("resourceVersion")
        current = await self.get(res, ns, name)
        if want_rv and str(want_rv) != str(current.revision):
            raise conflict(res.plural, res.group, name)
        return await self._write(res, current, copy.deepcopy(new), sub, dry_run)

    async def mutate(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        sub: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Read, change, compare-and-swap; retried while someone else wrote in between
        (a patch without a resourceVersion means "apply to the latest")."""
        for _ in range(CAS_RETRIES):
            current = await self.get(res, ns, name)
            # The change sees the object without its resourceVersion, so one in the result
            # can only have come from the patch itself: a precondition, not a retry.
            base = copy.deepcopy(current.obj)
            base["metadata"].pop("resourceVersion", None)
            new = change(base)
            want_rv = (new.get("metadata") or {}).get("resourceVersion")
            if want_rv and str(want_rv) != str(current.revision):
                raise conflict(res.plural, res.group, name)
            try:
                return await self._write(res, current, new, sub, dry_run)
            except ApiError as exc:
                if exc.code != 409 or want_rv:
                    raise
        raise conflict(res.plural, res.group, name)

    async def _write(
        self,
        res: Resource,
        current: Stored,
        new: dict[str, Any],
        sub: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        old = current.obj
        if sub == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            new = merged
        elif sub != "binding":  # a binding sets spec.nodeName and the PodScheduled condition
            _strip_status(res, new, old)
        _keep_identity(new, old)
        if res.kind == "Service" and sub is None:
            keep_allocated(new, old)
        admission.template_defaults_on_update(res, new)
        admission.validate(res, new)
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not self._graceful(res, new)
        ):
            # The last finalizer is gone: the object goes now.
            if dry_run:
                return new
            await self._remove(res, current)
            return new
        if dry_run:
            return new
        if _same(new, old):
            # As kube-apiserver: a write that changes nothing is not written, so the
            # resourceVersion stays and watchers see no event (a no-op apply, for one).
            return old
        stored = await self.store.update(current.key, new, current.revision)
        if stored is None:
            raise conflict(res.plural, res.group, meta.get("name", ""))
        return stored.obj

    @staticmethod
    def _graceful(res: Resource, obj: dict[str, Any]) -> bool:
        """A pod being stopped by its kubelet stays until the kubelet confirms."""
        if res.kind != "Pod":
            return False
        phase = (obj.get("status") or {}).get("phase")
        return bool(
            (obj.get("spec") or {}).get("nodeName")
            and obj["metadata"].get("deletionGracePeriodSeconds", 0) > 0
            and phase not in ("Succeeded", "Failed")
        )

    async def _remove(self, res: Resource, current: Stored) -> int | None:
        """Delete from etcd; a namespace only once it is empty (None while it is not)."""
        if res.kind == "Namespace" and not await self._empty_namespace(
            current.obj["metadata"]["name"]
        ):
            return None
        rev = await self.store.delete(current.key, current.revision)
        if rev is None:
            raise conflict(res.plural, res.group, current.obj["metadata"].get("name", ""))
        if res.kind == "Service":
            await self.service_ips.release(current.obj)
        return rev

    async def _empty_namespace(self, ns: str) -> bool:
        """Delete a namespace's content; True when nothing is left. An object with
        finalizers is marked for deletion and stays until they are removed."""
        left = 0
        for other in list(self.registry.resources.values()):
            if not other.namespaced:
                continue
            items, _, _ = await self.store.list(other.prefix(ns))
            for item in items:
                meta = item.obj["metadata"]
                if not meta.get("finalizers"):
                    await self.store.delete(item.key, item.revision)
                    continue
                left += 1
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    await self.store.update(item.key, item.obj, item.revision)
        return left == 0

    async def delete(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        options: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]:
        grace = options.get("gracePeriodSeconds")
        policy = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") else None
        )
        pre = options.get("preconditions") or {}
        for _ in range(CAS_RETRIES):
            current = await self.get(res, ns, name)
            obj = copy.deepcopy(current.obj)
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise ApiError(
                    409,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                    f"{meta.get('uid')}",
                )
            if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(current.revision):
                raise conflict(res.plural, res.group, name)
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            elif policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if res.kind == "Namespace":
                return await self._delete_namespace(res, current, obj, dry_run)
            graceful = self._pod_grace(res, obj, grace)
            if not finalizers and graceful is None and res.kind != "Namespace":
                if dry_run:
                    return obj
                try:
                    await self._remove(res, current)
                except ApiError as exc:
                    if exc.code == 409:
                        continue
                    raise
                return obj
            stamp = datetime.now(UTC) + timedelta(seconds=graceful or 0)
            meta.setdefault("deletionTimestamp", stamp.strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta["deletionGracePeriodSeconds"] = graceful or 0
            meta["finalizers"] = finalizers
            if not finalizers:
                meta.pop("finalizers")
            if dry_run:
                return obj
            stored = await self.store.update(current.key, obj, current.revision)
            if stored is not None:
                return stored.obj
        raise conflict(res.plural, res.group, name)

    async def _delete_namespace(
        self, res: Resource, current: Stored, obj: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        """A namespace goes Terminating (new content is refused with 403), is emptied in the
        background, then removed. Deleting a Terminating one again (the namespace
        controller does, should an API server die mid-way) empties and removes it now."""
        meta = obj["metadata"]
        if dry_run:
            return obj
        if meta.get("deletionTimestamp"):
            await self._remove(res, current)
            return obj
        meta["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        obj["status"] = {"phase": "Terminating"}
        stored = await self.store.update(current.key, obj, current.revision)
        if stored is None:
            raise conflict(res.plural, res.group, meta["name"])
        task = asyncio.create_task(self._finish_namespace(res, meta["name"]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return stored.obj

    async def _finish_namespace(self, res: Resource, name: str) -> None:
        with contextlib.suppress(ApiError):
            current = await self.get(res, None, name)
            await self._remove(res, current)

    @staticmethod
    def _pod_grace(res: Resource, obj: dict[str, Any], grace: int | None) -> int | None:
        """Seconds a pod gets to stop, or None to remove it at once."""
        if res.kind != "Pod":
            return None
        spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return None
        if grace == 0:
            return None
        if meta.get("deletionTimestamp"):
            # Already terminating: a second delete may only shorten the grace period.
            current = int(meta.get("deletionGracePeriodSeconds") or 0)
            return min(current, grace) if grace is not None else current
        value = grace if grace is not None else spec.get("terminationGracePeriodSeconds", 30)
        return int(value) if value else None


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Equal but for the resourceVersion and the managedFields' timestamps."""

    def comparable(obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        meta = out.get("metadata") or {}
        meta.pop("resourceVersion", None)
        for entry in meta.get("managedFields") or []:
            entry.pop("time", None)
        return out

    return comparable(new) == comparable(old)
