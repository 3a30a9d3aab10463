"""The typed model of an inventory: hosts, nodes, network, storage, apps, GitOps.

Field names follow the YAML keys one to one, so an error's path is the path a
person sees in params/cluster.yaml. The cluster's own rules (uniqueness, quorum,
schedulability, ...) live in `rules.py`; this module only checks shapes and types.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from halab.inventory.quantity import parse_quantity

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # an RFC 1123 label, as Kubernetes wants


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Field(pattern=NAME_PATTERN, min_length=1, max_length=63)

HostKind = Literal["proxmox", "unraid", "raspberry-pi", "generic"]
NodeKind = Literal["vm", "lxc-privileged", "bare-metal"]
Arch = Literal["amd64", "arm64"]
K3sRole = Literal["server", "agent"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
GpuVendor = Literal["intel", "nvidia", "amd"]
RackLayout = Literal["single", "host", "node"]


class Gpu(Strict):
    vendor: GpuVendor = "intel"
    driver: Literal["i915", "xe", "nvidia", "amdgpu"] = "i915"
    device: str = "/dev/dri"
    model: str = ""
    shared_dev_num: int = Field(default=1, ge=1, le=1000)  # Intel plugin -shared-dev-num

    @property
    def resource_name(self) -> str:
        """The extended resource the vendor's device plugin advertises for this GPU."""
        if self.vendor == "intel":
            return "gpu.intel.com/xe" if self.driver == "xe" else "gpu.intel.com/i915"
        if self.vendor == "nvidia":
            return "nvidia.com/gpu"
        return "amd.com/gpu"


class Host(Strict):
    name: str = Name
    kind: HostKind
    address: IPv4Address
    location: str = ""
    gpu: Gpu | None = None
    notes: str = ""


class Taint(Strict):
    key: str = Field(min_length=1)
    value: str = ""
    effect: TaintEffect

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: object) -> object:
        # Accept kubectl's short form "key=value:Effect", as the plan writes taints.
        if isinstance(data, str):
            if ":" not in data:
                raise ValueError(
                    f"taint {data!r} has no effect; write key=value:Effect, "
                    "e.g. gpu=true:NoSchedule"
                )
            left, effect = data.rsplit(":", 1)
            key, _, value = left.partition("=")
            return {"key": key, "value": value, "effect": effect}
        return data

    def __str__(self) -> str:
        return (
            f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"
        )


# Plausible ranges: a number far outside them is a typo (an extra digit, GiB for MiB) that
# would otherwise flow into the capacity figures. Generous on purpose: a home lab can be big.
MAX_CORES = 1024
MAX_MEMORY_GIB = 16384  # 16 TiB
MAX_DISK_GIB = 1048576  # 1 PiB
MAX_TIMING_S = 86400  # a day


class SeaweedRoles(Strict):
    master: bool = False
    volume_gib: int = Field(default=0, ge=0, le=MAX_DISK_GIB)
    filer: bool = False


class Node(Strict):
    name: str = Name
    host: str
    kind: NodeKind
    address: IPv4Address
    arch: Arch = "amd64"
    cpu: int = Field(ge=1, le=MAX_CORES)
    memory_gib: float = Field(gt=0, le=MAX_MEMORY_GIB)
    os_disk_gib: int = Field(ge=1, le=MAX_DISK_GIB)
    # What the OS disk of a bare-metal node is: etcd on an SD card is the k3s docs' warning.
    os_disk: Literal["ssd", "usb-ssd", "nvme", "sd-card"] = "ssd"
    os: str = "ubuntu-22.04"
    k3s_role: K3sRole
    labels: dict[str, str] = Field(default_factory=dict)  # set at registration (--node-label)
    api_labels: dict[str, str] = Field(default_factory=dict)  # set through the API after join
    taints: list[Taint] = Field(default_factory=list)  # set at registration (--node-taint)
    gpu: Gpu | None = None
    seaweedfs: SeaweedRoles = Field(default_factory=SeaweedRoles)
    purpose: str = ""

    @property
    def is_server(self) -> bool:
        return self.k3s_role == "server"


class BgpPeer(Strict):
    my_asn: int = Field(ge=1, le=4294967295)
    peer_asn: int = Field(ge=1, le=4294967295)
    peer_address: IPv4Address
    hold_time_s: int | None = Field(default=None, ge=0, le=65535)  # BGP's own limit


class MetalLB(Strict):
    mode: Literal["bgp", "l2"] = "bgp"
    pool: list[str] = Field(min_length=1)
    bgp: BgpPeer | None = None

    @field_validator("pool")
    @classmethod
    def _pool_entries(cls, value: list[str]) -> list[str]:
        from halab.inventory.addresses import parse_range

        for entry in value:
            parse_range(entry)  # raises ValueError naming the accepted forms
        return value

    @model_validator(mode="after")
    def _bgp_needs_peer(self) -> MetalLB:
        if self.mode == "bgp" and self.bgp is None:
            raise ValueError("mode bgp needs a bgp: {my_asn, peer_asn, peer_address} block")
        return self


class Network(Strict):
    subnet: IPv4Network
    gateway: IPv4Address
    vip: IPv4Address
    metallb: MetalLB


class NfsExport(Strict):
    name: str = Name
    path: str = Field(pattern=r"^/")
    options: list[str] = Field(default_factory=lambda: ["rw", "sync", "no_subtree_check"])
    mount_path: str = Field(pattern=r"^/")

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


class Nfs(Strict):
    host: str
    exports: list[NfsExport] = Field(min_length=1)


def _quoted_code(value: object) -> object:
    # YAML reads an unquoted 002 as the number 2; say so instead of "is not text".
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"replication {value} must be a quoted string such as "
            f'"{value:03d}" (unquoted, YAML reads {value:03d} as the number '
            f"{value})"
        )
    return value


class SeaweedLayout(Strict):
    replication: str
    racks: RackLayout = "host"

    _code = field_validator("replication", mode="before")(_quoted_code)


class SeaweedFS(Strict):
    data_center: str = "home"
    replication: str
    racks: RackLayout = "single"
    target: SeaweedLayout | None = None
    # 30 GiB is the most a normal SeaweedFS build takes (8000 GiB only for _large_disk builds).
    volume_size_limit_mb: int = Field(default=30720, ge=1, le=8000 * 1024)

    _code = field_validator("replication", mode="before")(_quoted_code)

    @property
    def current(self) -> SeaweedLayout:
        return SeaweedLayout(replication=self.replication, racks=self.racks)


class Storage(Strict):
    nfs: Nfs | None = None
    seaweedfs: SeaweedFS


class KubeVipTiming(Strict):
    lease_duration_s: int = Field(default=15, ge=1, le=MAX_TIMING_S)
    renew_deadline_s: int = Field(default=10, ge=1, le=MAX_TIMING_S)
    retry_period_s: int = Field(default=2, ge=1, le=MAX_TIMING_S)


class Timing(Strict):
    # None means "left at the Kubernetes default", which the planner knows per version.
    node_monitor_grace_period_s: int | None = Field(default=None, ge=1, le=MAX_TIMING_S)
    default_not_ready_toleration_s: int | None = Field(default=None, ge=0, le=MAX_TIMING_S)
    default_unreachable_toleration_s: int | None = Field(default=None, ge=0, le=MAX_TIMING_S)
    kube_vip: KubeVipTiming = Field(default_factory=KubeVipTiming)
    # How long the attach-detach controller waits before it force-detaches a volume from
    # a node that stopped answering. Kubernetes hard-codes 6 min (no flag, so the render
    # never passes it): a value here only shortens a twin's, for tests and rehearsals.
    force_detach_s: int | None = Field(default=None, ge=1, le=MAX_TIMING_S)


class Cluster(Strict):
    name: str = Name
    k3s_version: str = Field(pattern=r"^v\d+\.\d+\.\d+\+k3s\d+$")
    kubernetes_version: str = Field(pattern=r"^\d+\.\d+$")
    timing: Timing = Field(default_factory=Timing)

    @property
    def kube_minor(self) -> int:
        return int(self.kubernetes_version.split(".")[1])


class Toleration(Strict):
    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: int | None = None


class Preferred(Strict):
    weight: int = Field(ge=1, le=100)
    match: dict[str, str] = Field(min_length=1)


class Placement(Strict):
    node_selector: dict[str, str] = Field(default_factory=dict)
    required: dict[str, list[str]] = Field(default_factory=dict)  # label In [values]
    preferred: list[Preferred] = Field(default_factory=list)
    tolerations: list[Toleration] = Field(default_factory=list)


Quantity = str | int | float


class Resources(Strict):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, Quantity]) -> dict[str, Quantity]:
        for quantity in value.values():
            parse_quantity(quantity)
        return value


class Volume(Strict):
    name: str = Name
    kind: Literal["seaweedfs", "nfs", "empty-dir", "host-path"]
    mount_path: str = Field(pattern=r"^/")
    storage_class: str = ""
    access: Literal["RWO", "RWX", "ROX"] = "RWO"
    size: str = ""
    export: str = ""
    read_only: bool = False
    host_path: str = ""

    @model_validator(mode="after")
    def _kind_fields(self) -> Volume:
        if self.kind == "nfs" and not self.export:
            raise ValueError("an nfs volume names its export (storage.nfs.exports[].name)")
        if self.kind == "seaweedfs" and not self.storage_class:
            raise ValueError("a seaweedfs volume names its storage_class, e.g. seaweedfs-ha")
        if self.kind == "host-path" and not self.host_path:
            raise ValueError("a host-path volume names its host_path")
        return self


AppRole = Literal["plex", "orchestrator", "worker", "app"]


class App(Strict):
    name: str = Name
    role: AppRole = "app"
    kind: Literal["deployment", "statefulset", "daemonset", "docker"]
    namespace: str = Field(default="media", pattern=NAME_PATTERN)
    image: str = Field(min_length=1)
    docker_mods: list[str] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=0, le=1000)
    strategy: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    host: str = ""  # docker apps: the physical host that runs the container
    placement: Placement = Field(default_factory=Placement)
    resources: Resources = Field(default_factory=Resources)
    volumes: list[Volume] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    ports: list[int] = Field(default_factory=list)
    service: Literal["none", "ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    devices: list[str] = Field(default_factory=list)
    plan_section: str = ""

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1-65535")
        return value

    @model_validator(mode="after")
    def _docker_has_host(self) -> App:
        if self.kind == "docker" and not self.host:
            raise ValueError("a docker app names the physical host that runs it (host: ...)")
        if self.kind != "docker" and self.host:
            raise ValueError("host: is only for docker apps; Kubernetes apps use placement:")
        return self

    @property
    def in_kubernetes(self) -> bool:
        return self.kind != "docker"


class GitOps(Strict):
    repo: str = Field(min_length=1)
    branch: str = Field(min_length=1)
    path: str = Field(min_length=1)


class SecretRef(Strict):
    env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    purpose: str = ""
    needed_from_phase: int = Field(default=0, ge=0, le=9)


ClaimAbout = Literal[
    "seaweedfs_usable_gib",
    "api_when_hosts_down",
    "seaweedfs_readable_when_host_down",
    "workload_moves_when_host_down",
]


class Claim(Strict):
    """Something the plan says will hold; the planner checks each one."""

    about: ClaimAbout
    says: str
    section: str = ""
    value: str | int | float | bool
    hosts: list[str] = Field(default_factory=list)
    app: str = ""


class RolloutStep(Strict):
    """The nodes one phase of the rollout brings into the cluster (phase 0: there before
    the rollout starts, the cluster as it stands today)."""

    phase: int = Field(ge=0, le=9)
    nodes: list[str] = Field(min_length=1)
    note: str = ""


class Inventory(Strict):
    version: Literal[1] = 1
    cluster: Cluster
    hosts: list[Host] = Field(min_length=1)
    nodes: list[Node] = Field(min_length=1)
    network: Network
    storage: Storage
    apps: list[App] = Field(default_factory=list)
    gitops: GitOps | None = None
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    claims: list[Claim] = Field(default_factory=list)
    # Which phase brings each node in. Empty: every node is there from phase 0.
    rollout: list[RolloutStep] = Field(default_factory=list)

    # Lookups used everywhere; small lists, so a scan is fine and keeps the model frozen.
    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def app(self, name: str) -> App:
        for app in self.apps:
            if app.name == name:
                return app
        raise KeyError(name)

    def nodes_on(self, host: str) -> list[Node]:
        return [n for n in self.nodes if n.host == host]

    @property
    def servers(self) -> list[Node]:
        return [n for n in self.nodes if n.is_server]

    @property
    def seaweed_masters(self) -> list[Node]:
        return [n for n in self.nodes if n.seaweedfs.master]

    @property
    def seaweed_volume_servers(self) -> list[Node]:
        return [n for n in self.nodes if n.seaweedfs.volume_gib > 0]

    # The rollout. Rules (rules.py) make sure every node joins in exactly one phase.
    def joins_in(self, node: str) -> int:
        """The phase that brings `node` into the cluster (0 when there is no rollout)."""
        for step in self.rollout:
            if node in step.nodes:
                return step.phase
        return 0

    def nodes_joining(self, phase: int) -> list[Node]:
        return [n for n in self.nodes if self.joins_in(n.name) == phase]

    def nodes_present(self, after_phase: int) -> list[Node]:
        """The nodes in the cluster once `after_phase` is done."""
        return [n for n in self.nodes if self.joins_in(n.name) <= after_phase]

    def servers_present(self, after_phase: int) -> list[Node]:
        return [n for n in self.nodes_present(after_phase) if n.is_server]

    @property
    def rollout_phases(self) -> list[int]:
        """The phases that bring nodes in, in order (0 first)."""
        return sorted({self.joins_in(n.name) for n in self.nodes})
