"""Phase 3's look at the NFS server's own /etc/exports over SSH, against the rendered one.

Each rendered line is `PATH CLIENT(OPTIONS)`; the server's file may hold more lines and
more clients a path. A rendered path missing on the server, or exported to the cluster's
clients with other options (compared as sets: order does not matter to exportfs), is a
difference named with both lines. Paths only the server has are listed, not failed.
"""

from __future__ import annotations

from typing import Any

from halab.context import Context
from halab.evidence import Check, timed
from halab.exports_file import differences
from halab.phases.cluster_checks import Verdict, no_target
from halab.render import external

EXPORTS = "/etc/exports"


def check_server_exports(ctx: Context, path: str = EXPORTS, timeout: float = 15) -> Check:
    """The NFS host's exports file, read over SSH (halab.hosts), against the rendered one."""
    cid, title = "server-exports", "The NFS server's /etc/exports matches the rendered one"
    nfs = ctx.inventory.storage.nfs
    if nfs is None:
        return Check(cid, title, "skip", "the inventory has no storage.nfs")
    if ctx.target is None:
        return no_target(cid, title)
    if why := ctx.target.lacks("ssh"):
        return Check(cid, title, "skip", why)
    target = ctx.target
    host = ctx.inventory.host(nfs.host)

    def run() -> Verdict:
        from halab.hosts import SshHost

        ssh: Any = SshHost(host.name, str(target.addresses.map(host.address)), target.ssh)
        try:
            done = ssh.run(["cat", path], timeout=timeout)
        finally:
            ssh.close()
        if done.returncode != 0:
            return (
                "fail",
                f"{host.name}: cat {path} exited {done.returncode}: {done.stderr.strip()}",
            )
        wrong, extra = differences(external.exports(ctx.inventory), done.stdout)
        also = f"; it also exports {', '.join(extra)}" if extra else ""
        if wrong:
            return "fail", (
                f"{host.name}:{path}: " + "; ".join(wrong) + also + " (put the rendered "
                f"external/{host.name}/exports there and run exportfs -ra)"
            )
        return "pass", f"{host.name}:{path} exports every rendered line{also}"

    return timed(cid, title, run)
