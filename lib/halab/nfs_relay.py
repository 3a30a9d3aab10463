"""The sockets under the NFS connector: a relay that makes every NFS connection from a
chosen source address.

nfs-rs opens its own sockets (Rust, not Python's `socket`), so it can neither bind a
source address nor be seen by the kit's network guard. The kit therefore points nfs-rs
at a relay on 127.0.0.1 and the relay makes the real connection in Python: from the
source address asked for (a node's, to prove "accessible from all nodes" where the
server's exports admit only the cluster's subnet), from a reserved port when it can
(a Linux server's exports are `secure` unless they say `insecure`), and through the
guard, which refuses anything off loopback in tests and in the twin.

No portmapper is asked: the target gives the ports. rpcbind's lookups (what `showmount
-e` and `rpcinfo -t` use) answer with a universal address, and on this machine that is
its own non-loopback one (reference/nfs-real.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading

RESERVED_PORTS = range(1023, 599, -1)


class RelayError(OSError):
    """The relay could not reach the server; the message names the address tried."""


def bound_connect(server: tuple[str, int], source: str | None, timeout: float) -> socket.socket:
    """A TCP connection to `server` from `source` (any address of this machine when
    None), from a reserved port when this process may take one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _bind(sock, source or "0.0.0.0")
        sock.connect(server)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:
            raise RelayError(
                exc.errno,
                f"{source} is not an address of this machine, so no connection can come "
                "from it: run the probe on the machine that has it",
            ) from None
        raise RelayError(exc.errno or 0, f"{server[0]}:{server[1]}: {exc.strerror or exc}") from exc
    sock.settimeout(None)
    return sock


def _bind(sock: socket.socket, source: str) -> None:
    if os.geteuid() == 0:
        for port in RESERVED_PORTS:
            try:
                sock.bind((source, port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
    sock.bind((source, 0))


class Relay:
    """Listens on 127.0.0.1 (an ephemeral port) and joins every connection to `server`
    through a new connection from `source`; close() ends them all."""

    def __init__(self, server: tuple[str, int], source: str | None, timeout: float) -> None:
        self.server, self.source, self.timeout = server, source, timeout
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.last_error: RelayError | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="nfs-relay").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                inner, _ = self.listener.accept()
            except OSError:
                return
            try:
                outer = bound_connect(self.server, self.source, self.timeout)
            except OSError as exc:
                # nfs-rs sees the connection drop and treats it as the server's: a hard
                # caller retries, a probe reports it. The reason stays for the error text.
                self.last_error = exc if isinstance(exc, RelayError) else RelayError(0, str(exc))
                inner.close()
                continue
            self.last_error = None
            with self._lock:
                self._open |= {inner, outer}
            for a, b in ((inner, outer), (outer, inner)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                for sock in (src, dst):
                    if sock in self._open:
                        self._open.discard(sock)
                        sock.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()
