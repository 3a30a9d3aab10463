"""Power for the failure rehearsals and the plan's VM steps: a physical host's plug, and a
guest node's hypervisor.

A target names two shell commands with {host} in them for physical machines; the kit runs
them and never needs to know what kind of cluster is behind them (the twin writes its
own). Guests (VMs and LXC containers) are powered as at home: over SSH to their host, with
qm/pct on Proxmox and virsh on Unraid.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from halab.errors import StepError
from halab.hosts import Hosts
from halab.inventory import Inventory
from halab.target import Target


class PowerError(StepError):
    pass


@dataclass(frozen=True)
class PowerSwitch:
    off_command: str
    on_command: str

    @classmethod
    def for_target(cls, target: Target | None) -> PowerSwitch:
        if target is None or not target.power.off or not target.power.on:
            raise PowerError(
                "the target has no power commands: add power: {off: ..., on: ...} with {host} "
                "to the target file (the twin's target.yaml has them)"
            )
        return cls(target.power.off, target.power.on)

    def _run(self, template: str, host: str) -> str:
        command = shlex.split(template.replace("{host}", host))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PowerError(f"{command[0]}: {exc}") from None
        if done.returncode != 0:
            raise PowerError(
                f"`{' '.join(command)}` failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-300:]}"
            )
        return done.stdout.strip()

    def off(self, host: str) -> str:
        return self._run(self.off_command, host)

    def on(self, host: str) -> str:
        return self._run(self.on_command, host)


@dataclass(frozen=True)
class Hypervisor:
    """How a guest node is powered: which CLI on which host."""

    tool: str  # qm, pct or virsh
    host: str
    guest: str


# What each power action is in each hypervisor's CLI.
VERBS = {
    "qm": {"off": "stop", "shutdown": "shutdown", "on": "start"},
    "pct": {"off": "stop", "shutdown": "shutdown", "on": "start"},
    "virsh": {"off": "destroy", "shutdown": "shutdown", "on": "start"},
}


def hypervisor_of(inventory: Inventory, name: str) -> Hypervisor | None:
    """The hypervisor that powers node `name`, or None when it is a machine of its own
    (a bare-metal node or a physical host: the target's power commands switch those)."""
    node = next((n for n in inventory.nodes if n.name == name), None)
    if node is None or node.kind == "bare-metal":
        return None
    host = inventory.host(node.host)
    if host.kind == "proxmox":
        return Hypervisor("qm" if node.kind == "vm" else "pct", host.name, node.name)
    if node.kind == "vm":
        return Hypervisor("virsh", host.name, node.name)  # Unraid's VMs, or any KVM host
    raise PowerError(
        f"{name} is an LXC container on {host.name} ({host.kind}): the kit powers LXC "
        "containers through Proxmox's pct only"
    )


def _guest_id(listing: str, tool: str, name: str, host: str) -> str:
    """The VM or CT id `qm list` / `pct list` gives the guest named `name`."""
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if fields and fields[-1 if tool == "pct" else 1] == name:
            return fields[0]
    raise PowerError(
        f"{host} has no {'VM' if tool == 'qm' else 'container'} named {name} "
        f"(`{tool} list` there lists: "
        + ", ".join(ln.split()[-1 if tool == "pct" else 1] for ln in listing.splitlines()[1:]
                    if ln.split())
        + ")"
    )  # fmt: skip


class Power:
    """Power any host or node of the inventory: guests through their hypervisor over SSH
    (qm/pct on Proxmox, virsh on Unraid and other KVM hosts), physical machines through
    the target's power commands."""

    def __init__(self, inventory: Inventory, target: Target, hosts: Hosts | None = None) -> None:
        self.inventory = inventory
        self.target = target
        self.hosts = hosts or Hosts(inventory, target)

    def how(self, name: str, action: str = "off") -> str:
        """What `action` on `name` will run, for a notebook to say before it does it."""
        hv = hypervisor_of(self.inventory, name)
        if hv is None:
            switch = PowerSwitch.for_target(self.target)
            machine = self._machine(name)
            return (switch.off_command if action == "off" else switch.on_command).replace(
                "{host}", machine
            )
        verb = VERBS[hv.tool][action]
        guest = hv.guest if hv.tool == "virsh" else f"<id of {hv.guest}>"
        return f"ssh {hv.host} {hv.tool} {verb} {guest}"

    def _machine(self, name: str) -> str:
        node = next((n for n in self.inventory.nodes if n.name == name), None)
        return node.host if node is not None else self.inventory.host(name).name

    def _guest_cmd(self, hv: Hypervisor, verb: str) -> list[str]:
        if hv.tool == "virsh":
            return ["virsh", verb, hv.guest]
        listing = self.hosts[hv.host].run([hv.tool, "list"], timeout=30, check=True).stdout
        return [hv.tool, verb, _guest_id(listing, hv.tool, hv.guest, hv.host)]

    def _act(self, name: str, action: str) -> str:
        hv = hypervisor_of(self.inventory, name)
        if hv is None:
            switch = PowerSwitch.for_target(self.target)
            machine = self._machine(name)
            if action == "shutdown":
                self.hosts[machine].run(["sudo", "poweroff"], timeout=30)
                return f"{machine}: poweroff"
            return switch.off(machine) if action == "off" else switch.on(machine)
        verb = VERBS[hv.tool][action]
        command = self._guest_cmd(hv, verb)
        done = self.hosts[hv.host].run(command, timeout=180)
        if done.returncode != 0:
            raise PowerError(
                f"{hv.host}: `{' '.join(command)}` failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-300:]}"
            )
        return f"{hv.host}: {' '.join(command)}"

    def off(self, name: str) -> str:
        """Cut the power (a VM stopped hard, a host's plug pulled)."""
        return self._act(name, "off")

    def shutdown(self, name: str) -> str:
        """Shut down cleanly (ACPI for a guest, poweroff for a physical machine)."""
        return self._act(name, "shutdown")

    def on(self, name: str) -> str:
        return self._act(name, "on")

    def state(self, name: str) -> str:
        """running or stopped for a guest, from its hypervisor."""
        hv = hypervisor_of(self.inventory, name)
        if hv is None:
            raise PowerError(f"{name} is not a guest of a hypervisor: ask its SSH instead")
        command = self._guest_cmd(hv, "domstate" if hv.tool == "virsh" else "status")
        out = self.hosts[hv.host].run(command, timeout=30, check=True).stdout.strip()
        word = out.removeprefix("status:").strip().splitlines()[0] if out else ""
        return "running" if word == "running" else "stopped"
