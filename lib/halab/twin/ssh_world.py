"""What a twin machine (a physical host, or a VM/LXC node) is to someone who logs in over
SSH: a real OpenSSH sshd on its twin address, and every command run in that machine's
world, a bubblewrap sandbox with its own hostname, /etc (os-release, hostname, exports),
home, /tmp and /mnt from its own disk, and small commands (hostshim.py) answering what
this machine cannot: the inventory's architecture, cores, memory and disks, the
hypervisor's qm/pct/virsh, poweroff, systemctl, exportfs, Unraid's docker.

Keys and client files are made once by the supervisor (`prepare`); each sshd is started
by the process that is its machine (the host process, or the guest's), so it goes down
with it. Logins skip the user's shell start-up files: ForceCommand runs the login script
with SHLVL=1, which bash takes as "not the first shell", so root's .bashrc (pyenv here,
a quarter of a second each command) is not read.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from halab.inventory import Inventory
from halab.inventory.model import Host as InventoryHost
from halab.inventory.model import Node
from halab.twin.devices import device_nodes
from halab.twin.gateway import GATEWAY, vty_dir
from halab.twin.guests import guest_ids
from halab.twin.topology import twin_address

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SHIM = Path(__file__).with_name("hostshim.py")
GIB = 1024**3
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# What each kind of host's /etc/os-release says (Proxmox VE is Debian underneath, and
# says so there; `pveversion` names it).
HOST_OS = {
    "proxmox": {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)",
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
        "VERSION_CODENAME": "bookworm",
        "ID": "debian",
    },
    "unraid": {
        "PRETTY_NAME": "Unraid OS 6.12",
        "NAME": "Unraid",
        "VERSION_ID": "6.12",
        "ID": "unraid",
    },
    "raspberry-pi": {
        "PRETTY_NAME": "Ubuntu 22.04.4 LTS",
        "NAME": "Ubuntu",
        "VERSION_ID": "22.04",
        "VERSION_CODENAME": "jammy",
        "ID": "ubuntu",
    },
    "generic": {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)",
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
        "ID": "debian",
    },
}
GATEWAY_OS = {
    "PRETTY_NAME": "UniFi OS 4",
    "NAME": "UniFi OS",
    "VERSION_ID": "4",
    "ID": "unifi",
    "ID_LIKE": "debian",
}
CODENAMES = {"22.04": "jammy", "24.04": "noble", "20.04": "focal", "12": "bookworm"}


def ssh_port() -> int:
    """22 as at home when this machine lets us bind it (root), else 2222."""
    return 22 if os.geteuid() == 0 else 2222


def ssh_user() -> str:
    # sshd with UsePAM no can only log in the user it may switch to: root may be anyone,
    # anyone else only themselves. The twin logs in as whoever runs it.
    return getpass.getuser()


def node_os(node: Node) -> dict[str, str]:
    ident, _, version = node.os.partition("-")
    name = {"ubuntu": "Ubuntu", "debian": "Debian GNU/Linux"}.get(ident, ident.capitalize())
    pretty = f"{name} {version}" + (" LTS" if ident == "ubuntu" and version.endswith(".04") else "")
    return {
        "PRETTY_NAME": pretty,
        "NAME": name,
        "VERSION_ID": version,
        "VERSION_CODENAME": CODENAMES.get(version, ""),
        "ID": ident,
    }


@dataclass(frozen=True)
class Machine:
    """One SSH endpoint of the twin: a physical host (with its bare-metal node, if any) or
    a guest node."""

    name: str
    host: str  # the physical host it is, or runs on
    address: str  # its twin address
    world: Path
    guest: bool


def machines(inv: Inventory, directory: Path, network: IPv4Network) -> list[Machine]:
    out = []
    for host in inv.hosts:
        out.append(
            Machine(
                host.name,
                host.name,
                str(twin_address(host.address, network)),
                directory / "hosts" / host.name / "ssh",
                guest=False,
            )
        )
    if inv.network.metallb.mode == "bgp":  # the gateway is a BGP router: gateway.py
        out.append(
            Machine(
                GATEWAY,
                GATEWAY,
                str(twin_address(inv.network.gateway, network)),
                directory / "hosts" / GATEWAY / "ssh",
                guest=False,
            )
        )
    for node in inv.nodes:
        if node.kind == "bare-metal" and node.address == inv.host(node.host).address:
            continue  # the node is its host: one machine, one sshd
        out.append(
            Machine(
                node.name,
                node.host,
                str(twin_address(node.address, network)),
                directory / "hosts" / node.host / "nodes" / node.name / "ssh",
                guest=node.kind != "bare-metal",
            )
        )
    return out


def bare_node(inv: Inventory, host: InventoryHost) -> Node | None:
    return next(
        (
            n
            for n in inv.nodes
            if n.host == host.name and n.kind == "bare-metal" and n.address == host.address
        ),
        None,
    )


def _disks(node: Node | None) -> list[dict[str, Any]]:
    if node is None:
        return []
    if node.kind == "bare-metal":
        # Which disk holds the OS is the inventory's word (a Pi's USB SSD or SD card).
        medium = node.os_disk
        name = "mmcblk0" if medium == "sd-card" else "nvme0n1" if medium == "nvme" else "sda"
        tran = {"usb-ssd": "usb", "sd-card": "", "nvme": "nvme"}.get(medium, "sata")
        model = {"usb-ssd": "USB SSD", "sd-card": "SD card", "nvme": "NVMe SSD"}.get(medium, "SSD")
    elif node.kind == "vm":
        name, tran, model = "sda", "", "QEMU HARDDISK"
    else:
        name, tran, model = "rootfs", "", "LXC rootfs"
    disks = [
        {
            "name": name,
            "size": node.os_disk_gib * GIB,
            "type": "disk",
            "tran": tran,
            "model": model,
            "mountpoint": "/",
        }
    ]
    if node.seaweedfs.volume_gib:
        disks.append(
            {
                "name": "sdb" if name != "sdb" else "sdc",
                "size": node.seaweedfs.volume_gib * GIB,
                "type": "disk",
                "tran": tran,
                "model": model,
                "mountpoint": "/mnt/seaweedfs",
            }
        )
    return disks


def facts_for(inv: Inventory, machine: Machine, network: IPv4Network) -> dict[str, Any]:
    """What the machine's commands report; `from_inventory` names the facts this machine
    cannot provide and the twin takes from the inventory instead."""
    if machine.name == GATEWAY:
        return gateway_facts(machine, network)
    host = inv.host(machine.host)
    node = (
        next(n for n in inv.nodes if n.name == machine.name)
        if machine.name != host.name
        else bare_node(inv, host)
    )
    if machine.guest:
        gpu = node.gpu if node else None
    else:  # the host itself, with its bare-metal node if it has one
        gpu = host.gpu or (node.gpu if node else None)
    osr = node_os(node) if node is not None else HOST_OS[host.kind]
    guests: dict[str, int] = guest_ids(inv, host.name) if not machine.guest else {}
    services = ["ssh", "sshd"]
    if node is not None:
        services.append("k3s" if node.k3s_role == "server" else "k3s-agent")
    nfs = inv.storage.nfs
    is_nfs = nfs is not None and nfs.host == host.name and not machine.guest
    if is_nfs:
        services += ["nfs-ganesha", "nfs-server"]
    if not machine.guest and host.kind == "proxmox":
        services += ["pve-cluster", "pvedaemon", "pveproxy"]
    docker = not machine.guest and has_docker(inv, host.name)
    if docker:
        services.append("docker")
    from_inventory = ["os-release"]
    if node is not None:
        from_inventory += ["cores", "memory", "disks"]
        if node.arch == "arm64":
            from_inventory.append("arch")
    if gpu is not None:
        from_inventory.append("/dev/dri (no GPU here: the device nodes open nothing)")
    return {
        "name": machine.name,
        "host": host.name,
        "host_kind": host.kind,
        "guest": machine.guest,
        "node": node.name if node else None,
        "node_kind": node.kind if node else None,
        "k3s_role": node.k3s_role if node else None,
        "k3s_version": inv.cluster.k3s_version if node else None,
        "arch": "aarch64" if node is not None and node.arch == "arm64" else os.uname().machine,
        "cpu": node.cpu if node else None,
        "memory_bytes": int(node.memory_gib * GIB) if node else None,
        "disks": _disks(node),
        "address": machine.address,
        "prefixlen": network.prefixlen,
        "gpu": gpu is not None,
        "os_release": osr,
        "services": services,
        "hypervisor": {"proxmox": "proxmox", "unraid": "libvirt"}.get(host.kind)
        if guests
        else None,
        "nfs": is_nfs,
        "docker": docker,
        "from_inventory": from_inventory,
    }


def gateway_facts(machine: Machine, network: IPv4Network) -> dict[str, Any]:
    """The gateway: a UniFi OS router running FRR; the inventory describes nothing of it
    but its address, so the rest is the twin's word."""
    return {
        "name": machine.name,
        "host": machine.host,
        "host_kind": "gateway",
        "guest": False,
        "node": None,
        "node_kind": None,
        "k3s_role": None,
        "k3s_version": None,
        "arch": "aarch64",  # UniFi OS gateways are ARM64
        "cpu": None,
        "memory_bytes": None,
        "disks": [],
        "address": machine.address,
        "prefixlen": network.prefixlen,
        "gpu": False,
        "os_release": GATEWAY_OS,
        "services": ["ssh", "sshd", "frr", "bgpd"],
        "hypervisor": None,
        "nfs": False,
        "docker": False,
        "gateway": True,
        "from_inventory": ["address only: OS, arch and size are the twin's (a UniFi gateway)"],
    }


def _os_release(fields: dict[str, str]) -> str:
    return "".join(f'{k}="{v}"\n' for k, v in fields.items() if v)


SHIMS_EVERYWHERE = [
    "nproc",
    "free",
    "lsblk",
    "ip",
    "systemctl",
    "poweroff",
    "shutdown",
    "reboot",
    "sudo",
    "uname",
]


def shim_names(facts: dict[str, Any]) -> list[str]:
    names = list(SHIMS_EVERYWHERE)
    if facts["node"]:
        names.append("k3s")
    if facts["hypervisor"] == "proxmox":
        names += ["qm", "pct", "pveversion"]
    if facts["hypervisor"] == "libvirt":
        names.append("virsh")
    if facts["nfs"]:
        names.append("exportfs")
    if facts["docker"]:
        names.append("docker")
    return names


def has_docker(inv: Inventory, host: str) -> bool:
    """Unraid runs Docker; so does any host the inventory gives a Docker app."""
    if host not in {h.name for h in inv.hosts}:
        return False  # the gateway
    return inv.host(host).kind == "unraid" or any(
        a.kind == "docker" and a.host == host for a in inv.apps
    )


def world_path(machine: Machine, disk: Path, path: str) -> Path | None:
    """Where a path of the machine's world (as its shell sees it) lives on this machine,
    for the directories the world has of its own (what build_world binds); None for the
    rest, which is this machine's own, read-only."""
    own = [
        ("/mnt", disk / "mnt"),
        ("/tmp", machine.world / "tmp"),
        (os.path.expanduser("~"), machine.world / "home"),
        ("/dev/dri", machine.world / "dri"),
    ]
    for prefix, real in own:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return real / path[len(prefix) :].lstrip("/")
    return None


def build_world(
    machine: Machine, facts: dict[str, Any], control_dir: Path, disk: Path, exports: str | None
) -> Path:
    """The machine's files (kept across restarts: what was uploaded stays), its login
    script and sshd_config; returns the sshd_config."""
    world = machine.world
    for sub in ("etc", "tmp", "home", "bin", "run"):
        (world / sub).mkdir(parents=True, exist_ok=True)
    (world / "tmp").chmod(0o1777)
    etc = world / "etc"
    # /etc is a directory of the machine's own, so a file uploaded there (exports) can
    # replace one by rename; everything else in it points at this machine's real /etc.
    own = {"os-release", "hostname", "exports", "machine-id"}
    for entry in os.listdir("/etc"):
        link = etc / entry
        if entry in own or link.exists() or link.is_symlink():
            continue
        link.symlink_to(f"/run/host-etc/{entry}")
    (etc / "os-release").write_text(_os_release(facts["os_release"]))
    (world / "os-release").write_text(_os_release(facts["os_release"]))
    (etc / "hostname").write_text(machine.name + "\n")
    if exports is not None and not (etc / "exports").exists():
        (etc / "exports").write_text(exports)
    (world / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
    for stale in (world / "bin").iterdir():
        stale.unlink()
    interpreter = sys.executable
    for name in shim_names(facts):
        wrapper = world / "bin" / name
        wrapper.write_text(f'#!/bin/sh\nexec {interpreter} -I -S {SHIM} {name} "$@"\n')
        wrapper.chmod(0o755)
    dri = world / "dri"
    if facts["gpu"]:
        device_nodes(dri)
    disk_mnt = disk / "mnt"
    disk_mnt.mkdir(parents=True, exist_ok=True)
    home = os.path.expanduser("~")
    bwrap = [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--tmpfs", "/run", "--ro-bind", "/etc", "/run/host-etc", "--bind", str(etc), "/etc",
        "--ro-bind", str(world / "os-release"), "/usr/lib/os-release",
        "--bind", str(world / "tmp"), "/tmp", "--bind", str(world / "home"), home,
        "--bind", str(disk_mnt), "/mnt",
        "--ro-bind", str(world / "bin"), "/run/halab/bin",
        "--ro-bind", str(world / "facts.json"), "/run/halab/facts.json",
        "--bind", str(control_dir), "/run/halab/control",
    ]  # fmt: skip
    # The commands' Python (pyenv under the home, a venv under /tmp in a clean clone) and
    # the kit itself may live under what the world just hid: show those again, read-only.
    hidden = [home, "/tmp", "/mnt", "/etc", "/run"]
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, SHIM.parent)}
    needed.add(os.path.abspath(sys.prefix))
    for path in sorted(needed):
        if any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden):
            bwrap += ["--ro-bind", path, path]
    if facts["gpu"]:
        bwrap += ["--dev-bind", str(dri), "/dev/dri"]
    if facts.get("gateway"):
        # bgpd's vty sockets where FRR keeps them, so the real vtysh finds them.
        frr_run = vty_dir(world.parent / "frr")
        frr_run.mkdir(parents=True, exist_ok=True)
        bwrap += ["--bind", str(frr_run), "/run/frr"]
    bwrap += [
        "--unshare-uts", "--hostname", machine.name, "--unshare-pid", "--die-with-parent",
        "--setenv", "PATH", f"/run/halab/bin:{SYSTEM_PATH}",
        "--setenv", "HOSTNAME", machine.name, "--chdir", home,
    ]  # fmt: skip
    quoted = " ".join(_sh_quote(a) for a in bwrap)
    login = world / "login"
    login.write_text(
        "#!/bin/sh\n"
        f"# {machine.name}: every SSH command runs in this machine's world (ssh_world.py).\n"
        f"set -- {quoted}\n"
        'case "$SSH_ORIGINAL_COMMAND" in\n'
        f'  internal-sftp|sftp|*/sftp-server) exec "$@" {SFTP_SERVER} ;;\n'
        '  "") exec "$@" /bin/bash --noprofile --norc -i ;;\n'
        '  *) exec "$@" /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;\n'
        "esac\n"
    )
    login.chmod(0o755)
    return login


def _sh_quote(text: str) -> str:
    if text and all(c.isalnum() or c in "/._-:=+," for c in text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class SshFiles:
    """The client's side, written once by the supervisor under the twin's directory."""

    dir: Path

    @property
    def client_key(self) -> Path:
        return self.dir / "ssh" / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "ssh" / "known_hosts"

    @property
    def config(self) -> Path:
        return self.dir / "ssh_config"

    def host_key(self, machine: str) -> Path:
        return self.dir / "ssh" / "host_keys" / f"{machine}_ed25519"


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def prepare(inv: Inventory, directory: Path, network: IPv4Network) -> SshFiles:
    """Host keys, the client key, known_hosts and ssh_config (kept across restarts, so a
    machine's key stays the same as a real host's does)."""
    files = SshFiles(directory)
    _keygen(files.client_key, "halab-twin-client")
    port = ssh_port()
    known, config = (
        [],
        ["# Written by `halab twin up`: ssh -F THIS_FILE <host or node> reaches the twin.\n"],
    )
    for machine in machines(inv, directory, network):
        _keygen(files.host_key(machine.name), f"halab-twin-{machine.name}")
        kind, key = files.host_key(machine.name).with_suffix(".pub").read_text().split()[:2]
        where = machine.address if port == 22 else f"[{machine.address}]:{port}"
        known.append(f"{where} {kind} {key}\n")
        names = [machine.name, *(["gateway"] if machine.name == GATEWAY else [])]
        names += [
            n.name
            for n in inv.nodes
            if n.kind == "bare-metal"
            and n.host == machine.name
            and n.name != machine.name
            and str(twin_address(n.address, network)) == machine.address
        ]
        config.append(
            f"Host {' '.join(names)}\n"
            f"  HostName {machine.address}\n  Port {port}\n  User {ssh_user()}\n"
            f"  IdentityFile {files.client_key.resolve()}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {files.known_hosts.resolve()}\n"
            "  StrictHostKeyChecking yes\n"
        )
    files.known_hosts.write_text("".join(known))
    files.config.write_text("\n".join(config))
    return files


def sshd_config(machine: Machine, files: SshFiles, login: Path, port: int) -> Path:
    world = machine.world
    authorized = world / "authorized_keys"
    authorized.write_text(files.client_key.with_suffix(".pub").read_text())
    config = world / "sshd_config"
    config.write_text(
        f"# {machine.name}'s sshd (the twin's; ssh_world.py)\n"
        f"Port {port}\nListenAddress {machine.address}\n"
        f"HostKey {files.host_key(machine.name).resolve()}\n"
        f"PidFile {world / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "StrictModes no\nUseDNS no\nPrintMotd no\nMaxStartups 64:30:128\nMaxSessions 32\n"
        f"SetEnv SHLVL=1\nForceCommand {login}\nSubsystem sftp internal-sftp\n"
    )
    return config


def start_sshd(
    machine: Machine,
    facts: dict[str, Any],
    directory: Path,
    control_dir: Path,
    disk: Path,
    exports: str | None = None,
) -> subprocess.Popen[bytes]:
    """The machine's sshd, a child of the calling process (its machine): gone with it."""
    if not Path(SSHD).exists() or shutil.which("bwrap") is None:
        raise RuntimeError("openssh-server and bubblewrap are needed (make setup installs them)")
    files = SshFiles(directory)
    login = build_world(machine, facts, control_dir, disk, exports)
    config = sshd_config(machine, files, login, ssh_port())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
    log = (machine.world / "sshd.log").open("ab")
    with log:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    # Readiness is the supervisor's to wait for: it connects (wait_ready).
    return proc
