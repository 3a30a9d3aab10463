"""How the twin's kubelet runs a container.

A plain OS image (busybox, alpine, debian, ubuntu) runs its command as a real process in
a bubblewrap sandbox: this machine's /usr read-only, a fresh /tmp, the pod's volumes
bound at their mount paths, nothing of the real root writable. Every other image runs as
a placeholder served from the kubelet's event loop: it listens on the container's
declared ports and answers HTTP, so TCP and HTTP probes pass, with no process per pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAIN_IMAGES = ("busybox", "alpine", "debian", "ubuntu")


def is_plain(image: str) -> bool:
    name = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return name in PLAIN_IMAGES


def sandbox_command(
    command: list[str], binds: dict[str, Path], workdir: str, tag: str = ""
) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError(
            "bubblewrap is not installed: `apt-get install bubblewrap` (make setup does)"
        )
    args = [bwrap, "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.exists():
            args += ["--ro-bind", str(target), f"/{link}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for mount_path, source in sorted(binds.items()):
        args += ["--bind", str(source), mount_path]
    if tag:
        # Names the twin on the command line, so `twin down` checks can find every process.
        args += ["--setenv", "HALAB_TWIN", tag]
    args += ["--unshare-pid", "--die-with-parent", "--chdir", workdir or "/", "--", *command]
    return args


@dataclass
class Running:
    """One running container: a process, or a placeholder's listening sockets."""

    log_path: Path
    process: asyncio.subprocess.Process | None = None
    servers: list[asyncio.Server] = field(default_factory=list)
    exit_code: int | None = None
    started_at: str = ""
    finished_at: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self, grace: float) -> None:
        for server in self.servers:
            server.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), max(grace, 0.1))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        if self.exit_code is None:
            self.exit_code = 137 if self.process is not None else 0
        self.done.set()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, image: str) -> None:
    """Enough HTTP for probes and curious users; a bare TCP connect works too."""
    with contextlib.suppress(Exception):
        request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if request.split(b" ", 1)[0].isalpha():  # an HTTP method: answer as HTTP
            body = f"halab twin placeholder for {image}\n".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
    writer.close()


async def start_placeholder(
    container: dict[str, Any], address: str, log_path: Path, started_at: str
) -> Running:
    image = container.get("image", "")
    running = Running(log_path, started_at=started_at)
    lines = [f"halab twin: {image} runs as a placeholder (only plain OS images run commands)"]
    for port in container.get("ports") or []:
        if port.get("protocol", "TCP") != "TCP":
            continue
        number = int(port["containerPort"])
        try:
            server = await asyncio.start_server(
                lambda r, w: _answer(r, w, image), address, number, reuse_address=True
            )
        except OSError as exc:
            lines.append(f"cannot listen on {address}:{number}: {exc}")
            continue
        running.servers.append(server)
        lines.append(f"listening on {address}:{number}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as out:
        out.write("\n".join(lines) + "\n")
    return running


async def start_process(
    container: dict[str, Any],
    env: dict[str, str],
    binds: dict[str, Path],
    log_path: Path,
    started_at: str,
    tag: str = "",
) -> Running:
    command = list(container.get("command") or []) + list(container.get("args") or [])
    if not command:
        command = ["sh"]  # the plain images' default command
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = log_path.open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            *sandbox_command(command, binds, container.get("workingDir", "/"), tag),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **env},
            start_new_session=True,
        )
    finally:
        out.close()
    return Running(log_path, process=process, started_at=started_at)
