"""How the twin's kubelet runs a container, once the image catalogue has said what.

A process (a plain OS image's command, the real weed of a SeaweedFS image) runs in a
bubblewrap sandbox: this machine's /usr read-only, a fresh /tmp, the pod's volumes bound
at their mount paths, the pod's resolv.conf pointing at the cluster DNS, nothing of the
real root writable. A placeholder is served from the kubelet's event loop: it listens on
the container's declared ports and answers HTTP, so TCP and HTTP probes pass, with no
process per pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halab.twin import cgroups
from halab.twin.images.catalogue import Program


def sandbox_command(
    command: list[str],
    binds: dict[str, Path],
    workdir: str,
    tag: str = "",
    files: dict[str, Path] | None = None,
    read_only: set[str] | None = None,
    devices: dict[str, Path] | None = None,
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
        # A volumeMount with readOnly: writes get EROFS, as the kubelet's ro bind gives.
        how = "--ro-bind" if mount_path in (read_only or set()) else "--bind"
        args += [how, str(source), mount_path]
    # Read-only files laid over the view: the pod's resolv.conf, a program's binary.
    for inside, source in sorted((files or {}).items()):
        args += ["--ro-bind", str(source), inside]
    for inside, source in sorted((devices or {}).items()):
        args += ["--dev-bind", str(source), inside]  # device nodes usable as devices
    if tag:
        # Names the twin on the command line, so `twin down` checks can find every process.
        args += ["--setenv", "HALAB_TWIN", tag]
    args += ["--unshare-pid", "--die-with-parent", "--chdir", workdir or "/", "--", *command]
    return args


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# Pods run below their machines' own programs. At home the control plane and each
# host's workloads have CPUs of their own; in the twin they share this machine's, and a
# transcode or a SeaweedFS burst must not starve etcd and the kubelets' heartbeats into a
# failover no one caused (seen in CI: every node marked Unknown at a 4 s grace period).
POD_NICENESS = 10


def _armed(parent: int, group: Path | None = None) -> list[str]:
    """A prefix that ties the sandbox to its machine's process before bubblewrap runs,
    at a lower CPU priority. bubblewrap arms --die-with-parent only once it runs: a
    machine killed between the fork and that moment left its pod alive under init (seen
    in CI). setpriv sets the parent-death signal at once, and the shell gives up if the
    parent is already gone (its parent is then init, not `parent`); exec keeps the
    signal armed. The shell also puts itself, before bubblewrap runs, into the
    container's own cgroup (twin/cgroups.py), which catches whatever slips past both (seen
    in CI: a sandbox's inner bubblewrap left under init once its outer one had gone)."""
    nice = ["nice", "-n", str(POD_NICENESS)]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return nice
    enter = f"echo $$ > {shlex.quote(str(group / 'cgroup.procs'))} 2>/dev/null; " if group else ""
    check = f'[ "$PPID" = {parent} ] || exit 137; {enter}exec "$@"'
    return [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", check, "sh", *nice]


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
    reaper: asyncio.Task[None] | None = None  # kills what its cgroup still holds at exit

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
    container: dict[str, Any], address: str, log_path: Path, started_at: str, runs: str = ""
) -> Running:
    image = container.get("image", "")
    running = Running(log_path, started_at=started_at)
    what = runs if runs.startswith("stand-in") else "a placeholder (the twin has no program for it)"
    lines = [f"halab twin: {image} runs as {what}"]
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
    program: Program,
    env: dict[str, str],
    binds: dict[str, Path],
    log_path: Path,
    started_at: str,
    tag: str = "",
    files: dict[str, Path] | None = None,
    read_only: set[str] | None = None,
    devices: dict[str, Path] | None = None,
) -> Running:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    group = _container_group()
    out = log_path.open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            *_armed(os.getpid(), group),
            *sandbox_command(
                program.argv,
                binds,
                container.get("workingDir", "/"),
                tag,
                {**program.files, **(files or {})},
                read_only,
                devices,
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": ":".join([*program.path, DEFAULT_PATH]), **program.env, **env},
            start_new_session=True,
        )
    finally:
        out.close()
    running = Running(log_path, process=process, started_at=started_at)
    if group is not None:
        running.reaper = asyncio.create_task(_reap(process, group))
    return running


def _container_group() -> Path | None:
    machine = cgroups.own_group()
    if machine is None:
        return None
    group = machine / f"c-{uuid.uuid4().hex[:12]}"
    try:
        group.mkdir()
    except OSError:
        return None
    return group


async def _reap(process: asyncio.subprocess.Process, group: Path) -> None:
    """Once the sandbox has exited (stopped or by itself), whatever is left in its group
    goes, and the group with it."""
    await process.wait()
    await asyncio.to_thread(cgroups.kill, group, 5.0)
