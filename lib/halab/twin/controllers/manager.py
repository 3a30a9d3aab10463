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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from halab.twin.client import Client, ClientError, Informer, path
from halab.twin.events import event_body

log = logging.getLogger("halab.twin.controllers")

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
        try:
            await asyncio.gather(*(i.synced.wait() for i in self.informers.values()))
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.node_monitor_period)
                self._wake.clear()
                await asyncio.sleep(0.05)  # let a burst of events settle into one pass
                for name, reconcile in self.controllers:
                    try:
                        await reconcile(self)
                    except ClientError as exc:
                        log.debug("%s: %s", name, exc)
                    except Exception:
                        log.exception("controller %s failed a pass", name)
        finally:
            for task in tasks:
                task.cancel()

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
