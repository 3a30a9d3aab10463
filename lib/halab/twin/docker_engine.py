"""A physical host's Docker engine in the twin: what `docker` and `docker compose` on that
host (hostshim.py) ask of it through the host's control socket (host_control.py).

Containers run through the twin's image catalogue, as pods do: a plain OS image's command
as a sandboxed process with the service's environment, volumes (the host's own paths, as
its SSH world shows them: /mnt/user/... on Unraid) and devices; an image the machine has
no program for as a placeholder listening on its published ports at the host's address,
and its log says so. Containers share the host's network (no bridge): a published port is
the placeholder's; a process listens where its program does.

The engine's state is kept in the host's directory, so a container with `restart: always`
or `unless-stopped` comes back when its host does (after `twin recover`, as Docker starts
them at boot), and one stopped by hand stays stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from halab.twin.images.catalogue import program_for
from halab.twin.kubelet import runtime

log = logging.getLogger("halab.twin.docker")

# The Compose keys the twin runs: what the kit renders and what a small service needs.
SERVICE_KEYS = {
    "image", "container_name", "restart", "environment", "volumes", "devices", "ports",
    "command", "entrypoint", "working_dir",
}  # fmt: skip
TOP_KEYS = {"services", "name", "version"}
RESTART_POLICIES = {"no", "always", "unless-stopped", "on-failure"}
STOP_GRACE = 10.0  # s: docker stop's default
RESTART_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)  # s: Docker doubles from 100 ms
IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


class DockerError(ValueError):
    """What docker or docker compose would print, and exit 1."""


def _inside(device: Path, service: Service) -> str:
    return next(k for k, v in service.devices.items() if v == device)


# -- the Compose file --------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    published: int
    target: int
    host_ip: str = "0.0.0.0"
    protocol: str = "tcp"

    def text(self) -> str:
        return f"{self.host_ip}:{self.published}->{self.target}/{self.protocol}"


@dataclass
class Service:
    """One service of a Compose file, with its host paths resolved."""

    project: str
    name: str
    container_name: str
    image: str
    restart: str
    environment: dict[str, str]
    binds: dict[str, Path]  # path in the container -> directory or file on this machine
    devices: dict[str, Path]  # path in the container -> the host's device (node or dir)
    read_only: set[str]
    ports: list[Port]
    entrypoint: list[str]
    command: list[str]
    working_dir: str
    definition: dict[str, Any]  # as written, for `up` to see what changed
    workdir: str  # the Compose file's directory, as the host sees it


def project_name(name: str) -> str:
    """Compose's rule: lower case, only [a-z0-9_-], starting with a letter or digit."""
    cleaned = re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")
    return cleaned or "default"


def _words(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    raise DockerError(f"{where} must be a string or a list")


def _environment(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        env = {}
        for item in value:
            key, _, val = str(item).partition("=")
            env[key] = val
        return env
    raise DockerError(f"{where}.environment must be a mapping or a list")


def _ports(value: Any, where: str) -> list[Port]:
    ports = []
    for item in value or []:
        text = str(item)
        spec, _, protocol = text.partition("/")
        parts = spec.split(":")
        try:
            if len(parts) == 1:
                port = Port(int(parts[0]), int(parts[0]), protocol=protocol or "tcp")
            elif len(parts) == 2:
                port = Port(int(parts[0]), int(parts[1]), protocol=protocol or "tcp")
            elif len(parts) == 3:
                port = Port(int(parts[1]), int(parts[2]), parts[0], protocol or "tcp")
            else:
                raise ValueError(text)
        except ValueError:
            raise DockerError(f"{where}.ports: invalid port {text!r}") from None
        ports.append(port)
    return ports


VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?::?-([^}]*))?\}|(\w+))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variables: $VAR and ${VAR} from the caller's environment, ${VAR:-x}
    with a default, $$ for a dollar sign."""
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            if m.group(1):
                return "$"
            name = m.group(2) or m.group(4)
            found = env.get(name, "")
            return found if found or m.group(3) is None else m.group(3)

        return VARIABLE.sub(one, value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def parse(
    text: str,
    file: str,
    project: str | None,
    to_host: Callable[[str], Path | None],
    volumes_dir: Path,
    env: dict[str, str] | None = None,
) -> list[Service]:
    """The services of a Compose file, or DockerError naming what is wrong. `to_host`
    turns a path on the host (as its shell sees it) into this machine's path; `env` is
    the caller's environment, for the file's variables (None: already interpolated)."""
    try:
        doc = yaml.safe_load(text)
        doc = doc if env is None else interpolate(doc, env)
    except yaml.YAMLError as exc:
        raise DockerError(f"yaml: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise DockerError(f"{file}: no services defined (services: is missing or empty)")
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise DockerError(
            f"{file}: the twin's docker compose does not run top-level {', '.join(unknown)} "
            f"(halab twin: it runs {', '.join(sorted(TOP_KEYS))})"
        )
    workdir = str(Path(file).parent)
    name = project or project_name(str(doc.get("name") or Path(workdir).name))

    def host_path(path: str, where: str) -> Path:
        found = to_host(path)
        if found is None:
            raise DockerError(
                f"{where}: {path}: the twin's Docker binds the host's own directories only "
                "(under /mnt, /tmp, /dev/dri and the home; halab twin)"
            )
        return found

    services = []
    for service_name, body in doc["services"].items():
        where = f"services.{service_name}"
        if not isinstance(body, dict):
            raise DockerError(f"{where} must be a mapping")
        unknown = sorted(set(body) - SERVICE_KEYS)
        if unknown:
            raise DockerError(
                f"{where}: the twin's docker compose does not run {', '.join(unknown)} "
                f"(halab twin: it runs {', '.join(sorted(SERVICE_KEYS))})"
            )
        if not body.get("image"):
            raise DockerError(
                f'service "{service_name}" has neither an image nor a build context '
                "specified: invalid compose project"
            )
        restart = str(body.get("restart", "no"))
        if restart.split(":")[0] not in RESTART_POLICIES:
            raise DockerError(f"{where}.restart: invalid restart policy {restart!r}")
        binds: dict[str, Path] = {}
        read_only: set[str] = set()
        for item in body.get("volumes") or []:
            parts = str(item).split(":")
            if len(parts) < 2:
                continue  # an anonymous volume: the container's own, gone with it
            source, target = parts[0], parts[1]
            if source.startswith((".", "~")):
                source = str(Path(workdir) / source) if source.startswith(".") else source
            if source.startswith("/"):
                binds[target] = host_path(str(Path(source)), f"{where}.volumes")
            else:  # a named volume, kept by the engine
                binds[target] = volumes_dir / f"{name}_{source}"
            if len(parts) > 2 and "ro" in parts[2].split(","):
                read_only.add(target)
        devices: dict[str, Path] = {}
        for item in body.get("devices") or []:
            source, _, target = str(item).partition(":")
            devices[(target or source).split(":")[0]] = host_path(source, f"{where}.devices")
        services.append(
            Service(
                project=name,
                name=str(service_name),
                container_name=str(body.get("container_name") or f"{name}-{service_name}-1"),
                image=str(body["image"]),
                restart=restart,
                environment=_environment(body.get("environment"), where),
                binds=binds,
                devices=devices,
                read_only=read_only,
                ports=_ports(body.get("ports"), where),
                entrypoint=_words(body.get("entrypoint"), f"{where}.entrypoint"),
                command=_words(body.get("command"), f"{where}.command"),
                working_dir=str(body.get("working_dir") or "/"),
                definition=body,
                workdir=workdir,
            )
        )
    return services


# -- containers --------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """Docker's wording for how long ago (go-units HumanDuration)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


@dataclass
class Container:
    service: Service
    id: str
    created: float
    wanted: bool = True  # false once stopped by hand: a restart policy then leaves it
    running: runtime.Running | None = None
    started: float = 0.0
    finished: float = 0.0
    exit_code: int | None = None
    restarts: int = 0
    runs: str = ""
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        if self.running is not None and not self.running.done.is_set():
            return "running"
        return "exited" if self.started else "created"

    def status(self, now: float) -> str:
        if self.state == "running":
            return f"Up {human_duration(now - self.started)}"
        if self.state == "exited":
            return f"Exited ({self.exit_code}) {human_duration(now - self.finished)} ago"
        return "Created"

    def row(self, now: float) -> dict[str, Any]:
        svc = self.service
        return {
            "ID": self.id[:12],
            "Name": svc.container_name,
            "Names": svc.container_name,
            "Image": svc.image,
            "Command": " ".join([*svc.entrypoint, *svc.command]),
            "Project": svc.project,
            "Service": svc.name,
            "State": self.state,
            "Status": self.status(now),
            "ExitCode": self.exit_code or 0,
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(self.created)),
            "RunningFor": f"{human_duration(now - self.created)} ago",
            "Ports": ", ".join(p.text() for p in svc.ports) if self.state == "running" else "",
            "Publishers": [
                {
                    "URL": p.host_ip,
                    "TargetPort": p.target,
                    "PublishedPort": p.published,
                    "Protocol": p.protocol,
                }
                for p in svc.ports
            ],
            "Runs": self.runs,
        }


class DockerEngine:
    def __init__(
        self,
        directory: Path,
        address: str,
        to_host: Callable[[str], Path | None],
        tag: str,
        to_twin: Callable[[str], str | None] | None = None,
        nameserver: str = "127.0.0.1",
    ) -> None:
        self.dir = directory
        self.nameserver = nameserver
        self.address = address
        self.to_host = to_host
        self.to_twin = to_twin
        self.tag = tag
        self.containers: dict[str, Container] = {}
        self.lock = asyncio.Lock()
        self.stopping = False

    # -- state kept across the host's restarts --

    @property
    def state_file(self) -> Path:
        return self.dir / "containers.json"

    def log_path(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def _save(self) -> None:
        rows = [
            {
                "file": str(Path(c.service.workdir) / "compose"),
                "project": c.service.project,
                "service": c.service.name,
                "definition": c.service.definition,
                "id": c.id,
                "created": c.created,
                "wanted": c.wanted,
            }
            for c in self.containers.values()
        ]
        self.dir.mkdir(parents=True, exist_ok=True)
        part = self.state_file.with_suffix(".part")
        part.write_text(json.dumps(rows, indent=1))
        part.replace(self.state_file)

    async def restore(self) -> None:
        """The containers of before, as a Docker daemon finds them at boot: restarted
        where their policy says so, the rest exited."""
        try:
            rows = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        for row in rows:
            text = yaml.safe_dump({"services": {row["service"]: row["definition"]}})
            (service,) = parse(text, row["file"], row["project"], self.to_host, self.volumes)
            container = Container(service, row["id"], row["created"], wanted=row["wanted"])
            self.containers[service.container_name] = container
            if container.wanted and service.restart in ("always", "unless-stopped"):
                await self._start(container)
            else:
                container.started = container.finished = row["created"]
                container.exit_code = 137  # its host went down under it
        log.info("docker: %d containers restored", len(self.containers))

    @property
    def volumes(self) -> Path:
        return self.dir / "volumes"

    # -- what the commands ask --

    def services(
        self, text: str, file: str, project: str | None, env: dict[str, str]
    ) -> list[Service]:
        return parse(text, file, project, self.to_host, self.volumes, env)

    async def up(
        self, text: str, file: str, project: str | None, only: list[str], env: dict[str, str]
    ) -> list[str]:
        """`docker compose up -d`: everything checked before anything is touched."""
        services = self.services(text, file, project, env)
        if only:
            missing = sorted(set(only) - {s.name for s in services})
            if missing:
                raise DockerError(f"no such service: {missing[0]}")
            services = [s for s in services if s.name in only]
        async with self.lock:
            self._check_conflicts(services)
            for service in services:
                for device in service.devices.values():
                    if not device.exists():
                        raise DockerError(
                            "Error response from daemon: error gathering device information "
                            f'while adding custom device "{_inside(device, service)}": '
                            "no such file or directory"
                        )
            events: list[str] = []
            for service in services:
                events += await self._up_one(service)
            self._save()
            return events

    def _check_conflicts(self, services: list[Service]) -> None:
        for service in services:
            other = self.containers.get(service.container_name)
            if other is not None and (
                other.service.project != service.project or other.service.name != service.name
            ):
                raise DockerError(
                    f"Error response from daemon: Conflict. The container name "
                    f'"/{service.container_name}" is already in use by container '
                    f'"{other.id}". You have to remove (or rename) that container to be '
                    "able to reuse that name."
                )
            for port in service.ports:
                for c in self.containers.values():
                    same = c.service.project == service.project and c.service.name == service.name
                    if same or c.state != "running":
                        continue
                    if any(p.published == port.published for p in c.service.ports):
                        raise DockerError(
                            "Error response from daemon: driver failed programming external "
                            f"connectivity on endpoint {service.container_name}: Bind for "
                            f"{port.host_ip}:{port.published} failed: port is already allocated"
                        )

    async def _up_one(self, service: Service) -> list[str]:
        label = f" Container {service.container_name}"
        current = self.containers.get(service.container_name)
        if current is not None and current.service.definition == service.definition:
            if current.state == "running":
                return [f"{label}  Running"]
            current.wanted = True
            await self._start(current)
            return [f"{label}  Starting", f"{label}  Started"]
        events = []
        if current is not None:
            events += [f"{label}  Recreate"]
            await self._stop(current, STOP_GRACE)
            del self.containers[service.container_name]
            events += [f"{label}  Recreated"]
        else:
            events += [f"{label}  Creating", f"{label}  Created"]
        ident = hashlib.sha256(f"{service.container_name} {time.time()}".encode()).hexdigest()
        container = Container(service, ident, time.time())
        self.containers[service.container_name] = container
        self.log_path(service.container_name).unlink(missing_ok=True)
        await self._start(container)
        return [*events, f"{label}  Starting", f"{label}  Started"]

    async def down(self, text: str, file: str, project: str | None) -> list[str]:
        """`docker compose down`: the project's containers stopped and removed."""
        name = self.project_of(text, file, project)
        async with self.lock:
            mine = [c for c in self.containers.values() if c.service.project == name]
            events = []
            for container in mine:
                label = f" Container {container.service.container_name}"
                events.append(f"{label}  Stopping")
                await self._stop(container, STOP_GRACE)
                events += [f"{label}  Stopped", f"{label}  Removing"]
                del self.containers[container.service.container_name]
                events.append(f"{label}  Removed")
            self._save()
            return events

    def find(self, name: str) -> Container:
        for container in self.containers.values():
            if name in (container.service.container_name, container.id[: max(len(name), 1)]):
                return container
        raise DockerError(f"Error response from daemon: No such container: {name}")

    async def act(self, name: str, action: str) -> None:
        """`docker start|stop|restart NAME`."""
        async with self.lock:
            container = self.find(name)
            if action in ("stop", "restart"):
                container.wanted = action == "restart"
                await self._stop(container, STOP_GRACE)
            if action in ("start", "restart"):
                container.wanted = True
                if container.state != "running":
                    await self._start(container)
            self._save()

    def rows(self, every: bool, project: str | None = None) -> list[dict[str, Any]]:
        now = time.time()
        return [
            c.row(now)
            for c in sorted(self.containers.values(), key=lambda c: -c.created)
            if (every or c.state == "running") and project in (None, c.service.project)
        ]

    def project_of(self, text: str, file: str, project: str | None) -> str:
        return project or self.services(text, file, None, {})[0].project

    def logs(self, name: str) -> str:
        container = self.find(name)
        path = self.log_path(container.service.container_name)
        return path.read_text(errors="replace") if path.exists() else ""

    # -- running them --

    async def _start(self, container: Container) -> None:
        service = container.service
        spec: dict[str, Any] = {
            "image": service.image,
            "command": service.entrypoint,
            "args": service.command,
            "workingDir": service.working_dir,
            "ports": [{"containerPort": p.published, "protocol": p.protocol.upper()}
                      for p in service.ports],
        }  # fmt: skip
        environment = self._environment(service)
        spec["env"] = [{"name": k, "value": v} for k, v in environment.items()]
        # Published ports are the host's: a container's listener binds the host address.
        program = program_for(spec).listening_on(self.address)
        container.runs = program.runs
        log_path = self.log_path(service.container_name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if program.kind == "placeholder":
            running = await runtime.start_placeholder(spec, self.address, log_path, stamp)
        else:
            for source in service.binds.values():
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)  # as Docker makes a bind's source
            resolv = self.dir / "resolv.conf"
            resolv.parent.mkdir(parents=True, exist_ok=True)
            resolv.write_text(f"nameserver {self.nameserver}\n")
            running = await runtime.start_process(
                spec,
                program,
                environment,
                {**service.binds, **service.devices},
                log_path,
                stamp,
                self.tag,
                files={"/etc/resolv.conf": resolv},
                read_only=service.read_only,
            )
        container.running = running
        container.started = time.time()
        container.exit_code = None
        container.watcher = asyncio.create_task(self._watch(container, running))
        log.info("docker: %s started (%s)", service.container_name, program.runs)

    def _environment(self, service: Service) -> dict[str, str]:
        """The service's environment as its process sees it: Docker's HOSTNAME (the short
        container id unless `hostname:` is set), and addresses of the home network moved
        onto the twin's by its one rule, as the twin's network carries them."""
        short_id = hashlib.sha256(service.container_name.encode()).hexdigest()[:12]
        env = {"HOSTNAME": short_id, **service.environment}
        if self.to_twin is None:
            return env

        def moved(match: re.Match[str]) -> str:
            assert self.to_twin is not None
            return self.to_twin(match.group(0)) or match.group(0)

        return {k: IPV4.sub(moved, v) for k, v in env.items()}

    async def _watch(self, container: Container, running: runtime.Running) -> None:
        if running.process is None:
            await running.done.wait()
            return
        code = await running.process.wait()
        running.exit_code = code if code >= 0 else 128 - code
        running.done.set()
        container.exit_code = running.exit_code
        container.finished = time.time()
        policy = container.service.restart
        again = policy in ("always", "unless-stopped") or (
            policy.startswith("on-failure") and container.exit_code != 0
        )
        if again and container.wanted and not self.stopping:
            delay = RESTART_DELAYS[min(container.restarts, len(RESTART_DELAYS) - 1)]
            container.restarts += 1
            await asyncio.sleep(delay)
            if container.wanted and not self.stopping and container.running is running:
                await self._start(container)

    async def _stop(self, container: Container, grace: float) -> None:
        # The watcher goes first, so a restart policy cannot bring it back meanwhile.
        if container.watcher is not None:
            container.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await container.watcher
        running = container.running
        if running is None or running.done.is_set():
            return
        await running.stop(grace)
        code = running.process.returncode if running.process is not None else None
        container.exit_code = (128 - code if code < 0 else code) if code is not None else 0
        container.finished = time.time()

    async def shutdown(self) -> None:
        """The host going down: every container stops; what was wanted stays wanted."""
        self.stopping = True
        await asyncio.gather(
            *(self._stop(c, 2.0) for c in self.containers.values()), return_exceptions=True
        )
