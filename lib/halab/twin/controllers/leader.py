"""Leader election through a coordination.k8s.io Lease, as client-go's leaderelection
and kube-vip do it: acquire when the holder's lease has expired, renew every retry
period, give up leadership when a renewal has not succeeded within the renew deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from halab.twin.client import Client, ClientError, path

log = logging.getLogger("halab.twin.leader")


def micro_time(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro(text: str | None) -> float:
    if not text:
        return 0.0
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()


@dataclass
class Timings:
    lease_duration: float
    renew_deadline: float
    retry_period: float


class LeaderElector:
    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        timings: Timings,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        self.client = client
        self.url = path("coordination.k8s.io/v1", "leases", namespace, name)
        self.create_url = path("coordination.k8s.io/v1", "leases", namespace)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timings = timings
        self.on_started, self.on_stopped = on_started, on_stopped
        self.leading = False

    async def _try(self) -> bool:
        """One acquire-or-renew attempt; True when we hold the lease afterwards."""
        now = datetime.now(UTC)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.lease_duration),
            "renewTime": micro_time(now),
        }
        try:
            lease = await self.client.get(self.url)
        except ClientError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": micro_time(now), "leaseTransitions": 0},
            }
            try:
                await self.client.create(self.create_url, body)
                return True
            except ClientError as exc2:
                if exc2.status == 409:
                    return False
                raise
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        expires = parse_micro(current.get("renewTime")) + float(
            current.get("leaseDurationSeconds") or self.timings.lease_duration
        )
        if holder and holder != self.identity and time.time() < expires:
            return False
        new_spec = dict(current)
        new_spec.update(spec)
        if holder != self.identity:
            new_spec["acquireTime"] = micro_time(now)
            new_spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:
            await self.client.update(self.url, lease)  # CAS on the resourceVersion we read
            return True
        except ClientError as exc:
            if exc.status == 409:
                return False
            raise

    async def run(self) -> None:
        last_renew = 0.0
        try:
            while True:
                failed = False
                try:
                    ok = await asyncio.wait_for(self._try(), self.timings.retry_period * 2)
                except (ClientError, TimeoutError, OSError) as exc:
                    log.debug("%s: lease attempt failed: %s", self.identity, exc)
                    ok, failed = False, True
                now = time.monotonic()
                if ok:
                    last_renew = now
                    if not self.leading:
                        self.leading = True
                        log.info("%s: became leader of %s", self.identity, self.name)
                        await self.on_started()
                elif self.leading and (
                    not failed or now - last_renew > self.timings.renew_deadline
                ):
                    # Someone else holds it, or we could not renew in time: stop leading.
                    await self._step_down()
                await asyncio.sleep(self.timings.retry_period)
        finally:
            if self.leading:
                await self._step_down()

    async def _step_down(self) -> None:
        self.leading = False
        log.info("%s: lost leadership of %s", self.identity, self.name)
        await self.on_stopped()
