"""Findings: where the plan's own claims or choices do not hold, with evidence and a fix.

Every finding is a rule over the inventory (and its analysis), so correcting the
inventory clears it. Severity "error" means the plan as written will not work or will
lose data; "warning" means it works, but not the way the plan says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from halab.inventory.model import App, Inventory
from halab.inventory.scheduling import GPU_RESOURCE_ALIASES, best_nodes
from halab.plan.analysis import Analysis
from halab.plan.quorum import api_available, rollout_quorum
from halab.replication import parse_replication


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str  # "error" | "warning"
    title: str
    evidence: str
    fix: str
    plan_says: str = ""
    section: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


FindingRule = Callable[[Analysis], Iterator[Finding]]
PLAN_032_COMMENT = 'replication: "032"  # 0 same-rack, 3 different-hosts, 2 different-racks'


def seaweedfs_placement(a: Analysis) -> Iterator[Finding]:
    sw = a.inv.storage.seaweedfs
    layouts = [("current", a.current, sw.replication, sw.racks)]
    if a.target is not None and sw.target is not None:
        layouts.append(("target", a.target, sw.target.replication, sw.target.racks))
    for label, outcome, code, racks in layouts:
        if outcome.feasible:
            continue
        alternatives = [
            p
            for p in a.placement_table()
            if p.racks == racks and p.feasible and p.distinct_hosts and p.copies >= 2
        ]
        options = [
            f"{p.code} ({p.copies} copies, {p.usable_gib} GiB usable)"
            for p in sorted(alternatives, key=lambda p: (-p.copies, p.code))
        ]
        fix = (
            f"with racks: {racks}, the codes that keep copies on distinct hosts are "
            + " or ".join(options)
            if options
            else "add volume servers and racks until the code can be placed"
        )
        yield Finding(
            id="seaweedfs-placement",
            severity="error",
            title=f"The {label} replication {code} cannot be placed with racks: {racks}",
            evidence="SeaweedFS refuses to grow a volume: "
            f'"{" ".join(outcome.reason.split())}". SeaweedFS reads xyz as x copies in other '
            "data centers, y in other racks, z on other servers of the same rack, so "
            f"{code} means {outcome.copies} copies and needs {_needs(code)}.",
            fix=fix,
            # The plan's own comment on 032 misreads the digits; quote it where it applies.
            plan_says=PLAN_032_COMMENT if code.rjust(3, "0") == "032" else f'replication: "{code}"',
            section="Storage Architecture, Layer 2",
        )


def _needs(code: str) -> str:
    rp = parse_replication(code)
    racks = f"{rp.diff_rack + 1} racks of {rp.same_rack + 1} servers with free slots"
    if rp.diff_data_center:
        return f"{rp.diff_data_center + 1} data centers, the first with {racks}"
    return racks


def seaweedfs_same_host(a: Analysis) -> Iterator[Finding]:
    sw = a.inv.storage.seaweedfs
    outcome = a.current
    if not outcome.feasible or outcome.distinct_hosts:
        return
    nodes = [n.name for n in a.inv.seaweed_volume_servers if n.host == outcome.worst_host]
    yield Finding(
        id="seaweedfs-copies-same-host",
        severity="error",
        title=f"With {sw.replication} and racks: {sw.racks}, every copy of a volume can sit on "
        f"one physical host ({outcome.worst_host})",
        evidence=f"SeaweedFS sees servers and racks, not hosts: {outcome.worst_copies} of "
        f"{outcome.copies} copies may land on {', '.join(nodes)}. If "
        f"{outcome.worst_host} fails, those volumes are gone until it returns.",
        fix="start each volume server with -rack=<physical host> and use a rack-level code "
        "(010 or 020)",
        plan_says="Data replicated across 3 different physical locations",
        section="High Availability Characteristics; Storage Architecture",
    )


def seaweedfs_capacity(a: Analysis) -> Iterator[Finding]:
    claims = [c for c in a.inv.claims if c.about == "seaweedfs_usable_gib"]
    if not claims:
        return
    current = a.current
    per_host = {p.code: p for p in a.placement_table() if p.racks == "host"}
    real = ", ".join(
        f"{code}: {p.usable_gib} GiB"
        for code, p in per_host.items()
        if p.feasible and p.distinct_hosts and p.copies >= 2
    )
    for claim in claims:
        value = float(claim.value)
        if current.feasible and abs(current.usable_gib - value) <= 0.15 * value:
            continue
        yield Finding(
            id="seaweedfs-capacity",
            severity="warning",
            title=f"SeaweedFS usable capacity is not ~{claim.value} GB",
            evidence=f"With {current.code} (racks: {current.racks}) SeaweedFS places "
            f"{current.volumes} volumes of {a.inv.storage.seaweedfs.volume_size_limit_mb}"
            f" MB: {current.usable_gib} GiB. With racks = physical hosts, the codes that "
            f"keep copies on distinct hosts give {real or 'nothing'}; the smallest "
            "host bounds a rack-level code (the Pi's disk bounds 020).",
            fix="plan capacity from `halab plan` (placement table), not from raw disk / copies",
            plan_says=claim.says,
            section=claim.section,
        )


def api_claims(a: Analysis) -> Iterator[Finding]:
    for claim in a.inv.claims:
        if claim.about != "api_when_hosts_down":
            continue
        up, text = api_available(a.inv, set(claim.hosts))
        actual = "available" if up else "unavailable"
        if str(claim.value) == actual:
            continue
        yield Finding(
            id="api-when-hosts-down",
            severity="warning",
            title=f"With {' and '.join(claim.hosts)} down the API is {actual}, not {claim.value}",
            evidence=text + ". Running pods keep running, but nothing can be read, changed or "
            "rescheduled through the API.",
            fix="say 'API unavailable until a member returns; recover with k3s server "
            "--cluster-reset on the survivor if two are lost for good'",
            plan_says=claim.says,
            section=claim.section,
        )


def seaweedfs_read_claims(a: Analysis) -> Iterator[Finding]:
    for claim in a.inv.claims:
        if claim.about != "seaweedfs_readable_when_host_down":
            continue
        row = a.matrix_row(claim.hosts)
        if row is None or bool(row["seaweedfs_readable"]) == bool(claim.value):
            continue
        yield Finding(
            id="seaweedfs-readable-when-host-down",
            severity="error",
            title=f"With {' and '.join(claim.hosts)} down, SeaweedFS data is not sure to be "
            "readable",
            evidence=str(row["seaweedfs_read"]),
            fix="give volume servers -rack=<physical host> and use 010 or 020",
            plan_says=claim.says,
            section=claim.section,
        )


def workload_claims(a: Analysis) -> Iterator[Finding]:
    for claim in a.inv.claims:
        if claim.about != "workload_moves_when_host_down":
            continue
        row = a.matrix_row(claim.hosts)
        if row is None:
            continue
        where = str(row.get(f"app:{claim.app}", ""))
        if where == f"moves to {claim.value}" or where.startswith(f"moves to {claim.value} ("):
            continue
        app = a.inv.app(claim.app)
        yield Finding(
            id="workload-fallback",
            severity="warning",
            title=f"{claim.app} is not sure to move to {claim.value} when "
            f"{' and '.join(claim.hosts)} fails",
            evidence=f"The scheduler's answer: {where}. {_fallback_reason(app)}",
            fix=f"add a preferred term for role=backup, or require role in [primary, backup] "
            f"for {claim.app}; taint the control-plane nodes if they should run no apps",
            plan_says=claim.says,
            section=claim.section,
        )


def _fallback_reason(app: App) -> str:
    if app.placement.preferred and not app.placement.required:
        return (
            "Its only rule is a preference for role=primary, so every other untainted node "
            "scores the same, including the 2-core control-plane VMs."
        )
    return ""


def gpu_resource_name(a: Analysis) -> Iterator[Finding]:
    for app in a.inv.apps:
        names = set(app.resources.limits) | set(app.resources.requests)
        for name in sorted(names & GPU_RESOURCE_ALIASES):
            gpus = {n.gpu.resource_name for n in a.inv.nodes if n.gpu is not None}
            right = ", ".join(sorted(gpus)) or "gpu.intel.com/i915"
            yield Finding(
                id="gpu-resource-name",
                severity="error",
                title=f"{app.name} asks for {name}, which no device plugin advertises",
                evidence="The Intel GPU plugin advertises gpu.intel.com/i915 (i915 driver) or "
                f"gpu.intel.com/xe (xe driver); {name} is only a CDI kind. The pod "
                "would stay Pending with 'Insufficient " + name + "'.",
                fix=f"request {right}: 1",
                plan_says="Resources: `intel.com/gpu: 1`",
                section="ClusterPlex Components 3; Phase 7 validation",
            )


def node_role_names(a: Analysis) -> Iterator[Finding]:
    allowed = ("node.kubernetes.io/", "kubelet.kubernetes.io/")
    for node in a.inv.nodes:
        for key in node.labels:
            domain = key.split("/")[0] if "/" in key else ""
            restricted = domain.endswith(("kubernetes.io", "k8s.io"))
            if restricted and not key.startswith(allowed):
                yield Finding(
                    id="node-role-names",
                    severity="error",
                    title=f"{node.name} sets label {key} at k3s registration",
                    evidence="The kubelet refuses unknown kubernetes.io/k8s.io labels at "
                    "registration and exits, so the node never joins.",
                    fix=f"move {key} to api_labels (applied with the API after join)",
                    section="Node Specifications",
                )
        for taint in node.taints:
            if taint.key == "node-role.kubernetes.io/master":
                yield Finding(
                    id="node-role-names",
                    severity="warning",
                    title=f"{node.name} is tainted node-role.kubernetes.io/master, the old name",
                    evidence="Kubernetes renamed the role to control-plane; current add-ons "
                    "tolerate node-role.kubernetes.io/control-plane, not master.",
                    fix="taint node-role.kubernetes.io/control-plane:NoSchedule (or "
                    "CriticalAddonsOnly=true:NoExecute)",
                    plan_says=f"Taint: {taint}",
                    section=f"Node Specifications ({node.name})",
                )


def orchestrator_selection(a: Analysis) -> Iterator[Finding]:
    gpu_workers = [w for w in a.inv.apps if w.role == "worker" and _uses_gpu(a.inv, w)]
    if not gpu_workers:
        return
    for app in a.inv.apps:
        if app.role != "orchestrator":
            continue
        strategy = app.env.get("WORKER_SELECTION_STRATEGY", "LOAD_RANK")
        if strategy in ("LOAD_RANK", "LOAD_CPU"):
            yield Finding(
                id="clusterplex-worker-selection",
                severity="warning",
                title=f"The orchestrator picks workers by CPU ({strategy}), but the workers "
                "transcode on GPUs",
                evidence="ClusterPlex workers report CPU use and a CPU benchmark, never GPU "
                "load; a busy QSV worker looks idle to " + strategy + ".",
                fix="set WORKER_SELECTION_STRATEGY=LOAD_TASKS (or RR) on the orchestrator",
                section="ClusterPlex Components 2",
            )
        elif strategy not in ("RR", "LOAD_TASKS"):
            yield Finding(
                id="clusterplex-worker-selection",
                severity="error",
                title=f"WORKER_SELECTION_STRATEGY={strategy} is not a ClusterPlex strategy",
                evidence="An unknown value leaves the orchestrator without a selector; the "
                "first dispatch fails.",
                fix="use RR, LOAD_CPU, LOAD_TASKS or LOAD_RANK",
                section="ClusterPlex Components 2",
            )


def orchestrator_single(a: Analysis) -> Iterator[Finding]:
    for app in a.inv.apps:
        if app.role != "orchestrator":
            continue
        if app.replicas != 1 or app.kind != "deployment" or app.strategy != "Recreate":
            yield Finding(
                id="orchestrator-single-replica",
                severity="warning" if app.replicas == 1 else "error",
                title="The ClusterPlex orchestrator must run as exactly one replica",
                evidence=f"{app.name}: replicas {app.replicas}, strategy {app.strategy}. Its "
                "worker registry lives in memory; two orchestrators (including the "
                "overlap of a RollingUpdate) split workers between them.",
                fix="replicas: 1 and strategy: Recreate",
                section="ClusterPlex Components 2",
            )


def hw_transcode_shares(a: Analysis) -> Iterator[Finding]:
    plex = [p for p in a.inv.apps if p.role == "plex"]
    workers = [w for w in a.inv.apps if w.role == "worker" and _uses_gpu(a.inv, w)]
    if not plex or not workers:
        return
    needed = ("Plex Media Server/Cache", "Plex Media Server/Drivers")
    for worker in workers:
        mounts = [v.mount_path for v in worker.volumes]
        missing = [d for d in needed if not any(m.rstrip("/").endswith(d) for m in mounts)]
        if missing:
            yield Finding(
                id="clusterplex-hw-shared-dirs",
                severity="error",
                title=f"{worker.name} transcodes on a GPU without Plex's Drivers and Cache",
                evidence="Plex passes LIBVA_DRIVERS_PATH pointing into its Cache directory and "
                "the iHD driver links into Drivers; a worker without them cannot use "
                "VA-API/QSV. Missing: " + ", ".join(missing),
                fix="share /config/Library/Application Support/Plex Media Server/{Cache,Drivers}"
                " from PMS with every GPU worker (read-only on the workers)",
                section="ClusterPlex Components 3-4",
            )


def nfs_write_to_ro(a: Analysis) -> Iterator[Finding]:
    if a.inv.storage.nfs is None:
        return
    exports = {e.name: e for e in a.inv.storage.nfs.exports}
    for app in a.inv.apps:
        for vol in app.volumes:
            export = exports.get(vol.export) if vol.kind == "nfs" else None
            if export is not None and export.read_only and not vol.read_only:
                yield Finding(
                    id="nfs-write-to-ro-export",
                    severity="warning",
                    title=f"{app.name} mounts {export.path} read-write, but it is exported ro",
                    evidence=f"/etc/exports gives {export.path} ({','.join(export.options)}); "
                    f"every write from {app.name} fails with EROFS.",
                    fix=f"export {export.path} rw to the nodes that run {app.name}, or mount it "
                    "read-only",
                    plan_says="Media: Unraid NFS PV (RW)",
                    section=app.plan_section,
                )


def rollout_even_etcd(a: Analysis) -> Iterator[Finding]:
    """A phase that leaves an even number of etcd members: one more member to lose, and
    no more failures tolerated than with one fewer, until the next server joins."""
    for row in rollout_quorum(a.inv):
        members = int(str(row["control_plane"]))
        if members and members % 2 == 0:
            yield Finding(
                id="rollout-even-etcd",
                severity="warning",
                title=f"After phase {row['phase']} etcd has {members} members, an even number",
                evidence=f"{row['etcd']}: {members} members tolerate no more failures than "
                f"{members - 1}, and until the next server joins, {row['one_host_down']}.",
                fix=f"bring the servers of phase {row['phase']} in together with one more, or "
                "move one to a later phase, so that every phase ends with an odd count",
                section=f"Phase {row['phase']}",
            )


SEAWEEDFS_PHASE = 2  # the kit's phase that deploys SeaweedFS (the plan's phase 2)


def rollout_seaweedfs_masters(a: Analysis) -> Iterator[Finding]:
    """SeaweedFS is deployed in phase 2 with every master of the inventory as a raft peer;
    until a majority of them has joined, no master leads and nothing can be stored."""
    if not a.inv.rollout or not a.inv.seaweed_masters:
        return
    rows = rollout_quorum(a.inv)

    def state(phase: int) -> str:  # the masters once `phase` is done
        return str([r for r in rows if int(str(r["phase"])) <= phase][-1]["seaweedfs_masters"])

    if "NO leader" not in state(SEAWEEDFS_PHASE):
        return
    until = next((p for p in range(SEAWEEDFS_PHASE, 10) if "NO leader" not in state(p)), None)
    masters = ", ".join(m.name for m in a.inv.seaweed_masters)
    yield Finding(
        id="rollout-seaweedfs-masters",
        severity="error",
        title=f"SeaweedFS has no master leader from phase {SEAWEEDFS_PHASE} "
        + (f"until phase {until}" if until is not None else "on"),
        evidence=f"The masters ({masters}) are raft peers of one another; in phase "
        f"{SEAWEEDFS_PHASE} {state(SEAWEEDFS_PHASE)}. Without a majority no leader is elected, "
        "no volume server registers and no file can be written, so the storage of phase "
        f"{SEAWEEDFS_PHASE} (and everything on it) does not work until then.",
        fix="run a single master (-peers=none on the node already there) until the other "
        "master nodes have joined, then grow to three; or give the master role only to nodes "
        f"present by phase {SEAWEEDFS_PHASE}",
        plan_says="Phase 2: cp1: 100GB (master + volume + filer)",
        section="Phase 2",
    )


def _uses_gpu(inv: Inventory, app: App) -> bool:
    if app.kind == "docker":
        return any(d.startswith("/dev/dri") for d in app.devices)
    return any(n.gpu is not None for n in best_nodes(app, inv.nodes))


FINDING_RULES: tuple[FindingRule, ...] = (
    seaweedfs_placement,
    seaweedfs_same_host,
    seaweedfs_read_claims,
    seaweedfs_capacity,
    api_claims,
    workload_claims,
    gpu_resource_name,
    node_role_names,
    orchestrator_selection,
    orchestrator_single,
    hw_transcode_shares,
    nfs_write_to_ro,
    rollout_even_etcd,
    rollout_seaweedfs_masters,
)


def find_all(analysis: Analysis) -> list[Finding]:
    found: list[Finding] = []
    for rule in FINDING_RULES:
        found.extend(rule(analysis))
    return found
