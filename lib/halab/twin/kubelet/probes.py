"""Readiness probes as the kubelet runs them: TCP connect, HTTP GET, exec."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from halab.twin.kubelet import runtime


def _port(value: Any, container: dict[str, Any]) -> int:
    if isinstance(value, int):
        return value
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    return int(value)


async def probe_ok(
    probe: dict[str, Any], ip: str, container: dict[str, Any], running: runtime.Running
) -> bool:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "tcpSocket" in probe:
            port = _port(probe["tcpSocket"].get("port"), container)
            _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
            writer.close()
            return True
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = _port(get.get("port"), container)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
            request = f"GET {get.get('path', '/')} HTTP/1.1\r\nHost: {ip}\r\n"
            writer.write(f"{request}Connection: close\r\n\r\n".encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
            writer.close()
            parts = line.split()
            return len(parts) > 1 and 200 <= int(parts[1]) < 400
        if "exec" in probe:
            if running.process is None:
                return True  # a placeholder has nothing to exec in
            proc = await asyncio.create_subprocess_exec(
                *runtime.sandbox_command(probe["exec"].get("command") or ["true"], {}, "/"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return False
    except (OSError, TimeoutError, ValueError):
        return False
    return True
