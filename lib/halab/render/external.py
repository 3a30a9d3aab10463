"""external/: what runs outside Kubernetes, rendered from the same inventory.

- unraid/docker-compose.yml and an Unraid template for each Docker app (the ClusterPlex
  worker on the Unraid host), pointed at the orchestrator's pinned LoadBalancer address;
- proxmox/<node>.lxc.conf for each privileged LXC node (reference/k3s-ha.md §1.8);
- <nfs host>/exports for the NFS shares;
- udm/frr-bgp.conf, the UniFi gateway's BGP configuration (MetalLB in BGP mode): a
  neighbour for every node, since a speaker runs on each;
- k3s/install-<node>.sh for every node: the first server initialises the cluster, the rest
  join through the VIP; labels and taints only where k3s allows them at registration.
Secrets are never written: the install scripts read K3S_TOKEN from the environment.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from halab.inventory import App, Inventory, Node
from halab.render.apps import orchestrator_ip
from halab.render.yamltext import dump


def _orchestrator_url(inv: Inventory) -> str:
    port = next((a.ports[0] for a in inv.apps if a.role == "orchestrator" and a.ports), 3500)
    return f"http://{orchestrator_ip(inv)}:{port}"


def _docker_env(inv: Inventory, app: App) -> dict[str, str]:
    env = dict(app.env)
    if app.role == "worker":
        env["ORCHESTRATOR_URL"] = _orchestrator_url(inv)
    if app.docker_mods:
        env["DOCKER_MODS"] = "|".join(app.docker_mods)
    return dict(sorted(env.items()))


def compose(inv: Inventory, host: str) -> str:
    services = {}
    for app in inv.apps:
        if app.kind != "docker" or app.host != host:
            continue
        service: dict[str, object] = {
            "image": app.image,
            "container_name": app.name,
            "restart": "unless-stopped",
            "environment": _docker_env(inv, app),
            "volumes": [
                f"{v.host_path}:{v.mount_path}" + (":ro" if v.read_only else "")
                for v in app.volumes
                if v.kind == "host-path"
            ],
        }
        if app.devices:
            service["devices"] = [f"{d}:{d}" for d in app.devices]
        if app.ports:
            service["ports"] = [f"{p}:{p}" for p in app.ports]
        services[app.name] = service
    return (
        "# Rendered by halab from params/cluster.yaml; edit the inventory, not this file.\n"
        + dump({"services": services})
    )


def unraid_template(inv: Inventory, app: App) -> str:
    lines = [
        '<?xml version="1.0"?>',
        '<Container version="2">',
        f"  <Name>{escape(app.name)}</Name>",
        f"  <Repository>{escape(app.image)}</Repository>",
        "  <Network>bridge</Network>",
        "  <Privileged>false</Privileged>",
        "  <Overview>ClusterPlex transcode worker (rendered by halab)</Overview>",
    ]
    for port in app.ports:
        lines.append(
            f'  <Config Name={quoteattr(f"Port {port}")} Target="{port}" '
            f'Default="{port}" Mode="tcp" Type="Port" Display="always" '
            f'Required="true" Mask="false">{port}</Config>'
        )
    for vol in app.volumes:
        if vol.kind == "host-path":
            mode = "ro" if vol.read_only else "rw"
            lines.append(
                f"  <Config Name={quoteattr(vol.name)} Target={quoteattr(vol.mount_path)}"
                f' Default={quoteattr(vol.host_path)} Mode="{mode}" Type="Path" '
                f'Display="always" Required="true" Mask="false">'
                f"{escape(vol.host_path)}</Config>"
            )
    for device in app.devices:
        lines.append(
            f'  <Config Name="GPU" Target="" Default={quoteattr(device)} Mode="" '
            f'Type="Device" Display="always" Required="true" Mask="false">'
            f"{escape(device)}</Config>"
        )
    for key, value in _docker_env(inv, app).items():
        lines.append(
            f"  <Config Name={quoteattr(key)} Target={quoteattr(key)} "
            f'Default={quoteattr(value)} Mode="" Type="Variable" Display="always" '
            f'Required="false" Mask="false">{escape(value)}</Config>'
        )
    lines.append("</Container>")
    return "\n".join(lines) + "\n"


def lxc_conf(node: Node) -> str:
    lines = [
        f"# {node.name}: privileged LXC for k3s (rendered by halab). Append to",
        "# /etc/pve/lxc/<vmid>.conf; the kernel modules overlay, br_netfilter,",
        "# nf_conntrack and vxlan must be loaded on the Proxmox host.",
        f"cores: {node.cpu}",
        f"memory: {int(node.memory_gib * 1024)}",
        "swap: 0",
        "features: nesting=1",
        "unprivileged: 0",
        "lxc.apparmor.profile: unconfined",
        "lxc.cgroup2.devices.allow: a",
        "lxc.cap.drop:",
        'lxc.mount.auto: "proc:rw sys:rw"',
        # The kubelet needs /dev/kmsg, which an LXC lacks.
        "lxc.mount.entry: /dev/kmsg dev/kmsg none defaults,bind,create=file",
    ]
    if node.gpu is not None:
        lines += [
            "lxc.cgroup2.devices.allow: c 226:* rwm",
            f"lxc.mount.entry: {node.gpu.device} {node.gpu.device.lstrip('/')} none "
            "bind,optional,create=dir",
        ]
    return "\n".join(lines) + "\n"


def exports(inv: Inventory) -> str:
    assert inv.storage.nfs is not None
    subnet = inv.network.subnet
    lines = ["# /etc/exports (rendered by halab): only the cluster's subnet, not *"]
    for export in inv.storage.nfs.exports:
        lines.append(f"{export.path} {subnet}({','.join(export.options)})")
    return "\n".join(lines) + "\n"


def _config_yaml(inv: Inventory, node: Node, first: Node) -> dict[str, object]:
    timing = inv.cluster.timing
    config: dict[str, object] = {"node-name": node.name, "node-ip": str(node.address)}
    if node.is_server and node is first:
        config["cluster-init"] = True
    else:
        config["server"] = f"https://{inv.network.vip}:6443"
    if node.is_server:
        config["tls-san"] = [str(inv.network.vip)]
        config["disable"] = ["servicelb"]  # MetalLB answers for LoadBalancer Services
        config["write-kubeconfig-mode"] = "0640"
        cm_args, api_args = [], []
        if timing.node_monitor_grace_period_s is not None:
            cm_args.append(f"node-monitor-grace-period={timing.node_monitor_grace_period_s}s")
        if timing.default_not_ready_toleration_s is not None:
            api_args.append(
                f"default-not-ready-toleration-seconds={timing.default_not_ready_toleration_s}"
            )
        if timing.default_unreachable_toleration_s is not None:
            api_args.append(
                f"default-unreachable-toleration-seconds={timing.default_unreachable_toleration_s}"
            )
        if cm_args:
            config["kube-controller-manager-arg"] = cm_args
        if api_args:
            config["kube-apiserver-arg"] = api_args
    allowed = [f"{k}={v}" for k, v in sorted(node.labels.items()) if _registrable(k)]
    if allowed:
        config["node-label"] = allowed
    if node.taints:
        config["node-taint"] = [str(t) for t in node.taints]
    return config


def _registrable(key: str) -> bool:
    """The kubelet refuses kubernetes.io/k8s.io labels at registration, but its own."""
    domain = key.split("/")[0] if "/" in key else ""
    restricted = domain.endswith(("kubernetes.io", "k8s.io"))
    return not restricted or key.startswith(("node.kubernetes.io/", "kubelet.kubernetes.io/"))


def install_script(inv: Inventory, node: Node) -> str:
    first = inv.servers[0]
    role = "server" if node.is_server else "agent"
    config = dump(_config_yaml(inv, node, first))
    after_join = {k: v for k, v in node.labels.items() if not _registrable(k)}
    after_join.update(node.api_labels)
    api_labels = " ".join(f"{k}={v}" for k, v in sorted(after_join.items()))
    post = (
        (
            f"\n# Labels k3s cannot set at registration, applied through the API:\n"
            f"# kubectl label node {node.name} {api_labels}\n"
        )
        if api_labels
        else ""
    )
    return f"""#!/bin/sh
# Install k3s on {node.name} ({role}, {node.address}); rendered by halab from the inventory.
# The join token is read from the environment and never written to disk by this script.
set -eu
: "${{K3S_TOKEN:?set K3S_TOKEN to the cluster's join token}}"
mkdir -p /etc/rancher/k3s
cat > /etc/rancher/k3s/config.yaml <<'HALAB_EOF'
{config}HALAB_EOF
curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION={inv.cluster.k3s_version} \\
  K3S_TOKEN="$K3S_TOKEN" sh -s - {role}
{post}"""


def render_external(inv: Inventory) -> dict[str, str]:
    files: dict[str, str] = {}
    for host in sorted({a.host for a in inv.apps if a.kind == "docker"}):
        files[f"external/{host}/docker-compose.yml"] = compose(inv, host)
        for app in inv.apps:
            if app.kind == "docker" and app.host == host and inv.host(host).kind == "unraid":
                files[f"external/{host}/{app.name}.xml"] = unraid_template(inv, app)
    for node in inv.nodes:
        if node.kind == "lxc-privileged":
            files[f"external/{node.host}/{node.name}.lxc.conf"] = lxc_conf(node)
        files[f"external/k3s/install-{node.name}.sh"] = install_script(inv, node)
    if inv.storage.nfs is not None:
        files[f"external/{inv.storage.nfs.host}/exports"] = exports(inv)
    if inv.network.metallb.mode == "bgp":
        files["external/udm/frr-bgp.conf"] = gateway_bgp(inv)
    return files


def gateway_bgp(inv: Inventory) -> str:
    """The gateway's FRR configuration, as UniFi Network's BGP page takes it (an uploaded
    FRR file): eBGP with every node's speaker, and routes accepted without route-maps."""
    bgp = inv.network.metallb.bgp
    assert bgp is not None
    lines = [
        "! halab: the UniFi gateway's BGP configuration for MetalLB (rendered from the inventory).",
        f"! Router AS {bgp.peer_asn} at {inv.network.gateway}; the cluster's speakers are AS "
        f"{bgp.my_asn}, one per node.",
        "! To apply: UniFi Network > Settings > Routing > BGP, upload this file, save. Upload it",
        "! again whenever a node is added or re-addressed. Then, on the gateway over SSH:",
        "!   vtysh -c 'show bgp summary'   a session Established with every node below",
        "!   vtysh -c 'show ip bgp'        a /32 for each LoadBalancer address",
        "frr defaults traditional",
        f"router bgp {bgp.peer_asn}",
        f" bgp router-id {inv.network.gateway}",
        # FRR refuses eBGP routes without a policy unless told otherwise (RFC 8212).
        " no bgp ebgp-requires-policy",
        " bgp log-neighbor-changes",
        " neighbor K8S peer-group",
        f" neighbor K8S remote-as {bgp.my_asn}",
    ]
    if bgp.hold_time_s:
        # The same hold time as MetalLB's BGPPeer, keepalive a third of it as BGP suggests.
        lines.append(f" neighbor K8S timers {max(bgp.hold_time_s // 3, 1)} {bgp.hold_time_s}")
    for node in inv.nodes:
        lines.append(f" neighbor {node.address} peer-group K8S")
        lines.append(f" neighbor {node.address} description {node.name}")
    lines += [
        " address-family ipv4 unicast",
        "  neighbor K8S activate",
        "  neighbor K8S soft-reconfiguration inbound",
        # Every node announces every address: spread traffic over all of them (ECMP).
        f"  maximum-paths {max(len(inv.nodes), 1)}",
        " exit-address-family",
        "exit",
        "",
    ]
    return "\n".join(lines)
