"""The NFS connector: a real NFSv3 client (nfs-rs) for export listings and read/write
probes, from a chosen source address, each call with a deadline.

The same calls check the NFS server at home and the twin's; the target says the ports
(`nfs: {nfs_port, mount_port}`): no portmapper is asked (see nfs_relay).
NFSv3 because nfs-rs's v4 export-root listing fails on ganesha (reference/nfs-real.md).
Every connection goes through nfs_relay.Relay, so it starts from the source asked for
and passes the network guard. Errors name the server, the export and the address tried.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from halab.errors import StepError
from halab.nfs_relay import Relay, RelayError

NFS_PORT = 2049


class NfsError(StepError):
    """An NFS server refused or could not be reached; the message says where."""

    def __init__(self, where: str, what: str, errno: int | None = None) -> None:
        self.where, self.what, self.errno = where, what, errno
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class Endpoint:
    """One NFS server as this machine reaches it."""

    address: str
    nfs_port: int = NFS_PORT
    mount_port: int | None = None  # mountd's TCP port; the target's nfs.mount_port

    def where(self, export: str = "", source: str | None = None) -> str:
        text = f"nfs://{self.address}{export}"
        return f"{text} from {source}" if source else text


def _error_text(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "message", "") or exc).split())


@contextmanager
def connection(
    endpoint: Endpoint, export: str, source: str | None = None, timeout: float = 5.0
) -> Iterator[Any]:
    """An nfs-rs client on `export`, every connection from `source`; closed on exit."""
    import nfs_rs

    where = endpoint.where(export, source)
    port = _mount_port(endpoint, where)
    relays = [
        Relay((endpoint.address, endpoint.nfs_port), source, timeout),
        Relay((endpoint.address, port), source, timeout),
    ]
    try:
        try:
            client = nfs_rs.Client.connect(
                f"nfs://127.0.0.1{export}",
                versions=["3"],
                nfs_port=relays[0].port,
                mount_port=relays[1].port,
                noresvport=True,  # to the relay; the relay takes a reserved port outward
                connect_timeout=timeout,
                operation_timeout=timeout,
                uid=0,
                gid=0,
            )
        except (nfs_rs.NfsError, OSError) as exc:
            raise _refused(where, exc, relays) from None
        try:
            yield client
        finally:
            client.close()
    finally:
        for relay in relays:
            relay.close()


def _mount_port(endpoint: Endpoint, where: str) -> int:
    if endpoint.mount_port is None:
        raise NfsError(
            where,
            "no mount port: set the target's nfs.mount_port to mountd's TCP port (`rpcinfo -p "
            "SERVER` lists it as mountd v3 tcp; pin it with rpc.mountd's --port at home)",
        )
    return endpoint.mount_port


def _refused(where: str, exc: BaseException, relays: list[Relay]) -> NfsError:
    reasons = [r.last_error for r in relays if r.last_error is not None]
    if reasons:  # the relay knows why: the server's address refused or timed out
        return NfsError(where, f"cannot connect: {reasons[0]}", reasons[0].errno)
    return NfsError(where, _error_text(exc), getattr(exc, "errno", None))


def list_exports(endpoint: Endpoint, source: str | None = None, timeout: float = 5.0) -> list[str]:
    """The paths the server exports (its MOUNT service's list, as `showmount -e` shows)."""
    import nfs_rs

    where = endpoint.where(source=source)
    port = _mount_port(endpoint, where)
    relay = Relay((endpoint.address, port), source, timeout)
    try:
        entries = nfs_rs.list_exports(
            "127.0.0.1",
            versions=["3"],
            mount_port=relay.port,
            nfs_port=endpoint.nfs_port,
            noresvport=True,
            connect_timeout=timeout,
            operation_timeout=timeout,
        )
    except (nfs_rs.NfsError, OSError) as exc:
        raise _refused(where, exc, [relay]) from None
    finally:
        relay.close()
    return sorted(e.path for e in entries)


@dataclass
class Probe:
    """What one export let a client from one address do."""

    server: str
    export: str
    source: str | None
    listed: int = -1  # entries at the export's top; -1 when it could not be listed
    readable: bool = False
    write: str = "not tried"  # "written", "refused: EROFS ...", or the error
    error: str = ""
    seconds: float = 0.0
    entries: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.readable and not self.error

    def row(self) -> dict[str, Any]:
        return {
            "export": self.export,
            "from": self.source or "(this machine)",
            "entries": self.listed if self.listed >= 0 else "-",
            "read": "yes" if self.readable else "no",
            "write": self.write,
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }


def probe(
    endpoint: Endpoint,
    export: str,
    source: str | None = None,
    write: bool = False,
    timeout: float = 5.0,
) -> Probe:
    """List `export`, read its first file's first bytes and, with `write`, create and
    remove a probe file. Never raises for what the server says: the Probe holds it."""
    import nfs_rs

    result = Probe(endpoint.address, export, source)
    started = time.monotonic()
    try:
        with connection(endpoint, export, source, timeout) as client:
            result.entries = sorted(client.listdir("/"))
            result.listed = len(result.entries)
            result.readable = True
            first = _first_file(client, "/", depth=3)
            if first is not None:
                with client.open(first, "rb") as handle:
                    handle.read(4096)
            if write:
                name = f"/.halab-probe-{uuid.uuid4().hex[:8]}"
                try:
                    with client.open(name, "wb") as handle:
                        handle.write(b"halab nfs probe\n")
                    client.unlink(name)
                    result.write = "written"
                except nfs_rs.NfsError as exc:
                    result.write = f"refused: {_errno_name(exc)} {_error_text(exc)}".strip()
    except NfsError as exc:
        result.error = exc.what
    except (nfs_rs.NfsError, OSError) as exc:
        result.error = _error_text(exc)
    result.seconds = time.monotonic() - started
    return result


def _errno_name(exc: BaseException) -> str:
    import errno as errno_names

    code = getattr(exc, "errno", None)
    return errno_names.errorcode.get(code, "") if isinstance(code, int) else ""


def _first_file(client: Any, directory: str, depth: int) -> str | None:
    for entry in sorted(client.scandir(directory), key=lambda e: e.name):
        if entry.info.type.value == "file":
            return str(entry.path)
    if depth > 0:
        for entry in sorted(client.scandir(directory), key=lambda e: e.name):
            if entry.info.type.value == "directory":
                found = _first_file(client, str(entry.path), depth - 1)
                if found:
                    return found
    return None


def checksums(
    endpoint: Endpoint,
    export: str,
    paths: list[str],
    timeout: float = 10.0,
    source: str | None = None,
) -> dict[str, str]:
    """sha256 of each file (paths inside the export), read over NFS from `source`."""
    out = {}
    with connection(endpoint, export, source, timeout) as client:
        for name in paths:
            digest = hashlib.sha256()
            with client.open(name, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            out[name] = digest.hexdigest()
    return out


__all__ = [
    "Endpoint",
    "NfsError",
    "Probe",
    "RelayError",
    "checksums",
    "connection",
    "list_exports",
    "probe",
]
