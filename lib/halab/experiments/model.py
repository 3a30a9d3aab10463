"""An experiment: one fault, the apps whose pods it follows, and its limits; the plan's
phase 5 tests built from the inventory (which node, which app, which volume server), never
from the plan's names.

Experiments are data: a user adds one in a notebook (`Experiment(...)`) or in a YAML file
(`load_experiments`), with the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from halab.errors import InputError, Problem
from halab.inventory import Inventory
from halab.inventory.model import App
from halab.inventory.scheduling import FitTable

FaultKind = Literal["drain", "stop-volume-server", "cut-nfs", "power-off"]
FAULTS: tuple[str, ...] = get_args(FaultKind)


class ExperimentInputError(InputError):
    what = "experiment"


def _refuse(source: str, path: str, message: str, hint: str = "") -> ExperimentInputError:
    return ExperimentInputError(source, [Problem(path, message, hint)])


# power-off takes several machines at once, joined by "+" ("proxmox+pi"): the plan's
# "any 2 hosts down". Every other fault has one subject.
SEVERAL = "+"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    subject: str  # a node (drain, stop-volume-server) or hosts or guest nodes (power-off)

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.subject.split(SEVERAL))

    @property
    def text(self) -> str:
        both = " and ".join(self.subjects)
        return {
            "drain": f"drain {self.subject}: cordon it and evict every pod but DaemonSets'",
            "stop-volume-server": f"stop the SeaweedFS volume server on {self.subject} "
            "(its StatefulSet scaled to 0)",
            "cut-nfs": f"cut {self.subject} off the NFS server (/etc/exports rewritten without "
            "it, exportfs -ra)",
            "power-off": f"power {both} off hard (plugs pulled, or VMs stopped)"
            if len(self.subjects) > 1
            else f"power {both} off hard (its plug pulled, or its VM stopped)",
        }[self.kind]

    @property
    def undo_text(self) -> str:
        return {
            "drain": f"uncordon {self.subject}",
            "stop-volume-server": "scale the volume server's StatefulSet back to what it was",
            "cut-nfs": "put the NFS server's /etc/exports back as it was (exportfs -ra)",
            "power-off": f"power {' and '.join(self.subjects)} on",
        }[self.kind]


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    plan: str  # what the plan says of it, in its words
    fault: Fault
    follow: tuple[str, ...] = ()  # apps whose pods are followed (where, phase)
    return_home: bool = False  # after the undo, their pods deleted to come back (Test 1, 5-7)
    abort_after_s: float = 900  # undone if the outcome is not seen by then
    max_api_down_s: float = 180  # undone at once if the API stays down longer
    settle_s: float = 300  # time allowed for the steady state to come back after the undo
    observe_s: float = 12  # how long a fault that moves nothing is watched
    running_only: bool = False  # follow only the apps running at the start (else: must be)
    notes: tuple[str, ...] = field(default=())


def home_node(inv: Inventory, app: App) -> str | None:
    """Where the scheduler puts the app with every node up: the first of the nodes it
    fits best (its preference, else any it fits)."""
    best = FitTable(inv.apps, inv.nodes).best(app, inv.nodes)
    return best[0].name if best else None


def test_apps(inv: Inventory) -> list[App]:
    """The HA test workloads: apps that keep state on SeaweedFS (the plan's Sonarr)."""
    return [
        a
        for a in inv.apps
        if a.role == "app" and a.kind != "docker" and any(v.kind == "seaweedfs" for v in a.volumes)
    ]


def phase5_tests(inv: Inventory) -> list[Experiment]:
    """The plan's phase 5 Tests 1 to 3 for this inventory: the node the test workload
    runs on drained (and the workload brought back), then that node's volume server
    stopped (or the first volume server's, where that node has none), then that node cut
    off the NFS server (where the workload mounts NFS)."""
    apps = test_apps(inv)
    home = next((n for a in apps if (n := home_node(inv, a))), None)
    if home is None:
        workers = [n.name for n in inv.nodes if not n.is_server]
        home = workers[0] if workers else inv.nodes[-1].name
    names = tuple(a.name for a in apps)
    found = [
        Experiment(
            "test1",
            f"Test 1: {home} drained, {', '.join(names) or 'the test workload'} moves and "
            "comes back",
            "Drain w1; verify Sonarr reschedules to w2; access Sonarr UI, verify config intact; "
            "check SeaweedFS still accessible; uncordon w1; delete Sonarr pod to force "
            "reschedule back to w1; verify Sonarr returns to w1 with config intact.",
            Fault("drain", home),
            follow=names,
            return_home=True,
        )
    ]
    servers = [n.name for n in inv.seaweed_volume_servers]
    if servers:
        server = home if home in servers else servers[0]
        found.append(
            Experiment(
                "test2",
                f"Test 2: the SeaweedFS volume server on {server} stopped and started again",
                "Stop SeaweedFS volume pod on w1; verify data still accessible from the other "
                "replicas; restart volume pod on w1; verify replication resumes.",
                Fault("stop-volume-server", server),
                follow=names,
            )
        )
    if inv.storage.nfs is not None and any(v.kind == "nfs" for a in apps for v in a.volumes):
        found.append(
            Experiment(
                "test3",
                f"Test 3: {home} cut off the NFS server, then let in again",
                "Unmount NFS on w1 temporarily; verify Sonarr shows media as unavailable "
                "(expected); remount NFS; verify Sonarr can access media again.",
                Fault("cut-nfs", home),
                follow=names,
            )
        )
    return found


def experiment_from(doc: Any, source: str, path: str) -> Experiment:
    """An experiment from a mapping (a YAML file's entry); the error names the field."""
    if not isinstance(doc, dict):
        raise _refuse(source, path, "an experiment is a mapping", "give id, title and fault")
    known = set(Experiment.__dataclass_fields__)
    if unknown := sorted(set(doc) - known):
        raise _refuse(
            source,
            path,
            f"unknown field(s) {', '.join(unknown)}",
            f"known: {', '.join(sorted(known))}",
        )
    fault = doc.get("fault")
    if not isinstance(fault, dict) or fault.get("kind") not in FAULTS or not fault.get("subject"):
        raise _refuse(
            source,
            f"{path}.fault",
            "a fault needs a kind and a subject",
            f"{{kind: {' | '.join(FAULTS)}, subject: <node or host>}}",
        )
    for key in ("id", "title"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise _refuse(source, f"{path}.{key}", "a non-empty string is required")
    try:
        return Experiment(
            id=doc["id"],
            title=doc["title"],
            plan=str(doc.get("plan", "")),
            fault=Fault(cast(FaultKind, fault["kind"]), str(fault["subject"])),
            follow=tuple(str(a) for a in doc.get("follow", ())),
            return_home=bool(doc.get("return_home", False)),
            abort_after_s=float(doc.get("abort_after_s", 900)),
            max_api_down_s=float(doc.get("max_api_down_s", 180)),
            settle_s=float(doc.get("settle_s", 300)),
            observe_s=float(doc.get("observe_s", 12)),
            running_only=bool(doc.get("running_only", False)),
            notes=tuple(str(n) for n in doc.get("notes", ())),
        )
    except (TypeError, ValueError) as exc:
        raise _refuse(source, path, str(exc)) from None


def load_experiments(path: Path, inv: Inventory) -> list[Experiment]:
    """A YAML file's `experiments:` list, each checked against the inventory."""
    from halab.inventory.yaml_source import read_yaml

    doc = read_yaml(path).data
    entries = doc.get("experiments") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise _refuse(str(path), "", "no `experiments:` list", "experiments: [{id: ..., ...}]")
    found = [experiment_from(e, str(path), f"experiments[{i}]") for i, e in enumerate(entries)]
    for i, exp in enumerate(found):
        check_subjects(exp, inv, str(path), f"experiments[{i}]")
    return found


def check_subjects(exp: Experiment, inv: Inventory, source: str = "", path: str = "") -> None:
    """The fault's subject and the followed apps exist in this inventory."""
    source, path = source or exp.id, path or "experiment"
    nodes = {n.name for n in inv.nodes}
    hosts = {h.name for h in inv.hosts}
    allowed = nodes | hosts if exp.fault.kind == "power-off" else nodes
    what = "host or node" if exp.fault.kind == "power-off" else "node"
    subjects = exp.fault.subjects
    if len(subjects) > 1 and exp.fault.kind != "power-off":
        raise _refuse(
            source,
            f"{path}.fault.subject",
            f"{exp.fault.kind} takes one node, not {len(subjects)}",
            f"only power-off takes several, joined by {SEVERAL!r}",
        )
    if len(set(subjects)) < len(subjects):
        raise _refuse(source, f"{path}.fault.subject", "a machine is named twice")
    for subject in subjects:
        if subject not in allowed:
            raise _refuse(
                source,
                f"{path}.fault.subject",
                f"{subject!r} is no {what} of the inventory",
                f"one of {', '.join(sorted(allowed))}",
            )
    if exp.fault.kind == "stop-volume-server":
        servers = {n.name for n in inv.seaweed_volume_servers}
        if exp.fault.subject not in servers:
            raise _refuse(
                source,
                f"{path}.fault.subject",
                f"{exp.fault.subject} runs no SeaweedFS volume server",
                f"those that do: {', '.join(sorted(servers)) or 'none'}",
            )
    if exp.fault.kind == "cut-nfs" and inv.storage.nfs is None:
        raise _refuse(source, f"{path}.fault", "the inventory has no NFS server to cut from")
    apps = {a.name for a in inv.apps}
    if missing := [a for a in exp.follow if a not in apps]:
        raise _refuse(
            source,
            f"{path}.follow",
            f"no app named {', '.join(missing)} in the inventory",
            f"apps: {', '.join(sorted(apps))}",
        )


def host_scenarios(inv: Inventory) -> list[Experiment]:
    """The plan's Failure Scenarios for this inventory: each physical host that runs a
    node, the NFS server or a container powered off hard, in the inventory's order,
    following every Kubernetes app. The abort time is the planner's slowest move with the
    inventory's timings, and some to spare."""
    nfs_host = inv.storage.nfs.host if inv.storage.nfs else ""
    found = []
    for host in inv.hosts:
        nodes = [n.name for n in inv.nodes_on(host.name)]
        docker = [a.name for a in inv.apps if a.kind == "docker" and a.host == host.name]
        if not nodes and not docker and host.name != nfs_host:
            continue
        found.append(host_scenario(inv, [host.name]))
    return found


def host_scenario(inv: Inventory, hosts: list[str]) -> Experiment:
    """Those hosts powered off hard at once, following every Kubernetes app. One host is
    one of the plan's Scenarios; two are its "any 2 hosts down" ("read-only mode", it
    says). The abort time is the planner's slowest move with the inventory's timings, and
    some to spare."""
    from halab.experiments.expect import eviction_after_s, outlook, tolerance_s

    followed = tuple(a.name for a in inv.apps if a.kind in ("deployment", "statefulset"))
    nfs_host = inv.storage.nfs.host if inv.storage.nfs else ""
    parts = []
    for name in hosts:
        nodes = [n.name for n in inv.nodes_on(name)]
        docker = [a.name for a in inv.apps if a.kind == "docker" and a.host == name]
        parts += nodes + docker + (["the NFS server"] if name == nfs_host else [])
    both = " and ".join(hosts)
    plan = (
        "Failure Scenarios & Recovery: the host fails; etcd keeps quorum; workloads "
        "reschedule by themselves; SeaweedFS data stays accessible; only the other GPU "
        "worker transcodes."
        if len(hosts) == 1
        else "High Availability Characteristics: any 2 hosts down: no quorum, read-only mode; "
        "SeaweedFS degraded, data may be partially available."
    )
    exp = Experiment(
        f"host-{'-'.join(hosts)}",
        f"{both} powered off ({', '.join(parts) or 'nothing of the cluster'})",
        plan,
        Fault("power-off", SEVERAL.join(hosts)),
        follow=followed,
    )
    # Where every followed app runs as the planner places it with every node up.
    homes = {a: h for a in followed if (h := home_node(inv, inv.app(a)))}
    seen = outlook(inv, exp, homes)
    slowest = max((a.predicted_s or 0.0 for a in seen.apps), default=0.0)
    # Long enough that an app which should stay would have been evicted.
    observe = float(eviction_after_s(inv) + 10)
    return Experiment(
        exp.id, exp.title, exp.plan, exp.fault, exp.follow,
        abort_after_s=slowest + tolerance_s(slowest) + 60,
        # Where the planner loses the API, its outage is the outcome, not a reason to stop.
        max_api_down_s=180.0 if seen.api_up else observe + 60,
        settle_s=max(300.0, slowest),
        observe_s=observe,
        running_only=True,
    )  # fmt: skip
