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
