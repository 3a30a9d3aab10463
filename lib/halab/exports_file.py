"""/etc/exports as exportfs reads it: PATH CLIENT(OPTIONS) lines, comments, quoted paths
and backslash continuations. Light on purpose: the twin's NFS host reads it at start.
"""

from __future__ import annotations

import re

_ENTRY = re.compile(r"(?P<client>[^\s(]+)\((?P<options>[^)]*)\)")


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


def _covers(client: str, address: str) -> bool:
    from ipaddress import IPv4Address, IPv4Network

    try:
        return IPv4Address(address) in IPv4Network(client, strict=False)
    except ValueError:  # a host name, a wildcard or a netgroup: exportfs resolves those
        return False


def without_client(text: str, address: str, others: list[str]) -> tuple[str, list[str]]:
    """The exports with `address` no longer let in: every client entry that covers it (a
    subnet or the host itself) replaced by one entry per address of `others` it covers,
    with the same options; other lines kept as they are. Also the paths changed."""
    out, changed = [], []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split("#", 1)[0].strip()
        entries = list(_ENTRY.finditer(line))
        if not line or not any(_covers(m["client"], address) for m in entries):
            out.append(raw)
            continue
        head = line[: entries[0].start()].strip()
        kept = []
        for match in entries:
            if not _covers(match["client"], address):
                kept.append(match.group(0))
                continue
            kept += [f"{o}({match['options']})" for o in others if _covers(match["client"], o)]
        changed.append(head.strip('"'))
        # A path left with no client is not exported at all (exportfs would give it to *).
        if kept:
            out.append(f"{head} {' '.join(kept)}")
        else:
            out.append(f"# {raw}  (halab: {address} cut, no other client)")
    return "\n".join(out) + "\n", changed
