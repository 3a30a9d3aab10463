"""The commands a twin machine answers over SSH where this machine cannot, in the output
formats of the real tools: `hostshim.py NAME ARGS...`, run by the wrappers ssh_world.py
puts on the machine's PATH. Standard library only and no halab imports: it starts in
tens of milliseconds inside the machine's sandbox.

Facts come from /run/halab/facts.json (the inventory's, where the machine cannot give
them); power, exports and Docker go to the host process's control socket (host_control.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, NoReturn

FACTS = "/run/halab/facts.json"
CONTROL = "/run/halab/control/sock"


def facts() -> dict[str, Any]:
    with open(FACTS) as f:
        data: dict[str, Any] = json.load(f)
    return data


def control(method: str, path: str, timeout: float = 120.0, body: Any = None) -> tuple[int, Any]:
    # Imported here: http.client costs tens of milliseconds, and most commands never ask.
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(CONTROL)

    conn = UnixConnection("twin", timeout=timeout)
    try:
        if body is None:
            conn.request(method, path)
        else:
            data = json.dumps(body).encode()
            conn.request(method, path, data, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    except OSError as exc:
        die(f"cannot reach the host's control socket: {exc}", 1)
    finally:
        conn.close()
    return resp.status, json.loads(body or b"null")


def die(message: str, code: int) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(code)


def unsupported(name: str, args: list[str]) -> NoReturn:
    die(f"{name} {' '.join(args)}: not something the twin's {name} answers (halab twin)", 1)


# -- sizes -------------------------------------------------------------------------------


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    return out


def nproc(args: list[str]) -> None:
    cpu = facts()["cpu"]
    print(cpu if cpu else os.cpu_count())


def _human(n: float) -> str:
    for unit in ("B", "Ki", "Mi", "Gi", "Ti"):
        if abs(n) < 1024 or unit == "Ti":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.1f}{unit}" if n < 10 else f"{round(n)}{unit}"
        n /= 1024
    return str(n)


def free(args: list[str]) -> None:
    f = facts()
    info = _meminfo()
    if f["memory_bytes"]:
        total = f["memory_bytes"]
        _, used_doc = control("GET", f"/machines/{f['name']}")
        used = min(int(used_doc.get("memory_used", 0)), total)
        buff, shared = 0, 0
    else:
        total = info["MemTotal"]
        buff = info.get("Buffers", 0) + info.get("Cached", 0)
        shared = info.get("Shmem", 0)
        used = total - info["MemFree"] - buff
    free_ = total - used - buff
    available = total - used
    divisor = {"-b": 1, "--bytes": 1, "-k": 1024, "-m": 1024**2, "-g": 1024**3}
    unit = next((divisor[a] for a in args if a in divisor), 1024)
    human = "-h" in args or "--human" in args

    def show(n: int) -> str:
        return _human(n) if human else str(n // unit)

    print(f"{'':8}{'total':>12}{'used':>12}{'free':>12}{'shared':>12}"
          f"{'buff/cache':>12}{'available':>12}")  # fmt: skip
    print(f"{'Mem:':<8}" + "".join(
        f"{show(v):>12}" for v in (total, used, free_, shared, buff, available)))  # fmt: skip
    print(f"{'Swap:':<8}" + "".join(f"{show(0):>12}" for _ in range(3)))


def lsblk(args: list[str]) -> None:
    disks = facts()["disks"]
    if not disks:
        os.execv("/usr/bin/lsblk", ["lsblk", *args])
    as_json = "-J" in args or "--json" in args
    in_bytes = "-b" in args or "--bytes" in args
    columns = ["NAME", "SIZE", "TYPE", "MOUNTPOINT"]
    for i, arg in enumerate(args):
        if arg in ("-o", "--output") and i + 1 < len(args):
            columns = [c.strip().upper() for c in args[i + 1].split(",")]
        elif arg.startswith("--output="):
            columns = [c.strip().upper() for c in arg.split("=", 1)[1].split(",")]

    def value(disk: dict[str, Any], column: str) -> Any:
        if column == "SIZE":
            return disk["size"] if in_bytes else f"{disk['size'] // 1024**3}G"
        if column in ("MOUNTPOINT", "MOUNTPOINTS"):
            return disk["mountpoint"]
        if column == "ROTA":
            return False
        return disk.get(column.lower(), "") or None

    if as_json:
        rows = [{c.lower(): value(d, c) for c in columns} for d in disks]
        print(json.dumps({"blockdevices": rows}, indent=3))
        return
    table = [columns] + [[str(value(d, c) or "") for c in columns] for d in disks]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    start = 1 if "-n" in args or "--noheadings" in args else 0
    for row in table[start:]:
        print(" ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def ip(args: list[str]) -> None:
    f = facts()
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] not in ("a", "addr", "address"):
        unsupported("ip", args)
    prefix = f["prefixlen"]
    parts = f["address"].split(".")
    host_bits = 32 - prefix
    broadcast_int = int.from_bytes(bytes(int(p) for p in parts), "big") | ((1 << host_bits) - 1)
    broadcast = ".".join(str(b) for b in broadcast_int.to_bytes(4, "big"))
    links = [
        ("lo", "LOOPBACK,UP,LOWER_UP", 65536, "127.0.0.1", 8, None, "host"),
        ("eth0", "BROADCAST,MULTICAST,UP,LOWER_UP", 1500, f["address"], prefix, broadcast,
         "global"),
    ]  # fmt: skip
    if "-j" in args or "-json" in args or "--json" in args:
        doc = [
            {
                "ifindex": i,
                "ifname": name,
                "flags": flags.split(","),
                "mtu": mtu,
                "operstate": "UNKNOWN" if name == "lo" else "UP",
                "addr_info": [
                    {"family": "inet", "local": addr, "prefixlen": plen, "scope": scope,
                     "label": name, **({"broadcast": brd} if brd else {})}
                ],
            }
            for i, (name, flags, mtu, addr, plen, brd, scope) in enumerate(links, start=1)
        ]  # fmt: skip
        print(json.dumps(doc))
        return
    oneline = "-o" in args or "-oneline" in args
    for i, (name, flags, mtu, addr, plen, brd, scope) in enumerate(links, start=1):
        brd_part = f" brd {brd}" if brd else ""
        if oneline:
            print(f"{i}: {name}    inet {addr}/{plen}{brd_part} scope {scope} {name}\\"
                  "       valid_lft forever preferred_lft forever")  # fmt: skip
            continue
        state = "UNKNOWN" if name == "lo" else "UP"
        qdisc = "noqueue" if name == "lo" else "fq_codel"
        print(f"{i}: {name}: <{flags}> mtu {mtu} qdisc {qdisc} state {state} group default "
              "qlen 1000")  # fmt: skip
        print(f"    inet {addr}/{plen}{brd_part} scope {scope} {name}")
        print("       valid_lft forever preferred_lft forever")


def uname(args: list[str]) -> None:
    import subprocess

    real = subprocess.run(["/usr/bin/uname", *args], capture_output=True, text=True)
    sys.stderr.write(real.stderr)
    out = real.stdout
    arch, machine = facts()["arch"], os.uname().machine
    if arch != machine:
        out = out.replace(machine, arch)
    sys.stdout.write(out)
    sys.exit(real.returncode)


def k3s(args: list[str]) -> None:
    if args[:1] in (["--version"], ["-v"], ["version"]):
        print(f"k3s version {facts()['k3s_version']} (halab-twin)")
        return
    unsupported("k3s", args)


def pveversion(args: list[str]) -> None:
    print(f"pve-manager/8/halab-twin (running kernel: {os.uname().release})")


# -- services and power ------------------------------------------------------------------


def systemctl(args: list[str]) -> None:
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] != "is-active":
        unsupported("systemctl", args)
    f = facts()
    quiet = "-q" in args or "--quiet" in args
    status = 0
    for unit in words[1:]:
        name = unit.removesuffix(".service")
        active = name in f["services"]
        if active and name in ("nfs-ganesha", "nfs-server"):
            _, doc = control("GET", f"/machines/{f['name']}")
            active = bool(doc.get("nfs_running"))
        if not quiet:
            print("active" if active else "inactive")
        status = status if active else 3
    sys.exit(status)


def sudo(args: list[str]) -> NoReturn:
    rest = list(args)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag == "--":
            break
        if flag in ("-u", "-g") and rest:
            rest.pop(0)
    if not rest:
        die("usage: sudo command", 1)
    os.execvp(rest[0], rest)


def _power(action: str) -> None:
    f = facts()
    if f["guest"]:
        path = f"/guests/{f['name']}/{'reboot' if action == 'reboot' else 'shutdown'}?later=1"
    else:
        path = f"/{action}"
    code, doc = control("POST", path)
    if code >= 300:
        die(str(doc.get("error", doc)), 1)


def poweroff(args: list[str]) -> None:
    _power("poweroff")


def reboot(args: list[str]) -> None:
    _power("reboot")


def shutdown(args: list[str]) -> None:
    _power("reboot" if "-r" in args or "--reboot" in args else "poweroff")


# -- hypervisors -------------------------------------------------------------------------


def _guests(kind: str | None = None) -> list[dict[str, Any]]:
    _, doc = control("GET", "/guests")
    return [g for g in doc if kind is None or g["kind"] == kind]


def _guest(ident: str, kind: str | None, missing: str) -> dict[str, Any]:
    for guest in _guests(kind):
        if ident in (str(guest["vmid"]), guest["name"]):
            return guest
    die(missing, 255 if kind else 1)


def _act(guest: dict[str, Any], action: str) -> dict[str, Any]:
    code, doc = control("POST", f"/guests/{guest['name']}/{action}")
    if code >= 300:
        die(str(doc.get("error", doc)), 255)
    result: dict[str, Any] = doc
    return result


def _proxmox(name: str, kind: str, conf_dir: str, args: list[str]) -> None:
    if not args:
        die(f"ERROR: no command specified\nUSAGE: {name} <COMMAND> [ARGS] [OPTIONS]", 255)
    verb, rest = args[0], args[1:]
    if verb == "list":
        if kind == "vm":
            print(f"{'VMID':>10} {'NAME':<20} {'STATUS':<10} {'MEM(MB)':<10} "
                  f"{'BOOTDISK(GB)':>12} {'PID':<10}")  # fmt: skip
            for g in _guests(kind):
                print(f"{g['vmid']:>10} {g['name']:<20} {_pve(g):<10} {g['memory_mb']:<10} "
                      f"{g['disk_gb']:>12.2f} {g['pid'] or 0:<10}")  # fmt: skip
        else:
            print(f"{'VMID':<10} {'Status':<10} {'Lock':<12} {'Name':<20}")
            for g in _guests(kind):
                print(f"{g['vmid']:<10} {_pve(g):<10} {'':<12} {g['name']:<20}")
        return
    if not rest:
        die(f"400 not enough arguments\n{name} {verb} <vmid>", 255)
    vmid = rest[0]
    what = "VM" if kind == "vm" else "CT"
    guest = _guest(
        vmid, kind, f"Configuration file 'nodes/{facts()['name']}/{conf_dir}/{vmid}.conf' "
        "does not exist"
    )  # fmt: skip
    if verb == "status":
        print(f"status: {_pve(guest)}")
    elif verb == "start":
        if guest["running"]:
            die(f"{what} {vmid} already running", 255)
        _act(guest, "start")
    elif verb in ("stop", "shutdown"):
        if not guest["running"]:
            if verb == "shutdown":
                die(f"{what} {vmid} not running", 255)
            return
        _act(guest, "stop" if verb == "stop" else "shutdown")
    elif verb == "reboot":
        _act(guest, "reboot")
    else:
        unsupported(name, args)


def _pve(guest: dict[str, Any]) -> str:
    return "running" if guest["running"] else "stopped"


def qm(args: list[str]) -> None:
    _proxmox("qm", "vm", "qemu-server", args)


def pct(args: list[str]) -> None:
    _proxmox("pct", "lxc-privileged", "lxc", args)


def virsh(args: list[str]) -> None:
    words = [a for a in args if not a.startswith("--")]
    if not words:
        unsupported("virsh", args)
    verb = words[0]
    if verb == "list":
        every = "--all" in args
        shown = [g for g in _guests() if every or g["running"]]
        if "--name" in args:
            for g in shown:
                print(g["name"])
            print()
            return
        print(f" {'Id':<4} {'Name':<20} State")
        print("-" * 33)
        for g in shown:
            ident = str(g["domain_id"]) if g["running"] else "-"
            print(f" {ident:<4} {g['name']:<20} {'running' if g['running'] else 'shut off'}")
        print()
        return
    if len(words) < 2:
        die(f"error: command '{verb}' requires <domain> option", 1)
    name = words[1]
    guest = _guest(name, None, f"error: failed to get domain '{name}'")
    if verb == "domstate":
        print("running" if guest["running"] else "shut off")
        print()
    elif verb == "start":
        if guest["running"]:
            die(f"error: Failed to start domain '{name}'\n"
                "error: Requested operation is not valid: domain is already active", 1)  # fmt: skip
        _act(guest, "start")
        print(f"Domain '{name}' started\n")
    elif verb in ("shutdown", "destroy"):
        if not guest["running"]:
            die(f"error: Failed to {verb} domain '{name}'\n"
                "error: Requested operation is not valid: domain is not running", 1)  # fmt: skip
        _act(guest, "shutdown?later=1" if verb == "shutdown" else "stop")
        print(f"Domain '{name}' is being shutdown\n" if verb == "shutdown"
              else f"Domain '{name}' destroyed\n")  # fmt: skip
    else:
        unsupported("virsh", args)


# -- NFS ---------------------------------------------------------------------------------


def exportfs(args: list[str]) -> None:
    flags = "".join(a.lstrip("-") for a in args if a.startswith("-"))
    if "r" in flags or "a" in flags:
        code, doc = control("POST", "/exports/reload")
        if code >= 300:
            die(f"exportfs: {doc.get('error', doc)}", 1)
        if "v" not in flags:
            return
        for line in doc["exports"]:
            print(f"exporting {line['client']}:{line['path']}")
        return
    if args and "v" not in flags:
        unsupported("exportfs", args)
    _, doc = control("GET", "/exports")
    for line in doc["exports"]:
        print(line["path"])
        print(f"\t\t{line['client']}({line['options']})")


# -- Docker (Unraid) ---------------------------------------------------------------------

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")


def _docker_call(method: str, path: str, body: Any = None) -> Any:
    code, doc = control(method, path, body=body)
    if code >= 300:
        die(str(doc.get("error", doc) if isinstance(doc, dict) else doc), 1)
    return doc


def _table(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
    """Docker's tables: columns three spaces apart, the last one unpadded."""
    cells = [[title for title, _ in columns]] + [[str(r[key]) for _, key in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _command_text(row: dict[str, Any], trunc: bool = True) -> str:
    command = row["Command"]
    if trunc and len(command) > 20:
        command = command[:19] + "\u2026"
    return f'"{command}"'


def _formatted(fmt: str, rows: list[dict[str, Any]]) -> None:
    """--format: json, or a Go template's {{.Field}} and {{json .}} (the subset in use)."""
    import re

    if fmt in ("json", "{{json .}}"):
        for row in rows:
            print(json.dumps({k: v for k, v in row.items() if k != "Runs"}))
        return
    template = fmt.removeprefix("table ").replace("\\t", "\t").replace("\\n", "\n")

    field = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
    for row in rows:
        parts = field.split(template)  # text, field, text, field, ...
        print("".join(str(row.get(p, "")) if i % 2 else p for i, p in enumerate(parts)))


def _ps_rows(rows: list[dict[str, Any]], args: list[str], compose: bool) -> None:
    fmt = _option(args, "--format")
    if "-q" in args or "--quiet" in args:
        for row in rows:
            print(row["ID"])
    elif fmt and fmt != "table":
        _formatted(fmt, rows)
    elif compose:
        for row in rows:
            row["_command"] = _command_text(row, trunc=False)
            row["_created"] = row["RunningFor"]
        _table([("NAME", "Name"), ("IMAGE", "Image"), ("COMMAND", "_command"),
                ("SERVICE", "Service"), ("CREATED", "_created"), ("STATUS", "Status"),
                ("PORTS", "Ports")], rows)  # fmt: skip
    else:
        for row in rows:
            row["_command"] = _command_text(row)
        _table([("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "_command"),
                ("CREATED", "RunningFor"), ("STATUS", "Status"), ("PORTS", "Ports"),
                ("NAMES", "Names")], rows)  # fmt: skip


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _positional(args: list[str], valued: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in valued:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _compose(args: list[str]) -> None:
    files: list[str] = []
    project = os.environ.get("COMPOSE_PROJECT_NAME")
    rest = list(args)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        value = flag.split("=", 1)[1] if "=" in flag else (rest.pop(0) if rest else "")
        flag = flag.split("=", 1)[0]
        if flag in ("-f", "--file"):
            files.append(value)
        elif flag in ("-p", "--project-name"):
            project = value
        else:
            unsupported("docker compose", args)
    if not rest:
        die("Usage:  docker compose [OPTIONS] COMMAND", 1)
    verb, options = rest[0], rest[1:]
    if len(files) > 1:
        die("halab twin: docker compose here reads one file (-f given more than once)", 1)
    if files:
        file = os.path.abspath(files[0])
        if not os.path.exists(file):
            die(f"open {file}: no such file or directory", 1)
    else:
        found = [f for f in COMPOSE_FILES if os.path.exists(f)]
        if not found:
            die("no configuration file provided: not found", 1)
        file = os.path.abspath(found[0])
    with open(file) as f:
        body: dict[str, Any] = {"text": f.read(), "file": file, "project": project}
    body["services"] = _positional(options, ("--tail", "--format", "-t", "--timeout"))
    if verb == "up":
        if not ({"-d", "--detach"} & set(options)):
            die("halab twin: docker compose up runs detached here: add -d "
                "(and read the output with docker compose logs)", 1)  # fmt: skip
        allowed = {"-d", "--detach", "--remove-orphans", "--quiet-pull", "--no-color", "--wait"}
        if any(o.startswith("-") and o not in allowed for o in options):
            unsupported("docker compose up", options)
        body["environment"] = dict(os.environ)  # the file's ${VARIABLES}, as compose reads them
        events = _docker_call("POST", "/docker/compose/up", body)["events"]
        sys.stderr.write("".join(e + "\n" for e in events))
    elif verb == "down":
        if any(o.startswith("-") and o != "--remove-orphans" for o in options):
            unsupported("docker compose down", options)
        events = _docker_call("POST", "/docker/compose/down", body)["events"]
        sys.stderr.write("".join(e + "\n" for e in events))
    elif verb == "ps":
        body["all"] = "-a" in options or "--all" in options
        _ps_rows(_docker_call("POST", "/docker/compose/ps", body), options, compose=True)
    elif verb == "logs":
        if "-f" in options or "--follow" in options:
            die("halab twin: docker compose logs does not follow here; run it again", 1)
        tail = _option(options, "--tail")
        logs = _docker_call("POST", "/docker/compose/logs", body)
        width = max((len(entry["service"]) for entry in logs), default=0)
        for entry in logs:
            lines = entry["text"].splitlines()
            if tail is not None and tail != "all":
                lines = lines[-int(tail) :] if int(tail) else []
            for line in lines:
                print(f"{entry['service']:<{width}}  | {line}")
    elif verb in ("start", "stop", "restart"):
        names = _docker_call("POST", f"/docker/compose/{verb}", body)["containers"]
        done = {"start": "Started", "stop": "Stopped", "restart": "Started"}[verb]
        sys.stderr.write("".join(f" Container {n}  {done}\n" for n in names))
    else:
        unsupported("docker compose", args)


def docker(args: list[str]) -> None:
    if not args:
        die("Usage:  docker [OPTIONS] COMMAND", 0)
    verb, rest = args[0], args[1:]
    if verb in ("--version", "-v"):
        # The engine is the twin's (docker_engine.py), and its build says so.
        print("Docker version 24.0.9, build halab-twin")
    elif verb == "compose":
        _compose(rest)
    elif verb == "ps":
        every = "-a" in rest or "--all" in rest
        _ps_rows(_docker_call("GET", "/docker/containers" + ("?all=1" if every else "")),
                 rest, compose=False)  # fmt: skip
    elif verb == "logs":
        names = _positional(rest, ("--tail", "-n", "--since", "--until"))
        if len(names) != 1:
            die('"docker logs" requires exactly 1 argument.', 1)
        text = _docker_call("GET", f"/docker/containers/{names[0]}/logs")["text"]
        tail = _option(rest, "--tail") or _option(rest, "-n")
        lines = text.splitlines(keepends=True)
        if tail is not None and tail != "all":
            lines = lines[-int(tail) :] if int(tail) else []
        sys.stdout.write("".join(lines))
    elif verb in ("start", "stop", "restart"):
        names = _positional(rest, ("-t", "--time"))
        if not names:
            die(f'"docker {verb}" requires at least 1 argument.', 1)
        for name in names:
            _docker_call("POST", f"/docker/containers/{name}/{verb}")
            print(name)
    else:
        unsupported("docker", args)


COMMANDS = {
    "nproc": nproc, "free": free, "lsblk": lsblk, "ip": ip, "uname": uname, "k3s": k3s,
    "pveversion": pveversion, "systemctl": systemctl, "sudo": sudo, "poweroff": poweroff,
    "reboot": reboot, "shutdown": shutdown, "qm": qm, "pct": pct, "virsh": virsh,
    "exportfs": exportfs, "docker": docker,
}  # fmt: skip


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die("usage: hostshim.py COMMAND ARGS...", 2)
    with contextlib.suppress(BrokenPipeError):  # `| head` closed the pipe: fine
        COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
