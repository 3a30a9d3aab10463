"""Reaching a host over SSH (paramiko): run, stream, upload; one connection a host, reused.

Host keys are checked against known_hosts (RejectPolicy: an unknown host is refused, never
added silently; a changed key is refused naming both fingerprints). The target's
ssh_config and ~/.ssh/config are honoured as OpenSSH reads them: the host's name first
(`Host k3s-w1`), then its address, for HostName, User, Port, IdentityFile and ProxyJump.
Every failure is a HostError naming the host, the address tried and what went wrong.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import select
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from halab.errors import StepError
from halab.streams import Completed, Stream, pump
from halab.target import SshSettings, Target

Sink = Callable[[str], None]


class HostError(StepError):
    """A host could not be reached, refused us, or a command on it failed or timed out."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: SHA256:<base64, no padding>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class Result(Completed):
    """A finished command: exit code, its output, and how long it took."""

    seconds: float = 0.0
    host: str = ""
    command: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> Result:
        if self.returncode != 0:
            tail = (self.stderr or self.stdout).strip()[-400:]
            raise HostError(f"{self.host}: `{self.command}` exited {self.returncode}: {tail}")
        return self


class _Remember(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Refuse an unknown host, keeping the key it offered so the error can name it."""

    def __init__(self) -> None:
        self.offered: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        self.offered = key
        raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")


def _config_files(settings: SshSettings) -> list[Path]:
    files = [Path(settings.config_file).expanduser(), Path("~/.ssh/config").expanduser()]
    seen: list[Path] = []
    for f in files:
        if f.is_file() and f not in seen:
            seen.append(f)
    return seen


def lookup(settings: SshSettings, name: str, address: str) -> dict[str, Any]:
    """What ssh_config says of this host: its name's entry first, then its address's."""
    found: dict[str, Any] = {}
    for path in _config_files(settings):
        config = paramiko.SSHConfig.from_path(str(path))
        for key in (name, address):
            entry = config.lookup(key)
            if (
                key == name
                and key != address
                and set(entry) <= {"hostname"}
                and (entry.get("hostname") == name)
            ):
                continue  # no Host block names it (lookup echoes the name): the address
            for option, value in entry.items():
                found.setdefault(option, value)
            break
    if found.get("hostname") == name and name != address:
        found["hostname"] = address  # lookup echoes the name when nothing matched
    return found


class SshHost:
    def __init__(
        self,
        name: str,
        address: str,
        settings: SshSettings,
        connect_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.address = address
        self.settings = settings
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._jump: SshHost | None = None
        self._lock = threading.Lock()

    def options(self) -> dict[str, Any]:
        """hostname, port, username, key_filename and proxyjump, as they will be used."""
        config = lookup(self.settings, self.name, self.address)
        opts: dict[str, Any] = {
            "hostname": config.get("hostname", self.address),
            "port": self.settings.port,
            "username": self.settings.user,
        }
        # The target's explicit settings win over ssh_config's; its defaults do not.
        if "port" in config and self.settings.port == 22:
            opts["port"] = int(config["port"])
        if "user" in config and self.settings.user == "root":
            opts["username"] = config["user"]
        if self.settings.key_file:
            opts["key_filename"] = [str(Path(self.settings.key_file).expanduser())]
        elif "identityfile" in config:
            opts["key_filename"] = [str(Path(p).expanduser()) for p in config["identityfile"]]
        if config.get("proxyjump") and config["proxyjump"] != "none":
            opts["proxyjump"] = config["proxyjump"].split(",")[0]
        return opts

    def _where(self, opts: dict[str, Any]) -> str:
        return f"{opts['hostname']}:{opts['port']}"

    def _known_hosts(self, client: paramiko.SSHClient, opts: dict[str, Any]) -> None:
        known = Path(self.settings.known_hosts).expanduser()
        if known.is_file():
            client.load_host_keys(str(known))
        for path in _config_files(self.settings):
            entry = paramiko.SSHConfig.from_path(str(path)).lookup(self.name)
            for extra in entry.get("userknownhostsfile", "").split():
                p = Path(extra).expanduser()
                if p.is_file() and p != known:
                    client.get_host_keys().load(str(p))

    def _sock(self, opts: dict[str, Any]) -> Any:
        if "proxyjump" not in opts:
            return None
        spec = opts["proxyjump"]
        user, _, rest = spec.rpartition("@")
        jump_name, _, port = rest.partition(":")
        settings = self.settings
        if user or port:
            settings = settings.model_copy(
                update={k: v for k, v in (("user", user), ("port", int(port or 0))) if v}
            )
        self._jump = SshHost(jump_name, jump_name, settings, self.connect_timeout)
        transport = self._jump.client().get_transport()
        assert transport is not None
        try:
            return transport.open_channel(
                "direct-tcpip", (opts["hostname"], opts["port"]), ("127.0.0.1", 0),
                timeout=self.connect_timeout,
            )  # fmt: skip
        except (paramiko.SSHException, OSError) as exc:
            raise HostError(
                f"{self.name}: the jump host {jump_name} could not open a channel to "
                f"{self._where(opts)}: {exc}"
            ) from None

    def client(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return self._client
                self._client.close()  # it went away (a reboot): connect again
                self._client = None
            opts = self.options()
            client = paramiko.SSHClient()
            self._known_hosts(client, opts)
            policy = _Remember()
            client.set_missing_host_key_policy(policy)
            where = self._where(opts)
            began = time.monotonic()
            try:
                client.connect(
                    opts["hostname"],
                    port=opts["port"],
                    username=opts["username"],
                    key_filename=opts.get("key_filename"),
                    timeout=self.connect_timeout,
                    banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout,
                    allow_agent=False,
                    look_for_keys=False,
                    sock=self._sock(opts),
                )
            except paramiko.BadHostKeyException as exc:
                raise HostError(
                    f"{self.name}: the host key of {where} has changed: it offered "
                    f"{exc.key.get_name()} {fingerprint(exc.key)}, known_hosts has "
                    f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)} "
                    f"(if the host was rebuilt, remove its line with "
                    f"`ssh-keygen -R {opts['hostname']}` and add the new key)"
                ) from None
            except paramiko.AuthenticationException as exc:
                keys = ", ".join(opts.get("key_filename") or []) or "no key file"
                raise HostError(
                    f"{self.name}: {where} refused {opts['username']}'s authentication "
                    f"({keys}): {exc}"
                ) from None
            except paramiko.SSHException as exc:
                if policy.offered is not None:
                    raise HostError(
                        f"{self.name}: {where} is not in known_hosts "
                        f"({Path(self.settings.known_hosts).expanduser()}); it offers "
                        f"{policy.offered.get_name()} {fingerprint(policy.offered)}: check "
                        f"it and add its key to known_hosts (ssh-keyscan {opts['hostname']})"
                    ) from None
                if time.monotonic() - began >= self.connect_timeout * 0.9:
                    # Connected, but no SSH banner came in time: a host that hangs (or a
                    # port that is not sshd). paramiko words it variously.
                    raise HostError(
                        f"{self.name}: {where} did not answer within {self.connect_timeout:g} s "
                        f"(the port accepts, SSH never answered: {exc})"
                    ) from None
                raise HostError(f"{self.name}: SSH to {where} failed: {exc}") from None
            except TimeoutError:
                raise HostError(
                    f"{self.name}: {where} did not answer within {self.connect_timeout:g} s "
                    "(is the host up and on this network?)"
                ) from None
            except paramiko.ssh_exception.NoValidConnectionsError as exc:
                refused = all(
                    getattr(e, "errno", None) == errno.ECONNREFUSED for e in exc.errors.values()
                )
                if not refused:
                    raise HostError(f"{self.name}: cannot reach {where}: {exc}") from None
                raise HostError(
                    f"{self.name}: {where} refused the connection (no sshd listening: "
                    "is the machine up?)"
                ) from None
            except ConnectionRefusedError:
                raise HostError(
                    f"{self.name}: {where} refused the connection (no sshd listening)"
                ) from None
            except OSError as exc:
                raise HostError(f"{self.name}: cannot reach {where}: {exc}") from None
            self._client = client
            return client

    def run(
        self,
        argv: list[str] | str,
        timeout: float = 60.0,
        stream: Sink | bool | None = None,
        check: bool = False,
    ) -> Result:
        """Run a command and wait for it. `stream` shows its output as it comes: True
        prints each line with the host's name, a callable gets each line."""
        command = argv if isinstance(argv, str) else shlex.join(argv)
        sink: Sink | None = None
        if stream is True:
            sink = lambda line: print(f"{self.name}: {line}", flush=True)  # noqa: E731
        elif callable(stream):
            sink = stream
        started = time.monotonic()
        transport = self.client().get_transport()
        assert transport is not None
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError) as exc:
            self.close()
            raise HostError(f"{self.name}: could not start `{command}`: {exc}") from None
        out, err = bytearray(), bytearray()
        pending = b""
        deadline = started + timeout
        try:
            while True:
                if channel.recv_ready():
                    chunk = channel.recv(65536)
                    out += chunk
                    if sink is not None:
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for line in lines:
                            sink(line.decode("utf-8", "replace").rstrip("\r"))
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                elif (
                    channel.exit_status_ready()
                    and not (channel.recv_ready() or channel.recv_stderr_ready())
                ) or (channel.closed and not channel.exit_status_ready()):
                    break
                elif time.monotonic() > deadline:
                    raise HostError(
                        f"{self.name}: `{command}` did not finish within {timeout:g} s "
                        f"(on {self.address})"
                    )
                else:
                    # Wakes when the channel has data (or closes), not on a poll's tick.
                    select.select(
                        [channel], [], [], min(0.1, max(0.0, deadline - time.monotonic()))
                    )
            if sink is not None and pending:
                sink(pending.decode("utf-8", "replace"))
            code = channel.recv_exit_status() if channel.exit_status_ready() else -1
        finally:
            channel.close()
        result = Result(
            code,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
            seconds=time.monotonic() - started,
            host=self.name,
            command=command,
        )
        return result.check() if check else result

    def start(self, argv: list[str]) -> Stream:
        transport = self.client().get_transport()
        assert transport is not None
        channel = transport.open_session()
        channel.exec_command(shlex.join(argv))
        stream = Stream(started=time.monotonic())
        out = channel.makefile("rb")
        err = channel.makefile_stderr("rb")

        def stamp(line: str) -> None:
            stream.lines.append((time.monotonic() - stream.started, line))

        def wait() -> None:
            stream.returncode = channel.recv_exit_status()

        def stop() -> None:
            channel.close()  # the remote process is killed by tag (kill_tagged)

        stream._stop = stop
        stream._threads = [
            threading.Thread(target=pump, args=(out.readline, stamp), daemon=True),
            threading.Thread(
                target=pump, args=(err.readline, stream.stderr_tail.append), daemon=True
            ),
        ]
        for thread in stream._threads:
            thread.start()
        threading.Thread(target=wait, daemon=True).start()
        return stream

    def upload(
        self,
        local: Path,
        remote: str,
        mode: int | None = None,
        skip_same_size: bool = False,
    ) -> None:
        """Copy `local` to `remote` by SFTP, whole or not at all (written beside it, then
        renamed), with `mode` if given. `skip_same_size` trusts a file of the same size
        already there (for files named by their content's hash)."""
        try:
            sftp = self.client().open_sftp()
        except paramiko.SSHException as exc:
            raise HostError(f"{self.name}: SFTP refused: {exc}") from None
        try:
            self.run(["mkdir", "-p", str(Path(remote).parent)], check=True)
            if skip_same_size:
                try:
                    if sftp.stat(remote).st_size == local.stat().st_size:
                        return
                except FileNotFoundError:
                    pass
            part = remote + ".part"
            try:
                sftp.put(str(local), part)
                if mode is not None:
                    sftp.chmod(part, mode)
                sftp.posix_rename(part, remote)
            except OSError as exc:
                raise HostError(f"{self.name}: uploading {local} to {remote}: {exc}") from None
        finally:
            sftp.close()

    def read(self, remote: str) -> str:
        """A remote file's text, by SFTP."""
        sftp = self.client().open_sftp()
        try:
            with sftp.open(remote) as f:
                data: bytes = f.read()
            return data.decode("utf-8", "replace")
        except OSError as exc:
            raise HostError(f"{self.name}: reading {remote}: {exc}") from None
        finally:
            sftp.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._jump is not None:
                self._jump.close()
                self._jump = None


GATEWAY = "gateway"  # the router: the inventory's network.gateway, by this name


class Hosts:
    """Every host and node of an inventory over SSH, one reused connection each, at the
    addresses the target maps the inventory's to."""

    def __init__(self, inventory: Any, target: Target, connect_timeout: float = 10.0) -> None:
        self.inventory = inventory
        self.target = target
        self.connect_timeout = connect_timeout
        self._hosts: dict[str, SshHost] = {}

    def address(self, name: str) -> str:
        inv = self.inventory
        if name == GATEWAY:
            return str(self.target.addresses.map(inv.network.gateway))
        for host in inv.hosts:
            if host.name == name:
                return str(self.target.addresses.map(host.address))
        for node in inv.nodes:
            if node.name == name:
                return str(self.target.addresses.map(node.address))
        known = [h.name for h in inv.hosts] + [n.name for n in inv.nodes] + [GATEWAY]
        raise HostError(f"no host or node named {name!r} in the inventory ({', '.join(known)})")

    def __getitem__(self, name: str) -> SshHost:
        if name not in self._hosts:
            self._hosts[name] = SshHost(
                name, self.address(name), self.target.ssh, self.connect_timeout
            )
        return self._hosts[name]

    def close(self) -> None:
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
