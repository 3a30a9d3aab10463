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
from halab.evidence import Check, Status, timed
from halab.inventory.model import Node
from halab.phases import loadbalancer
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

        def probe(mapped: str = mapped, port: int = port) -> tuple[Status, str]:
            ok, detail = _reachable(mapped, port)
            return ("pass" if ok else "fail"), detail

        checks.append(timed(cid, title, probe))
    return checks


def host_facts(ctx: Context) -> pd.DataFrame:
    """Every host and node over SSH beside the inventory (empty without a target)."""
    from halab import host_facts as facts

    if ctx.target is None:
        return pd.DataFrame()
    return facts.table(ctx.inventory, ctx.target, facts.gather(ctx.inventory, ctx.target))


def _facts_rows(ctx: Context, frame: pd.DataFrame | None) -> dict[str, dict[str, object]]:
    from halab import host_facts as facts

    assert ctx.target is not None
    if frame is None:
        frame = facts.table(ctx.inventory, ctx.target, facts.gather(ctx.inventory, ctx.target))
    labels = {m.label: m for m in facts.machines(ctx.inventory)}
    out: dict[str, dict[str, object]] = {}
    for record in frame.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        machine = labels[str(row["machine"])]
        out[machine.node.name if machine.node else machine.name] = row
        out.setdefault(machine.name, row)
    return out


def _picked(mismatches: object, *topics: str) -> list[str]:
    return [m for m in str(mismatches or "").split("; ") if m and m.startswith(topics)]


def check_nodes_live(ctx: Context, facts: pd.DataFrame | None = None) -> list[Check]:
    """Per node, over SSH: its address is its own (the DHCP reservation held), and its
    cores, memory, OS and disks are what the plan gives it. Raspberry Pi hosts: prepared
    as the plan says (SSH, its OS, arm64, RAM, the OS on the disk planned, not an SD card)."""
    inv = ctx.inventory
    titles = {
        "address": "{n} answers SSH on its reserved address ({a}), seen in its ip addr",
        "sizes": "{n} has the cores, memory, OS and disk the plan gives it",
    }
    if ctx.target is None:
        return [
            Check(f"{kind}-{n.name}", t.format(n=n.name, a=n.address), "skip",
                  "no target given (pass target=... to check live)")
            for n in inv.nodes for kind, t in titles.items()
        ]  # fmt: skip
    rows = _facts_rows(ctx, facts)
    checks: list[Check] = []
    for node in inv.nodes:
        row = rows[node.name]
        mine = _node_checks(ctx, node, row, titles)
        for check in mine:
            # What asking the machine took: one SSH command answers all its checks.
            check.seconds = float(str(row.get("seconds") or 0.0))
        checks += mine
    return checks


def _node_checks(
    ctx: Context, node: Node, row: dict[str, object], titles: dict[str, str]
) -> list[Check]:
    inv = ctx.inventory
    checks: list[Check] = []
    title = titles["address"].format(n=node.name, a=node.address)
    if not row["reachable"]:
        return [
            Check(f"address-{node.name}", title, "fail", str(row["mismatches"])),
            Check(f"sizes-{node.name}", titles["sizes"].format(n=node.name), "skip",
                  "not reachable over SSH"),
        ]  # fmt: skip
    wrong = _picked(row["mismatches"], "address")
    checks.append(
        Check(
            f"address-{node.name}",
            title,
            "fail" if wrong else "pass",
            "; ".join(wrong) or f"ip addr shows {row['address']}",
        )
    )
    wrong = _picked(row["mismatches"], "arch", "cores", "memory", "os", "k3s")
    checks.append(
        Check(
            f"sizes-{node.name}",
            titles["sizes"].format(n=node.name),
            "fail" if wrong else "pass",
            "; ".join(wrong)
            or f"{row['cores']} cores, {row['memory_gib']} GiB, {row['os']}, "
            f"OS disk {row['os_disk']}",
        )
    )
    if inv.host(node.host).kind == "raspberry-pi":
        wrong = _picked(row["mismatches"], "arch", "memory", "os")
        checks.append(
            Check(
                f"pi-prepared-{node.name}",
                f"{node.name} prepared: SSH, {node.os}, arm64, {node.memory_gib:g} GiB, "
                f"the OS on its {node.os_disk}",
                "fail" if wrong else "pass",
                "; ".join(wrong)
                or f"{row['os']}, {row['arch']}, {row['memory_gib']} GiB, OS disk {row['os_disk']}",
            )
        )
    return checks


def check_cluster_state(ctx: Context) -> list[Check]:
    """What runs today, where something does: the first server's k3s version, the nodes,
    and what Flux syncs from which branch."""
    cid, title = "cluster-state", "The cluster as it stands: k3s version, nodes, Flux's source"
    if ctx.target is None:
        return [Check(cid, title, "skip", "no target given (pass target=... to check live)")]
    from kubernetes.client.exceptions import ApiException

    from halab.kube import api_client

    target = ctx.target
    first = ctx.inventory.servers[0].name

    def run() -> tuple[Status, str]:
        from kubernetes import client as k8s

        api = api_client(target)
        nodes = k8s.CoreV1Api(api).list_node(_request_timeout=10).items
        if not nodes:
            return "skip", "no nodes yet: nothing runs to describe"
        versions = {n.metadata.name: n.status.node_info.kubelet_version for n in nodes}
        parts = [
            f"{first} runs {versions.get(first, 'nothing (not joined)')}",
            f"{len(nodes)} nodes: {', '.join(sorted(versions))}",
        ]
        try:
            repos = k8s.CustomObjectsApi(api).list_cluster_custom_object(
                "source.toolkit.fluxcd.io", "v1", "gitrepositories", _request_timeout=10
            )["items"]
            parts += [
                f"Flux syncs {r['spec'].get('url')} branch {r['spec'].get('ref', {}).get('branch')}"
                for r in repos
            ] or ["Flux is installed but syncs no GitRepository"]
        except ApiException as exc:
            if exc.status != 404:
                raise
            parts.append("no Flux yet (it is bootstrapped in phase 9)")
        return "pass", "; ".join(parts)

    return [timed(cid, title, run, required=False)]


def check_served_parts(ctx: Context) -> list[Check]:
    """MetalLB and the cluster DNS, and the GitHub PAT, once something serves them."""
    checks = []
    secrets = ctx.inventory.secrets
    pat = next((ref for name, ref in secrets.items() if "github" in name or "pat" in name), None)
    title = "The GitHub PAT is accepted by GitHub"
    if pat is None:
        checks.append(Check("github-pat", title, "skip", "the inventory names no GitHub PAT"))
    elif describe(pat.env) != "set":
        checks.append(Check("github-pat", title, "skip", f"{pat.env} is not set"))
    elif ctx.target is not None and (why := ctx.target.lacks("internet")):
        checks.append(Check("github-pat", title, "skip", why))
    else:
        checks.append(timed("github-pat", title, lambda: _github_pat(pat.env), required=False))
    if ctx.target is None:
        for cid, what in (("metallb", "MetalLB"), ("coredns", "Cluster DNS (CoreDNS)")):
            checks.append(Check(cid, f"{what} answers", "skip", "no target given"))
        return checks
    from kubernetes import client as k8s

    from halab.kube import api_client

    api = api_client(ctx.target)

    if not loadbalancer.deployed(api):
        checks.append(
            Check(
                "metallb",
                "MetalLB assigns and announces addresses",
                "skip",
                "MetalLB is not deployed yet (the GitOps tree brings it; phase 7 delivers it)",
                required=False,
            )
        )
    else:
        for check in (
            loadbalancer.check_config(ctx, api),
            loadbalancer.check_probe_service(ctx, api),
        ):
            check.required = False  # phase 7 requires them; here they are a look ahead
            checks.append(check)

    def coredns() -> tuple[Status, str]:
        svc = (
            k8s.CoreV1Api(api)
            .list_namespaced_service(
                "kube-system", label_selector="k8s-app=kube-dns", _request_timeout=10
            )
            .items
        )
        if not svc:
            return "skip", "no kube-dns Service yet (k3s brings CoreDNS with its first server)"
        probe = loadbalancer.check_cluster_dns(api)
        return probe.status, f"kube-dns Service at {svc[0].spec.cluster_ip}; {probe.detail}"

    checks.append(timed("coredns", "Cluster DNS (CoreDNS) answers a pod", coredns, required=False))
    return checks


def _github_pat(env: str) -> tuple[Status, str]:
    import os
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        "https://api.github.com/user", headers={"Authorization": f"Bearer {os.environ[env]}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            scopes = resp.headers.get("X-OAuth-Scopes", "")
        return "pass", f"GitHub accepts {env}" + (f" (scopes: {scopes})" if scopes else "")
    except urllib.error.HTTPError as exc:
        return "fail", f"GitHub refused {env}: HTTP {exc.code} (make a new token with repo scope)"


def all_checks(ctx: Context) -> list[Check]:
    return [
        check_inventory(ctx),
        check_addresses(ctx),
        check_gitops(ctx),
        *check_secrets(ctx),
        *check_tools(ctx),
        *check_live(ctx),
        *check_nodes_live(ctx),
        *check_cluster_state(ctx),
        *check_served_parts(ctx),
    ]
