"""The control-plane VIP, as kube-vip holds it: the host whose API server wins the
kube-system/plndr-cp-lock Lease binds the VIP, and lets it go when it loses the lease."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

log = logging.getLogger("halab.twin.vip")


class VipHolder:
    def __init__(self, runner: web.AppRunner, address: str, port: int) -> None:
        self.runner = runner
        self.address = address
        self.port = port
        self.site: web.TCPSite | None = None

    async def bind(self) -> None:
        if self.site is not None:
            return
        for _ in range(100):
            site = web.TCPSite(self.runner, self.address, self.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                # The previous holder may still hold the socket for a moment.
                log.debug("cannot bind the VIP %s:%s yet: %s", self.address, self.port, exc)
                await asyncio.sleep(0.1)
                continue
            self.site = site
            log.info("bound the VIP %s:%s", self.address, self.port)
            return
        log.error("could not bind the VIP %s:%s", self.address, self.port)

    async def release(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None
            log.info("released the VIP %s:%s", self.address, self.port)
