"""Reaching a host over SSH (paramiko): run, stream, upload.

Host keys are checked against known_hosts by default (an unknown host is refused, never
added silently), and ~/.ssh/config is honoured for user, port and identity file.
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path

import paramiko

from halab.errors import StepError
from halab.streams import Completed, Stream, pump
from halab.target import SshSettings


class HostError(StepError):
    """A host could not be reached, or refused us (unknown host key, bad credentials)."""


class SshHost:
    def __init__(
        self, name: str, address: str, settings: SshSettings, connect_timeout: float = 10.0
    ) -> None:
        self.name = name
        self.address = address
        self.settings = settings
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def _options(self) -> dict[str, object]:
        opts: dict[str, object] = {
            "hostname": self.address,
            "port": self.settings.port,
            "username": self.settings.user,
        }
        config_path = Path(self.settings.config_file).expanduser()
        if config_path.is_file():
            config = paramiko.SSHConfig.from_path(str(config_path)).lookup(self.address)
            opts["hostname"] = config.get("hostname", self.address)
            if "port" in config and self.settings.port == 22:
                opts["port"] = int(config["port"])
            if "user" in config and self.settings.user == "root":
                opts["username"] = config["user"]
            if "identityfile" in config and not self.settings.key_file:
                opts["key_filename"] = [str(Path(p).expanduser()) for p in config["identityfile"]]
        if self.settings.key_file:
            opts["key_filename"] = str(Path(self.settings.key_file).expanduser())
        return opts

    def client(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is None:
                client = paramiko.SSHClient()
                known = Path(self.settings.known_hosts).expanduser()
                if known.is_file():
                    client.load_host_keys(str(known))
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
                opts = self._options()
                try:
                    client.connect(
                        **opts,
                        timeout=self.connect_timeout,
                        allow_agent=False,
                        look_for_keys=False,
                    )
                except paramiko.SSHException as exc:
                    raise HostError(
                        f"{self.name}: SSH to {opts['hostname']}:{opts['port']} failed: {exc}"
                        + (
                            " (add its key to known_hosts)"
                            if "not found in known_hosts" in str(exc)
                            else ""
                        )
                    ) from exc
                except OSError as exc:
                    raise HostError(
                        f"{self.name}: cannot reach {opts['hostname']}:{opts['port']}: {exc}"
                    ) from exc
                self._client = client
            return self._client

    def run(self, argv: list[str] | str, timeout: float = 60.0) -> Completed:
        command = argv if isinstance(argv, str) else shlex.join(argv)
        _, out, err = self.client().exec_command(command, timeout=timeout)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        return Completed(out.channel.recv_exit_status(), stdout, stderr)

    def start(self, argv: list[str]) -> Stream:
        channel = self.client().get_transport().open_session()
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

    def upload(self, local: Path, remote: str) -> None:
        sftp = self.client().open_sftp()
        try:
            parent = str(Path(remote).parent)
            self.run(["mkdir", "-p", parent])
            try:
                if sftp.stat(remote).st_size == local.stat().st_size:
                    return  # already there: clips are named by content hash
            except FileNotFoundError:
                pass
            sftp.put(str(local), remote + ".part")
            sftp.posix_rename(remote + ".part", remote)
        finally:
            sftp.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
