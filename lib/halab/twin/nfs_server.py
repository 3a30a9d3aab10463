"""The NFS host's server in the twin: the real nfs-ganesha (Debian's, VFS backend) serving
the inventory's exports from the host's own disk, on the host's twin address.

The exports are read from the same inventory data as the rendered external/<host>/exports,
option by option: `ro`/`rw` is the access, `no_root_squash`/`root_squash`/`all_squash` the
squash, `secure` (the default; `insecure` lifts it) a reserved client port, and the client
list is the inventory's subnet as the twin maps it. Facts and traps: reference/nfs-real.md.

ganesha wants rpcbind for NFSv3 (it exits when it cannot register), but rpcbind is a trap
here: it answers lookups with this machine's non-loopback address. So each NFS host gets a
private rpcbind in a network namespace of its own (only its own loopback there, nothing on
port 111 here) whose socket file sits in a directory of the host's, and ganesha registers
through that file, seeing it as /run in a mount namespace of its own. Clients never ask a
portmapper: the target gives them the ports (nfs_port 2049, mount_port 20048).
Both processes are in the host's process group, so `twin fail` takes them with the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

from halab.inventory import Inventory
from halab.inventory.model import NfsExport
from halab.twin.topology import twin_address

NFS_PORT = 2049
MOUNT_PORT = 20048
PLUGINS = "/usr/lib/x86_64-linux-gnu/ganesha"
UNRAID_NOBODY, UNRAID_USERS = 99, 100


@dataclass(frozen=True)
class NfsServerSpec:
    host: str
    address: str
    clients: str  # the subnet the exports admit, as the twin maps it
    root: Path  # the host's disk: an export's path is under it
    state: Path  # ganesha's config, log, pid, recovery dir and rpcbind's /run
    unraid: bool = False  # shares owned nobody:users, squashed to them (Unraid's defaults)


def spec_for(inv: Inventory, host_root: Path, state: Path, network: IPv4Network) -> NfsServerSpec:
    assert inv.storage.nfs is not None
    host = inv.host(inv.storage.nfs.host)
    subnet = inv.network.subnet
    clients = IPv4Network(f"{twin_address(subnet.network_address, network)}/{subnet.prefixlen}")
    return NfsServerSpec(
        host.name,
        str(twin_address(host.address, network)),
        str(clients),
        host_root,
        state,
        unraid=host.kind == "unraid",
    )


def export_block(
    number: int, export: NfsExport, spec: NfsServerSpec, clients: str | None = None
) -> str:
    options = set(export.options)
    access = "RO" if "ro" in options else "RW"
    squash = "No_Root_Squash" if "no_root_squash" in options else "Root_Squash"
    if "all_squash" in options:
        squash = "All_Squash"
    privileged = "false" if "insecure" in options else "true"
    # Unraid squashes to nobody:users (99:100), a Linux server to nobody (65534).
    anonymous = "Anonymous_Uid = 99; Anonymous_Gid = 100; " if spec.unraid else ""
    return (
        f"EXPORT {{ Export_Id = {number}; Path = {spec.root}{export.path}; "
        f"Pseudo = {export.path}; Access_Type = None; Squash = {squash}; {anonymous}"
        f"PrivilegedPort = {privileged}; FSAL {{ Name = VFS; }}\n"
        f"  CLIENT {{ Clients = {clients or spec.clients}; Access_Type = {access}; }} }}\n"
    )


def twin_clients(client: str, network: IPv4Network) -> str:
    """An exports(5) client as the twin serves it: an address or network mapped onto the
    twin's /24 by its last octet, `*` as it is. Names are refused: ganesha would look them
    up in DNS, which leaves loopback."""
    if client == "*":
        return client
    try:
        net = IPv4Network(client, strict=False)
    except ValueError:
        raise ValueError(
            f"client {client!r}: the twin's NFS server takes addresses, networks and * "
            "(a host name would be looked up in DNS, off this machine)"
        ) from None
    return f"{twin_address(net.network_address, network)}/{net.prefixlen}"


def file_exports(
    text: str, spec: NfsServerSpec, network: IPv4Network
) -> list[tuple[str, str, str]]:
    """(path, twin clients, options) for each line of an /etc/exports text."""
    from halab.exports_file import parse

    out = []
    for path, clients in parse(text).items():
        for client, options in clients.items():
            out.append((path, twin_clients(client, network), ",".join(sorted(options))))
    return out


def ganesha_conf(
    inv: Inventory,
    spec: NfsServerSpec,
    exports_text: str | None = None,
    network: IPv4Network | None = None,
) -> str:
    """ganesha's configuration: the inventory's exports, or those of an /etc/exports text
    (what `exportfs -ra` on the twin's NFS host reads)."""
    assert inv.storage.nfs is not None
    prefix = spec.address.replace(".", "_")
    head = (
        "# Written by the twin from the inventory's storage.nfs (as external/"
        f"{spec.host}/exports)\n"
        f"NFS_CORE_PARAM {{ Bind_addr = {spec.address}; NFS_Port = {NFS_PORT}; "
        f"MNT_Port = {MOUNT_PORT}; NLM_Port = 32803; Protocols = 3, 4; Enable_NLM = false; "
        "Enable_RQUOTA = false; Enable_UDP = false; mount_path_pseudo = true; "
        f"Plugins_Dir = {PLUGINS}; Dbus_Name_Prefix = halab_{prefix}; }}\n"
        "NFSV4 { Graceless = true; Lease_Lifetime = 10; RecoveryBackend = fs; "
        f"RecoveryRoot = {spec.state / 'recovery'}; Only_Numeric_Owners = true; }}\n"
        "NFS_KRB5 { Active_krb5 = false; }\n"
        "EXPORT_DEFAULTS { SecType = sys; Transports = TCP; Protocols = 3, 4; }\n"
    )
    if exports_text is None:
        exports = inv.storage.nfs.exports
        blocks = [export_block(i, e, spec) for i, e in enumerate(exports, start=1)]
        return head + "".join(blocks)
    assert network is not None
    blocks = []
    for i, (path, clients, options) in enumerate(
        file_exports(exports_text, spec, network), start=1
    ):
        export = NfsExport(name=f"line{i}", path=path, options=options.split(","), mount_path=path)
        blocks.append(export_block(i, export, spec, clients))
    return head + "".join(blocks)


def reload(
    inv: Inventory,
    spec: NfsServerSpec,
    exports_text: str,
    network: IPv4Network,
    ganesha: subprocess.Popen[bytes],
) -> None:
    """Write the configuration for `exports_text` and have ganesha re-read its exports
    (SIGHUP: added, changed and removed exports take effect without a restart)."""
    conf = ganesha_conf(inv, spec, exports_text, network)
    for path, _, _ in file_exports(exports_text, spec, network):
        (spec.root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (spec.state / "ganesha.conf").write_text(conf)
    if ganesha.poll() is not None:
        raise RuntimeError(f"the NFS server is not running; see {spec.state / 'nfs.log'}")
    ganesha.send_signal(signal.SIGHUP)


def start(
    inv: Inventory,
    spec: NfsServerSpec,
    exports_text: str | None = None,
    network: IPv4Network | None = None,
) -> list[subprocess.Popen[bytes]]:
    """rpcbind, then ganesha, both children of the calling host process; the exports are
    the inventory's, or `exports_text`'s (the host's /etc/exports)."""
    assert inv.storage.nfs is not None
    paths = [e.path for e in inv.storage.nfs.exports]
    if exports_text is not None and network is not None:
        paths += [p for p, _, _ in file_exports(exports_text, spec, network)]
    for path in paths:
        share = spec.root / path.lstrip("/")
        share.mkdir(parents=True, exist_ok=True)
        if spec.unraid:
            # An Unraid user share is drwxrwxrwx nobody:users, so a squashed client (a pod
            # as root on an export without no_root_squash) can still write to it.
            os.chown(share, UNRAID_NOBODY, UNRAID_USERS)
            share.chmod(0o777)
    run = spec.state / "run"
    for sub in (run, spec.state / "recovery"):
        sub.mkdir(parents=True, exist_ok=True)
    (run / "rpcbind.sock").unlink(missing_ok=True)
    conf = spec.state / "ganesha.conf"
    conf.write_text(ganesha_conf(inv, spec, exports_text, network))
    log = (spec.state / "nfs.log").open("ab")
    # Names the twin in their environment (rpcbind's command line does not), so checks
    # that `twin down` left nothing find them.
    env = {**os.environ, "HALAB_TWIN": str(spec.state)}
    rpcbind = subprocess.Popen(
        [
            "unshare",
            "--net",
            "--mount",
            "sh",
            "-c",
            'ip link set lo up && mount --bind "$0" /run && exec rpcbind -f -w',
            str(run),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 5
    while not (run / "rpcbind.sock").exists():
        if rpcbind.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"rpcbind did not start; see {spec.state / 'nfs.log'}")
        time.sleep(0.02)
    ganesha = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            'mount --bind "$0" /run && exec "$@"',
            str(run),
            "ganesha.nfsd",
            "-F",
            "-f",
            str(conf),
            "-L",
            str(spec.state / "ganesha.log"),
            "-p",
            str(spec.state / "ganesha.pid"),
            "-N",
            "NIV_EVENT",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    return [rpcbind, ganesha]
