"""A target file says how to reach a cluster: the twin, or the real one at home.

The inventory keeps the plan's addresses; a target may map them to others (the twin
maps 192.168.1.x to 127.77.0.x). Secrets are named by environment variable only.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from halab.errors import Problem, TargetError
from halab.inventory.yaml_source import YamlReadError, format_path, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshSettings(_Strict):
    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key_file: str = ""
    known_hosts: str = "~/.ssh/known_hosts"
    config_file: str = "~/.ssh/config"


class AddressMap(_Strict):
    """Replace the inventory's addresses: either one rule or an explicit table."""

    last_octet_on: IPv4Network | None = None  # 192.168.1.12 -> <network>.12
    explicit: dict[IPv4Address, IPv4Address] = Field(default_factory=dict)

    def map(self, address: IPv4Address) -> IPv4Address:
        if address in self.explicit:
            return self.explicit[address]
        if self.last_octet_on is not None:
            base = int(self.last_octet_on.network_address)
            return IPv4Address(base + (int(address) & 0xFF))
        return address


class EtcdAccess(_Strict):
    """etcd's client endpoints; on k3s they need the client certificate of a server
    (copied from /var/lib/rancher/k3s/server/tls/etcd/), the twin's need none."""

    endpoints: list[str] = Field(default_factory=list)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


class NfsAccess(_Strict):
    """The NFS server's ports; the kit asks no portmapper. mountd's port is what `rpcinfo -p
    SERVER` lists for mountd v3 tcp (pin it with rpc.mountd's --port so it stays)."""

    nfs_port: int = Field(default=2049, ge=1, le=65535)
    mount_port: int | None = Field(default=None, ge=1, le=65535)


class PowerCommands(_Strict):
    """How to pull a host's plug and put it back, as shell commands with {host}:
    for the twin `halab twin fail {host}`; at home, say, an IPMI or Proxmox call."""

    off: str = ""
    on: str = ""


class Target(_Strict):
    kind: Literal["twin", "cluster"]
    kubeconfig: str = ""
    context: str = ""
    api_port: int = Field(default=6443, ge=1, le=65535)
    ssh: SshSettings = Field(default_factory=SshSettings)
    addresses: AddressMap = Field(default_factory=AddressMap)
    secrets: dict[str, str] = Field(default_factory=dict)  # secret name -> env variable
    etcd: EtcdAccess = Field(default_factory=EtcdAccess)
    power: PowerCommands = Field(default_factory=PowerCommands)
    nfs: NfsAccess = Field(default_factory=NfsAccess)
    # What this cluster cannot do, capability -> why: a check that needs it skips with
    # the reason rather than passing (the twin has no GPU, for one).
    cannot: dict[str, str] = Field(default_factory=dict)
    source: str = ""

    def lacks(self, capability: str) -> str | None:
        """Why the cluster cannot do `capability`, or None when nothing says it cannot."""
        return self.cannot.get(capability)


def load_target(path: str | Path) -> Target:
    try:
        src = read_yaml(path)
    except YamlReadError as exc:
        raise TargetError(str(path), [exc.problem]) from None
    if not isinstance(src.data, dict):
        raise TargetError(
            str(path),
            [Problem("", "a target file is a mapping with kind: twin|cluster", file=src.file)],
        )
    try:
        target = Target.model_validate({**src.data, "source": str(path)})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            problems.append(
                Problem(format_path(loc), str(err["msg"]), file=src.file, line=src.line_of(loc))
            )
        raise TargetError(str(path), problems) from None
    return target
