"""The faults an experiment injects, each journalled before it is made, and the undo
actions that reverse them (carried out by the runner's `finally` or by `halab restore`)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from halab.drain import drain, set_unschedulable
from halab.errors import StepError
from halab.experiments.journal import Action, Journal
from halab.experiments.model import Fault
from halab.exports_file import without_client
from halab.hosts import Hosts
from halab.inventory import Inventory
from halab.power import Power
from halab.render.storage import NS as SEAWEED_NS
from halab.seaweed import service_name
from halab.target import Target

Say = Callable[[str], None]
EXPORTS = "/etc/exports"


class FaultError(StepError):
    pass


def volume_server_set(node: str) -> tuple[str, str]:
    """The rendered StatefulSet of one that runs `node`'s volume server."""
    return SEAWEED_NS, service_name("volume", node)


def inject(
    fault: Fault, api: Any, inventory: Inventory, target: Target, journal: Journal, say: Say
) -> str:
    """Make the fault, its undo written to the journal first; what was done."""
    from kubernetes import client

    if fault.kind == "drain":
        journal.will({"do": "uncordon", "node": fault.subject})
        set_unschedulable(api, fault.subject, True)
        say(f"cordoned {fault.subject}")
        evicted = drain(api, fault.subject, said=say)
        return f"{fault.subject} cordoned and drained ({len(evicted)} pods evicted)"
    if fault.kind == "stop-volume-server":
        namespace, name = volume_server_set(fault.subject)
        apps = client.AppsV1Api(api)
        replicas = apps.read_namespaced_stateful_set(name, namespace).spec.replicas
        journal.will(
            {
                "do": "scale",
                "kind": "StatefulSet",
                "namespace": namespace,
                "name": name,
                "replicas": 1 if replicas is None else int(replicas),
            }
        )
        apps.patch_namespaced_stateful_set_scale(name, namespace, {"spec": {"replicas": 0}})
        return f"StatefulSet {namespace}/{name} scaled from {replicas} to 0"
    if fault.kind == "power-off":
        power, said = Power(inventory, target), []
        for name in fault.subjects:  # each undo written before its machine goes
            journal.will({"do": "power-on", "name": name})
            said.append(power.off(name) or f"{name} powered off")
        return "; ".join(said)
    if fault.kind == "cut-nfs":
        return _cut_nfs(fault.subject, inventory, target, journal)
    raise ValueError(f"unknown fault {fault.kind}")


def _cut_nfs(node: str, inventory: Inventory, target: Target, journal: Journal) -> str:
    """The NFS server stops letting `node` in: its /etc/exports rewritten over SSH so that
    every entry covering the node's address names the other nodes instead, then
    `exportfs -ra`. The file as it was goes into the journal first."""
    if inventory.storage.nfs is None:
        raise FaultError("the inventory has no NFS server to cut a node from")
    server = inventory.storage.nfs.host
    address = str(inventory.node(node).address)
    others = [str(n.address) for n in inventory.nodes if n.name != node]
    with Hosts(inventory, target) as hosts:
        current = hosts[server].read(EXPORTS)
        cut, paths = without_client(current, address, others)
        if not paths:
            raise FaultError(f"{server}:{EXPORTS} lets {node} ({address}) into no export")
        journal.will({"do": "exports", "host": server, "content": current})
        _write_exports(hosts, server, cut)
    return f"{server}: {node} ({address}) cut from {', '.join(paths)} (exportfs -ra)"


def _write_exports(hosts: Hosts, server: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "exports"
        local.write_text(text)
        hosts[server].upload(local, EXPORTS, mode=0o644)
    hosts[server].run(["exportfs", "-ra"], timeout=60, check=True)


def undo(action: Action, api: Any, inventory: Inventory, target: Target) -> str:
    """Carry out one undo action; idempotent, so a restore may run it twice."""
    from kubernetes import client

    kind = action.get("do")
    if kind == "uncordon":
        changed = set_unschedulable(api, action["node"], False)
        return f"uncordoned {action['node']}" if changed else f"{action['node']} was schedulable"
    if kind == "scale":
        if action["kind"] != "StatefulSet":
            raise ValueError(f"cannot scale a {action['kind']}")
        client.AppsV1Api(api).patch_namespaced_stateful_set_scale(
            action["name"], action["namespace"], {"spec": {"replicas": action["replicas"]}}
        )
        return f"{action['namespace']}/{action['name']} scaled to {action['replicas']}"
    if kind == "exports":
        with Hosts(inventory, target) as hosts:
            _write_exports(hosts, action["host"], action["content"])
        return f"{action['host']}: {EXPORTS} put back (exportfs -ra)"
    if kind == "power-on":
        power = Power(inventory, target)
        name = action["name"]
        if _running(power, inventory, name):
            return f"{name} was running"
        return power.on(name) or f"{name} powered on"
    raise ValueError(f"the journal names an action this kit does not know: {action}")


def _running(power: Power, inventory: Inventory, name: str) -> bool:
    """A guest's state from its hypervisor; a physical machine is always switched on
    (the target's `on` command is expected to be harmless when it already runs)."""
    from halab.power import hypervisor_of

    if hypervisor_of(inventory, name) is None:
        return False
    return power.state(name) == "running"
