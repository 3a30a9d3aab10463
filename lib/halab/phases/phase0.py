"""Phase 0, prerequisites: what can be proven before anything is installed.

Plan "Phase 0: Prerequisites": static DHCP reservations, the Pi prepared with SSH, the
v2 branch, a valid GitHub PAT for Flux, MetalLB and CoreDNS verified. Offline checks read
the inventory and this machine; live checks need a target and are skipped without one.
"""

from __future__ import annotations

import shutil
import socket
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pandas as pd

from halab.context import Context
from halab.evidence import Check, Status
from halab.secrets import describe

# Tools the kit drives from the controller, and the phase that first needs each.
CONTROLLER_TOOLS = {"ssh": 1, "kubectl": 1, "ffmpeg": 8}


def address_plan(ctx: Context) -> pd.DataFrame:
    """Every address the plan reserves, with its owner: the DHCP reservation list."""
    inv = ctx.inventory
    rows = [
        {"address": str(h.address), "name": h.name, "what": f"host ({h.kind})"} for h in inv.hosts
    ]
    rows += [
        {
            "address": str(n.address),
            "name": n.name,
            "what": f"k3s {n.k3s_role} on {n.host} ({n.kind})",
        }
        for n in inv.nodes
    ]
    rows += [
        {"address": str(inv.network.vip), "name": "api-vip", "what": "kube-vip VIP"},
        {"address": str(inv.network.gateway), "name": "gateway", "what": "router / BGP peer"},
    ]
    rows += [
        {"address": p, "name": "metallb-pool", "what": "LoadBalancer IPs"}
        for p in inv.network.metallb.pool
    ]
    frame = pd.DataFrame(rows)
    key = frame["address"].map(lambda a: int(IPv4Address(a.split("-")[0])))
    return frame.assign(_k=key).sort_values("_k").drop(columns="_k").reset_index(drop=True)


def check_inventory(ctx: Context) -> Check:
    inv = ctx.inventory
    return Check(
        "inventory-sound",
        "Inventory loads and satisfies every cluster rule",
        "pass",
        f"{len(inv.hosts)} hosts, {len(inv.nodes)} nodes ({len(inv.servers)} "
        f"control plane), {len(inv.apps)} apps",
    )


def check_addresses(ctx: Context) -> Check:
    plan = address_plan(ctx)
    return Check(
        "address-plan",
        "Static addresses unique, inside the subnet, clear of VIP and pool",
        "pass",
        f"{len(plan)} reservations in {ctx.inventory.network.subnet}",
        data=plan.to_dict("records"),
    )


def check_gitops(ctx: Context) -> Check:
    g = ctx.inventory.gitops
    if g is None:
        return Check(
            "gitops-branch",
            "GitOps repository and branch named",
            "fail",
            "no gitops: section; phase 9 needs repo, branch and path",
        )
    return Check(
        "gitops-branch",
        "GitOps repository and branch named",
        "pass",
        f"{g.repo} branch {g.branch}, path {g.path}",
    )


def check_secrets(ctx: Context) -> list[Check]:
    checks = []
    for name, ref in ctx.inventory.secrets.items():
        state = describe(ref.env)
        status: Status = "pass" if state == "set" else "warn"
        checks.append(
            Check(
                f"secret-{name}",
                f"{ref.env} holds the {name.replace('_', ' ')}",
                status,
                f"{ref.env} is {state}; needed from phase {ref.needed_from_phase}"
                + (f" ({ref.purpose})" if ref.purpose else ""),
                required=False,
            )
        )
    return checks


def check_tools(ctx: Context) -> list[Check]:
    checks = []
    for tool, phase in CONTROLLER_TOOLS.items():
        # The kit's own tools live in the venv (make setup puts kubectl there).
        beside = Path(sys.executable).with_name(tool)
        path = shutil.which(tool) or (str(beside) if beside.exists() else None)
        checks.append(
            Check(
                f"tool-{tool}",
                f"{tool} on this machine",
                "pass" if path else "warn",
                path
                or f"not found; phase {phase} needs it (Debian: apt-get install "
                f"{ {'ssh': 'openssh-client'}.get(tool, tool) })",
                required=False,
            )
        )
    return checks


def _reachable(address: str, port: int, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True, f"{address}:{port} accepts connections"
    except OSError as exc:
        return False, f"{address}:{port}: {exc.strerror or exc}"


def check_live(ctx: Context) -> list[Check]:
    """SSH on every host and node, and the API port on the VIP, through the target's map."""
    inv = ctx.inventory
    targets = [
        ("ssh-" + h.name, f"SSH reachable on host {h.name}", h.address, "ssh") for h in inv.hosts
    ]
    targets += [
        ("ssh-" + n.name, f"SSH reachable on node {n.name}", n.address, "ssh")
        for n in inv.nodes
        if not (n.kind == "bare-metal" and n.address == inv.host(n.host).address)
    ]
    targets.append(("api-vip", "Kubernetes API port open on the VIP", inv.network.vip, "api"))
    if ctx.target is None:
        return [
            Check(cid, title, "skip", "no target given (pass target=... to check live)")
            for cid, title, _, _ in targets
        ]
    checks = []
    for cid, title, address, kind in targets:
        mapped = str(ctx.target.addresses.map(address))
        port = ctx.target.ssh.port if kind == "ssh" else ctx.target.api_port
        ok, detail = _reachable(mapped, port)
        checks.append(Check(cid, title, "pass" if ok else "fail", detail))
    return checks


def all_checks(ctx: Context) -> list[Check]:
    return [
        check_inventory(ctx),
        check_addresses(ctx),
        check_gitops(ctx),
        *check_secrets(ctx),
        *check_tools(ctx),
        *check_live(ctx),
    ]
