"""The control-plane VIP, as kube-vip holds it: the host whose API server wins the
kube-system/plndr-cp-lock Lease binds the VIP, and lets it go when it loses the lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

log = logging.getLogger("halab.twin.vip")


class VipHolder:
    def __init__(self, runner: web.AppRunner, address: str, port: int) -> None:
        self.runner = runner
        self.address = address
        self.port = port
        self.site: web.TCPSite | None = None
        self._binding: asyncio.Task[None] | None = None

    async def bind(self) -> None:
        """Start holding the VIP. Returns at once: the elector must go on renewing."""
        if self._binding is None or self._binding.done():
            self._binding = asyncio.create_task(self._bind_until_bound())

    async def _bind_until_bound(self) -> None:
        # The previous holder may still hold the address: it was frozen, or is slow to see
        # that it lost the lease. It lets go once it does; until then, keep trying.
        waited = 0.0
        while self.site is None:
            site = web.TCPSite(self.runner, self.address, self.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                await site.stop()  # unregisters it from the runner: it never started
                if waited == 5.0:
                    log.warning("the VIP %s:%s is still taken: %s", self.address, self.port, exc)
                await asyncio.sleep(0.1)
                waited = round(waited + 0.1, 1)
                continue
            self.site = site
            log.info("bound the VIP %s:%s", self.address, self.port)

    async def release(self) -> None:
        if self._binding is not None:
            self._binding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._binding
            self._binding = None
        if self.site is not None:
            await self.site.stop()
            self.site = None
            log.info("released the VIP %s:%s", self.address, self.port)
