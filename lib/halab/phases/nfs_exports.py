"""Phase 3's look at the NFS server's own /etc/exports over SSH, against the rendered one.

Each rendered line is `PATH CLIENT(OPTIONS)`; the server's file may hold more lines and
more clients a path. A rendered path missing on the server, or exported to the cluster's
clients with other options (compared as sets: order does not matter to exportfs), is a
difference named with both lines. Paths only the server has are listed, not failed.
"""

from __future__ import annotations

import re
from typing import Any

from halab.context import Context
from halab.evidence import Check, timed
from halab.phases.cluster_checks import Verdict, no_target
from halab.render import external

_ENTRY = re.compile(r"(?P<client>[^\s(]+)\((?P<options>[^)]*)\)")
EXPORTS = "/etc/exports"


def parse(text: str) -> dict[str, dict[str, frozenset[str]]]:
    """path -> client -> options, from exports(5) text (comments and blank lines skipped,
    backslash continuations joined)."""
    out: dict[str, dict[str, frozenset[str]]] = {}
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith('"'):  # a quoted path may hold spaces
            path, _, rest = line[1:].partition('"')
        else:
            path, _, rest = line.partition(" ")
        clients = out.setdefault(path, {})
        for match in _ENTRY.finditer(rest):
            options = frozenset(o.strip() for o in match["options"].split(",") if o.strip())
            clients[match["client"]] = options
    return out


def differences(rendered: str, live: str) -> tuple[list[str], list[str]]:
    """(what the server lacks or exports otherwise, paths only the server exports)."""
    want, have = parse(rendered), parse(live)
    wrong = []
    for path, clients in want.items():
        for client, options in clients.items():
            got = have.get(path, {}).get(client)
            if got is None:
                wrong.append(f"{path} {client}({','.join(sorted(options))}) is not exported")
            elif got != options:
                wrong.append(
                    f"{path} {client}: the server has ({','.join(sorted(got))}), the render "
                    f"({','.join(sorted(options))})"
                )
    extra = sorted(set(have) - set(want))
    return wrong, extra


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
