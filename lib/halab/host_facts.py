"""What every host and node says of itself over SSH, beside what the inventory says.

One SSH command a machine (its answers in marked sections), read in parallel: reachable,
its address as `ip addr` shows it, architecture, OS, cores, memory, disks (and which one
holds /), /dev/dri, k3s and its version. Each planned figure is compared with the answer;
the differences are the table's `mismatches`, which phase 0 and `halab hosts facts` show.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from halab.hosts import HostError, Hosts
from halab.inventory import Inventory
from halab.inventory.model import Node
from halab.target import Target

GIB = 1024**3
ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
SECTIONS = {
    "hostname": "hostname",
    "arch": "uname -m",
    "os": "cat /etc/os-release",
    "cores": "nproc",
    "memory": "free -b | awk '/^Mem:/ {print $2}'",
    "disks": "lsblk -J -b -o NAME,SIZE,TYPE,TRAN,MOUNTPOINT",
    "dri": "ls /dev/dri",
    "k3s": "k3s --version | head -1",
    "pve": "pveversion",
    "ip": "ip -j -4 addr",
}
SCRIPT = "; ".join(f"echo '@@{k}'; {cmd} 2>/dev/null" for k, cmd in SECTIONS.items())


@dataclass(frozen=True)
class Machine:
    """One SSH endpoint: a physical host (with the bare-metal node that is it), or a node."""

    name: str
    host: str
    node: Node | None
    is_host: bool

    @property
    def label(self) -> str:
        if self.is_host and self.node is not None:
            return f"{self.name} ({self.node.name})"
        return self.name


def machines(inv: Inventory) -> list[Machine]:
    out = []
    for host in inv.hosts:
        bare = next(
            (
                n
                for n in inv.nodes
                if n.host == host.name and n.kind == "bare-metal" and n.address == host.address
            ),
            None,
        )
        out.append(Machine(host.name, host.name, bare, True))
    for node in inv.nodes:
        if node.kind == "bare-metal" and node.address == inv.host(node.host).address:
            continue
        out.append(Machine(node.name, node.host, node, False))
    return out


def sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@") and line[2:] in SECTIONS:
            current = line[2:]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def _os(release: str) -> dict[str, str]:
    fields = {}
    for line in release.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    return fields


def _root_disk(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The whole disk that holds /, from lsblk's tree."""

    def holds_root(dev: dict[str, Any]) -> bool:
        points = dev.get("mountpoints") or [dev.get("mountpoint")]
        return "/" in points or any(holds_root(c) for c in dev.get("children") or [])

    for dev in doc.get("blockdevices", []):
        if dev.get("type") == "disk" and holds_root(dev):
            found: dict[str, Any] = dev
            return found
    return None


def _medium(disk: dict[str, Any]) -> str:
    """What kind of disk lsblk shows: SD cards are mmcblk devices (no transport named)."""
    name = str(disk.get("name", ""))
    if name.startswith("mmcblk"):
        return "sd-card"
    if name.startswith("nvme") or disk.get("tran") == "nvme":
        return "nvme"
    return "usb-ssd" if disk.get("tran") == "usb" else "ssd"


@dataclass
class Facts:
    machine: Machine
    reachable: bool
    error: str = ""
    answers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, inv: Inventory, target: Target) -> dict[str, Any]:
        m, a = self.machine, self.answers
        node = m.node
        host = inv.host(m.host)
        planned_gpu = (node.gpu if node else None) or (host.gpu if m.is_host else None)
        expected_address = str(
            target.addresses.map(node.address if node and not m.is_host else host.address)
        )
        row: dict[str, Any] = {
            "machine": m.label,
            "kind": host.kind if m.is_host else node.kind if node else "",
            "reachable": self.reachable,
            "seconds": round(self.seconds, 6),
        }
        mismatches: list[str] = []
        if not self.reachable:
            row["mismatches"] = self.error
            return row
        osr = _os(a.get("os", ""))
        row["os"] = osr.get("PRETTY_NAME", "?")
        if a.get("pve"):
            row["os"] = f"Proxmox VE ({a['pve'].split()[0]}) on {row['os']}"
        addresses = []
        try:
            for link in json.loads(a.get("ip") or "[]"):
                addresses += [i["local"] for i in link.get("addr_info", [])]
        except (ValueError, KeyError, TypeError):
            pass
        row["address"] = expected_address if expected_address in addresses else (
            ", ".join(x for x in addresses if not x.startswith("127.0.0.")) or "?"
        )  # fmt: skip
        if expected_address not in addresses:
            mismatches.append(f"address: not {expected_address} (ip addr: {row['address']})")
        row["arch"] = a.get("arch", "?")
        row["cores"] = int(a["cores"]) if a.get("cores", "").isdigit() else None
        memory = int(a["memory"]) if a.get("memory", "").isdigit() else None
        row["memory_gib"] = round(memory / GIB, 1) if memory else None
        try:
            disks = json.loads(a.get("disks") or "{}")
        except ValueError:
            disks = {}
        root = _root_disk(disks)
        row["os_disk"] = (
            f"{root['name']} {int(root['size']) // GIB} GiB"
            + (f" ({root['tran']})" if root.get("tran") else "")
            if root
            else "?"
        )
        row["dri"] = ", ".join(a.get("dri", "").split()) or "-"
        k3s = a.get("k3s", "")
        row["k3s"] = k3s.split()[2] if k3s.startswith("k3s version") else "not installed"
        if node is not None:
            want_arch = ARCH[node.arch]
            row["planned"] = f"{node.cpu} cores, {node.memory_gib:g} GiB, {want_arch}"
            if row["arch"] != want_arch:
                mismatches.append(f"arch: {row['arch']}, planned {want_arch}")
            if row["cores"] is not None and row["cores"] != node.cpu:
                mismatches.append(f"cores: {row['cores']}, planned {node.cpu}")
            if memory is not None and not (0.9 <= memory / (node.memory_gib * GIB) <= 1.1):
                mismatches.append(f"memory: {row['memory_gib']} GiB, planned {node.memory_gib:g}")
            ident, _, version = node.os.partition("-")
            if (osr.get("ID"), osr.get("VERSION_ID")) != (ident, version):
                mismatches.append(f"os: {row['os']}, planned {node.os}")
            if root is not None:
                size = int(root["size"]) / GIB
                if size < 0.9 * node.os_disk_gib:
                    mismatches.append(f"os disk: {size:.0f} GiB, planned {node.os_disk_gib}")
                medium = _medium(root)
                if node.kind == "bare-metal" and medium != node.os_disk:
                    mismatches.append(f"os disk is {medium}, planned {node.os_disk}")
            if row["k3s"] not in ("not installed", inv.cluster.k3s_version):
                mismatches.append(f"k3s {row['k3s']}, planned {inv.cluster.k3s_version}")
        else:
            row["planned"] = "(the inventory does not size hosts)"
        if bool(planned_gpu) != (row["dri"] != "-"):
            mismatches.append(
                "/dev/dri missing, the inventory gives a GPU"
                if planned_gpu
                else "/dev/dri present, the inventory gives no GPU"
            )
        row["mismatches"] = "; ".join(mismatches)
        return row


def gather(
    inv: Inventory, target: Target, hosts: Hosts | None = None, timeout: float = 20.0
) -> list[Facts]:
    """Every machine's answers, read in parallel (an unreachable one costs its timeout)."""
    own = hosts is None
    pool = hosts or Hosts(inv, target, connect_timeout=min(timeout, 10.0))

    def one(machine: Machine) -> Facts:
        began = time.monotonic()
        try:
            done = pool[machine.name].run(SCRIPT, timeout=timeout)
        except HostError as exc:
            return Facts(machine, False, str(exc), seconds=time.monotonic() - began)
        return Facts(machine, True, answers=sections(done.stdout), seconds=done.seconds)

    try:
        with ThreadPoolExecutor(max_workers=8) as workers:
            return list(workers.map(one, machines(inv)))
    finally:
        if own:
            pool.close()


def table(inv: Inventory, target: Target, facts: list[Facts]) -> pd.DataFrame:
    columns = ["machine", "kind", "reachable", "address", "arch", "os", "cores",
               "memory_gib", "os_disk", "dri", "k3s", "planned", "mismatches",
               "seconds"]  # fmt: skip
    frame = pd.DataFrame([f.row(inv, target) for f in facts])
    return frame.reindex(columns=columns)


def styled(frame: pd.DataFrame) -> Any:
    """The table with its mismatching rows marked, for a notebook."""

    def mark(row: pd.Series) -> list[str]:
        bad = bool(row.get("mismatches")) or not row.get("reachable")
        return ["background-color: #fde2e1" if bad else "" for _ in row]

    return frame.style.apply(mark, axis=1).hide(axis="index")
