"""The controller manager: shared informers, and each controller's reconcile run whenever
something it watches changes (and once a period, for what time alone changes).

Controllers are level-triggered: each looks at the whole cached state and makes one
pass of corrections. Simple, and right after any failure, because nothing depends on
having seen an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from halab.twin.client import Client, ClientError, Informer, path
from halab.twin.events import event_body

log = logging.getLogger("halab.twin.controllers")
# One controller's pass may take this long before it is cut short (it is level-triggered:
# the next pass starts over), so one stuck on a dead peer never stalls the others.
PASS_LIMIT_S = 30.0
SLOW_PASS_S = 5.0  # a pass this long is worth a line in the host's log

WATCHED = {
    "pods": ("v1", "pods"),
    "nodes": ("v1", "nodes"),
    "leases": ("coordination.k8s.io/v1", "leases"),
    "deployments": ("apps/v1", "deployments"),
    "replicasets": ("apps/v1", "replicasets"),
    "statefulsets": ("apps/v1", "statefulsets"),
    "daemonsets": ("apps/v1", "daemonsets"),
    "jobs": ("batch/v1", "jobs"),
    "services": ("v1", "services"),
    "endpoints": ("v1", "endpoints"),
    "pvcs": ("v1", "persistentvolumeclaims"),
    "pvs": ("v1", "persistentvolumes"),
    "storageclasses": ("storage.k8s.io/v1", "storageclasses"),
    "csidrivers": ("storage.k8s.io/v1", "csidrivers"),
    "volumeattachments": ("storage.k8s.io/v1", "volumeattachments"),
    "helmreleases": ("helm.toolkit.fluxcd.io/v2", "helmreleases"),
    "helmrepositories": ("source.toolkit.fluxcd.io/v1", "helmrepositories"),
    "namespaces": ("v1", "namespaces"),
}


@dataclass(frozen=True)
class Settings:
    node_monitor_grace: float  # --node-monitor-grace-period
    node_monitor_period: float  # --node-monitor-period
    identity: str
    force_detach: float = 360.0  # maxWaitForUnmountDuration
    # The twin's map of a home-network address onto its own (MetalLB's pools); None
    # for an address it cannot reach.
    address_map: Callable[[str], str | None] = lambda address: address


Reconcile = Callable[["Manager"], Awaitable[None]]
M = TypeVar("M")


class Manager:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.informers = {
            name: Informer(client, path(api_version, plural))
            for name, (api_version, plural) in WATCHED.items()
        }
        self._wake = asyncio.Event()
        for informer in self.informers.values():
            informer.handlers.append(lambda _k, _o: self._wake.set())
        self.controllers: list[tuple[str, Reconcile]] = []
        self.first_seen: dict[str, float] = {}  # node name -> when this manager first saw it
        self._memories: dict[str, Any] = {}
        # (controller, namespace/name) -> the last error said of it, so a failure that
        # repeats every pass is logged once (and again when it changes or clears).
        self._failing: dict[tuple[str, str], str] = {}

    def memory(self, controller: str, make: Callable[[], M]) -> M:
        """A controller's own state, kept for as long as this manager leads."""
        if controller not in self._memories:
            self._memories[controller] = make()
        found: M = self._memories[controller]
        return found

    def cache(self, name: str) -> list[dict[str, Any]]:
        return self.informers[name].values()

    def get(self, name: str, ns: str, obj_name: str) -> dict[str, Any] | None:
        return self.informers[name].items.get((ns, obj_name))

    async def run(self) -> None:
        from halab.twin.controllers import (
            csi,
            gc,
            metallb,
            nodelifecycle,
            scheduler,
            services,
            statefulsets,
            volumes,
            workloads,
        )
        from halab.twin.images import flux

        self.controllers = [
            ("node-lifecycle", nodelifecycle.reconcile),
            ("scheduler", scheduler.reconcile),
            ("deployment", workloads.reconcile_deployments),
            ("replicaset", workloads.reconcile_replicasets),
            ("statefulset", statefulsets.reconcile_statefulsets),
            ("daemonset", statefulsets.reconcile_daemonsets),
            ("job", workloads.reconcile_jobs),
            ("endpoints", services.reconcile),
            ("metallb-controller", metallb.reconcile),
            ("volumes", volumes.reconcile),
            ("csi-provisioner", csi.provision),
            ("attach-detach", csi.attach_detach),
            ("helm-controller", flux.reconcile),
            ("garbage-collector", gc.reconcile),
            ("namespace", gc.finish_namespaces),
        ]
        tasks = [asyncio.create_task(i.run()) for i in self.informers.values()]
        started = time.monotonic()
        try:
            await self._synced(started)
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.node_monitor_period)
                self._wake.clear()
                await asyncio.sleep(0.05)  # let a burst of events settle into one pass
                for name, reconcile in self.controllers:
                    await self._one_pass(name, reconcile)
        finally:
            for task in tasks:
                task.cancel()

    @staticmethod
    def _key(controller: str, obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return controller, f"{meta.get('namespace') or ''}/{meta.get('name', '')}"

    def failing(self, controller: str, obj: dict[str, Any]) -> bool:
        """Whether obj's last sync by controller failed (see each)."""
        return self._key(controller, obj) in self._failing

    async def each(
        self,
        controller: str,
        objects: Iterable[dict[str, Any]],
        sync: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        """Sync each object on its own, as a workqueue does each key: one whose sync the
        API refuses (its namespace terminating, a name too long for what it owns) is
        logged and retried next pass, and never holds back the objects after it."""
        seen: set[tuple[str, str]] = set()
        for obj in objects:
            key = self._key(controller, obj)
            seen.add(key)
            try:
                await sync(obj)
            except ClientError as exc:
                said = str(exc)
                if self._failing.get(key) != said:
                    log.warning("%s: error syncing %s: %s", controller, key[1].lstrip("/"), said)
                self._failing[key] = said
                continue
            if self._failing.pop(key, None) is not None:
                log.info("%s: %s syncs again", controller, key[1].lstrip("/"))
        for gone in [k for k in self._failing if k[0] == controller and k not in seen]:
            del self._failing[gone]

    async def _synced(self, started: float) -> None:
        """Wait for every informer's first list, saying which ones keep it waiting."""
        pending = {name: i.synced for name, i in self.informers.items()}
        while True:
            waiting = [n for n, synced in pending.items() if not synced.is_set()]
            if not waiting:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending[waiting[0]].wait(), SLOW_PASS_S)
            if time.monotonic() - started > SLOW_PASS_S and not pending[waiting[0]].is_set():
                log.warning(
                    "%s: controllers wait for their first lists of %s (%.0f s so far)",
                    self.settings.identity,
                    ", ".join(waiting),
                    time.monotonic() - started,
                )
        log.info(
            "%s: controllers running, caches filled in %.1f s",
            self.settings.identity,
            time.monotonic() - started,
        )

    async def _one_pass(self, name: str, reconcile: Reconcile) -> None:
        began = time.monotonic()
        try:
            await asyncio.wait_for(reconcile(self), PASS_LIMIT_S)
        except ClientError as exc:
            # What each() does not isolate: an API server unreachable for the whole pass.
            log.debug("%s: %s", name, exc)
        except TimeoutError:
            log.warning("controller %s: pass cut short after %.0f s", name, PASS_LIMIT_S)
        except Exception:
            log.exception("controller %s failed a pass", name)
        else:
            took = time.monotonic() - began
            if took > SLOW_PASS_S:
                log.warning("controller %s: a pass took %.1f s", name, took)

    async def event(
        self, obj: dict[str, Any], reason: str, message: str, kind: str = "Normal", source: str = ""
    ) -> None:
        """Record an Event about obj, as controllers do, for `kubectl describe`."""
        body = event_body(obj, reason, message, kind, source)
        ns = body["metadata"]["namespace"]
        try:
            await self.client.create(path("v1", "events", ns), body)
        except ClientError as exc:
            log.debug("event %s: %s", reason, exc)


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_terminating(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pod_active(pod: dict[str, Any]) -> bool:
    return not is_terminating(pod) and pod.get("status", {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )
