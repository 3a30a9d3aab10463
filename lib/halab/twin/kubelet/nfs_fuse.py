"""The twin kubelet's NFS mount: one export mounted as a directory through FUSE, over the
real NFSv3 client (halab.nfs, nfs-rs), because this machine's kernel has no NFS client.

It behaves as a default NFS mount does at home (`hard`): a call the server cannot answer
is retried until it can, so a reader waits while the server is down and finishes when it
is back; a caller that is signalled gets EINTR instead of waiting on (Linux's NFS client
lets a fatal signal end a hard wait the same way). `--soft N` gives EIO after N seconds.
Read-only where the volume says so (`ro`: the kernel answers EROFS before asking), and
the server's own refusals (a write to a read-only export) come back as their errno.
Nothing is cached beyond the kernel's page cache: with the server gone there is no copy.

Run by the kubelet (kubelet/nfs.py):
python -m halab.twin.kubelet.nfs_fuse --server A --export P --mountpoint M [--source S]
    [--nfs-port N] [--mount-port N] [--ro] [--soft SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import mfusepy as fuse
import nfs_rs

from halab.nfs import Endpoint, NfsError, connection

log = logging.getLogger("halab.twin.nfs_fuse")
T = TypeVar("T")
ATTEMPT_S = 2.0  # each NFS call's own deadline; a hard mount retries after it
# Failures that mean "the server did not answer": retried. Everything else is the
# server's answer (ENOENT, EROFS, EACCES ...) and goes straight back to the caller.
UNANSWERED = (nfs_rs.NfsTimeoutError, nfs_rs.NfsConnectionError, nfs_rs.NfsRpcError)
TYPES = {
    "file": stat.S_IFREG,
    "directory": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "block_device": stat.S_IFBLK,
    "character_device": stat.S_IFCHR,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}


def _interrupted() -> bool:
    # libfuse marks a request whose caller got a signal (the kernel sends INTERRUPT).
    return bool(fuse._libfuse.fuse_interrupted())


class NfsExport(fuse.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, client: Any, soft_s: float | None) -> None:
        self.client = client
        self.soft_s = soft_s
        self.stopping = False  # set when the daemon ends: waiting calls give up
        self.handles: dict[int, Any] = {}
        self.next_handle = 1
        self.guard = threading.Lock()

    # -- the retry rule every call goes through ------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.monotonic()
        warned = False
        while True:
            try:
                result = fn(*args, **kwargs)
                if warned:  # as Linux's client says it once the server answers again
                    log.warning("nfs: server OK")
                return result
            except UNANSWERED as exc:
                if not warned:
                    log.warning("nfs: server not responding, still trying (%s)", exc)
                    warned = True
                if self.soft_s is not None and time.monotonic() - started > self.soft_s:
                    raise fuse.FuseOSError(errno.EIO) from None
                if _interrupted():
                    raise fuse.FuseOSError(errno.EINTR) from None
                if self.stopping:
                    raise fuse.FuseOSError(errno.EIO) from None
                time.sleep(0.2)
            except nfs_rs.NfsError as exc:
                code = exc.errno if isinstance(exc.errno, int) and exc.errno else errno.EIO
                raise fuse.FuseOSError(code) from None

    # -- metadata ------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        info = self._call(self.client.stat, path)
        return {
            "st_mode": TYPES.get(info.type.value, stat.S_IFREG) | (info.mode & 0o7777),
            "st_nlink": info.nlink,
            "st_uid": info.uid,
            "st_gid": info.gid,
            "st_size": info.size,
            "st_blocks": (info.used + 511) // 512,
            "st_atime": info.atime,
            "st_mtime": info.mtime,
            "st_ctime": info.ctime,
            "st_ino": info.fileid,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self._call(self.client.listdir, path)]

    def readlink(self, path: str) -> str:
        return str(self._call(self.client.readlink, path))

    def statfs(self, path: str) -> dict[str, Any]:
        fs = self._call(self.client.fs_stat)
        block = 4096
        return {
            "f_bsize": block,
            "f_frsize": block,
            "f_blocks": fs.total_bytes // block,
            "f_bfree": fs.free_bytes // block,
            "f_bavail": fs.available_bytes // block,
            "f_files": fs.total_files,
            "f_ffree": fs.free_files,
            "f_favail": fs.available_files,
            "f_namemax": 255,
        }

    def chmod(self, path: str, mode: int) -> int:
        self._call(self.client.chmod, path, mode & 0o7777)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        self._call(self.client.chown, path, uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        now = time.time_ns()
        self._call(self.client.utime, path, ns=times or (now, now))
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._call(self.client.truncate, path, length)
        return 0

    # -- names ---------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        self._call(self.client.mkdir, path, mode & 0o7777)
        return 0

    def rmdir(self, path: str) -> int:
        self._call(self.client.rmdir, path)
        return 0

    def unlink(self, path: str) -> int:
        self._call(self.client.unlink, path)
        return 0

    def rename(self, old: str, new: str) -> int:
        self._call(self.client.rename, old, new)
        return 0

    def symlink(self, target: str, source: str) -> int:
        # mfusepy passes (link path, what it points to)
        self._call(self.client.symlink, source, target)
        return 0

    def link(self, target: str, source: str) -> int:
        self._call(self.client.link, source, target)
        return 0

    # -- data ----------------------------------------------------------------------------

    def _keep(self, handle: Any) -> int:
        with self.guard:
            number = self.next_handle
            self.next_handle += 1
            self.handles[number] = handle
        return number

    def open(self, path: str, flags: int) -> int:
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        handle = self._call(self.client.open, path, "r+b" if writing else "rb")
        if flags & os.O_TRUNC and writing:
            self._call(self.client.truncate, path, 0)
        return self._keep(handle)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        handle = self._call(self.client.open, path, "w+b")
        self._call(self.client.chmod, path, mode & 0o7777)
        return self._keep(handle)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return bytes(self._call(self.handles[fh].read_at, offset, size))

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return int(self._call(self.handles[fh].write_at, data, offset))

    def flush(self, path: str, fh: int) -> int:
        self._call(self.handles[fh].flush)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        return self.flush(path, fh)

    def release(self, path: str, fh: int) -> int:
        with self.guard:
            handle = self.handles.pop(fh, None)
        if handle is not None:
            # close(2) has returned already; what it wrote was flushed before
            with contextlib.suppress(fuse.FuseOSError):
                self._call(handle.close)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m halab.twin.kubelet.nfs_fuse")
    parser.add_argument("--server", required=True)
    parser.add_argument("--export", required=True)
    parser.add_argument("--mountpoint", required=True)
    parser.add_argument("--source")
    parser.add_argument("--nfs-port", type=int, default=2049)
    parser.add_argument("--mount-port", type=int)
    parser.add_argument("--ro", action="store_true")
    parser.add_argument("--soft", type=float)
    parser.add_argument("--name", help="SERVER:EXPORT as the volume names it, for messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nfs %(levelname)s %(message)s")
    # libfuse interrupts a worker thread with SIGUSR1, whose default action ends us.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    endpoint = Endpoint(args.server, args.nfs_port, args.mount_port)
    what = args.name or f"{args.server}:{args.export}"
    mounted = False
    try:
        with connection(endpoint, args.export, args.source, ATTEMPT_S) as client:
            # The first look at the export answers like mount(8) does: a missing export
            # or a refused client fails the mount rather than the first read.
            client.listdir("/")
            print(f"mounted {what} on {args.mountpoint}", flush=True)
            mounted = True
            export = NfsExport(client, args.soft)
            try:
                fuse.FUSE(
                    export,
                    args.mountpoint,
                    foreground=True,
                    allow_other=True,
                    default_permissions=True,
                    ro=args.ro,
                    fsname=what,
                    subtype="nfs",
                )
            except BaseException as exc:  # libfuse's loop failed: said, and gone below
                print(f"nfs: the FUSE loop ended with {type(exc).__name__}: {exc}", flush=True)
            # Unmounted, told to stop or failed: calls still retrying a dead server end
            # now, and the process goes without waiting for them (closing the client
            # would), nor for any thread, so nothing holds the mount after it.
            export.stopping = True
            _leave(args.mountpoint, 0)
    except (NfsError, nfs_rs.NfsError) as exc:
        print(mount_nfs_says(what, exc), file=sys.stderr, flush=True)
        if mounted:  # a failure after the mount was made still takes the mount away
            _leave(args.mountpoint, 32)
        return 32  # mount(8)'s "mount failure"
    return 0


def _leave(mountpoint: str, code: int) -> None:
    """Exit at once, the mount lazily detached first if it is still there (a FUSE mount
    whose daemon is gone would stay behind as a dead entry)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.spawnvp(os.P_WAIT, "fusermount3", ["fusermount3", "-uzq", mountpoint])
    os._exit(code)


def mount_nfs_says(what: str, exc: BaseException) -> str:
    """The failure as Linux's mount.nfs words it, with the client's own text after."""
    text = " ".join(str(getattr(exc, "what", "") or exc).split())
    if "access denied" in text.lower():
        return f"mount.nfs: access denied by server while mounting {what}"
    if "refused" in text.lower():
        return f"mount.nfs: Connection refused ({text})"
    if "timed out" in text.lower() or "deadline" in text.lower():
        return f"mount.nfs: Connection timed out ({text})"
    return f"mount.nfs: mounting {what} failed: {text}"


if __name__ == "__main__":
    sys.exit(main())
