"""The topology figure: physical hosts as boxes, their k3s nodes inside (matplotlib)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from halab.inventory.model import Inventory, Node

_ROLE_COLOURS = {"server": "#dbe9f6", "agent": "#e8f3e3"}


def _node_lines(node: Node) -> list[str]:
    lines = [
        node.name,
        f"{node.address}  {node.kind}, {node.arch}",
        f"{node.cpu} CPU, {node.memory_gib:g} GiB",
    ]
    role = "control plane (etcd)" if node.is_server else "worker"
    lines.append(role)
    sw = []
    if node.seaweedfs.master:
        sw.append("master")
    if node.seaweedfs.volume_gib:
        sw.append(f"volume {node.seaweedfs.volume_gib} GiB")
    if node.seaweedfs.filer:
        sw.append("filer")
    if sw:
        lines.append("SeaweedFS: " + ", ".join(sw))
    if node.gpu is not None:
        lines.append(f"GPU {node.gpu.device} ({node.gpu.resource_name})")
    for taint in node.taints:
        lines.append(f"taint {taint}")
    return lines


def topology_figure(inv: Inventory) -> Figure:
    """Hosts side by side; nodes stacked inside; VIP, MetalLB pool and NFS noted below."""
    hosts = inv.hosts
    tallest = max((len(inv.nodes_on(h.name)) for h in hosts), default=1) or 1
    node_h, gap = 1.9, 0.25
    host_w = 3.6
    fig = Figure(figsize=(1.2 + 4.0 * len(hosts), 2.2 + tallest * 1.55))
    ax = fig.add_subplot(1, 1, 1)
    total_h = tallest * (node_h + gap) + 1.2
    for i, host in enumerate(hosts):
        x = i * (host_w + 0.5)
        ax.add_patch(
            FancyBboxPatch(
                (x, 0),
                host_w,
                total_h,
                boxstyle="round,pad=0.05",
                fc="#f7f7f7",
                ec="#555555",
                lw=1.5,
            )
        )
        title = f"{host.name} ({host.kind})\n{host.address}"
        if host.gpu is not None:
            title += f"  GPU {host.gpu.device}"
        ax.text(
            x + host_w / 2,
            total_h - 0.15,
            title,
            ha="center",
            va="top",
            fontsize=9,
            fontweight="bold",
        )
        for j, node in enumerate(inv.nodes_on(host.name)):
            y = total_h - 1.1 - (j + 1) * (node_h + gap) + gap
            colour = _ROLE_COLOURS[node.k3s_role]
            edge = "#c0392b" if node.gpu is not None else "#34495e"
            ax.add_patch(
                FancyBboxPatch(
                    (x + 0.15, y),
                    host_w - 0.3,
                    node_h,
                    boxstyle="round,pad=0.03",
                    fc=colour,
                    ec=edge,
                    lw=1.2,
                )
            )
            lines = _node_lines(node)
            ax.text(x + 0.3, y + node_h - 0.12, lines[0], fontsize=8.5, fontweight="bold", va="top")
            ax.text(
                x + 0.3,
                y + node_h - 0.42,
                "\n".join(lines[1:]),
                fontsize=7,
                va="top",
                linespacing=1.25,
            )
        docker = [a.name for a in inv.apps if a.kind == "docker" and a.host == host.name]
        nfs = inv.storage.nfs
        extras = [f"docker: {d}" for d in docker]
        if nfs is not None and nfs.host == host.name:
            extras += [f"NFS {e.path} ({'ro' if e.read_only else 'rw'})" for e in nfs.exports]
        if extras:
            ax.text(x + 0.2, 0.15, "\n".join(extras), fontsize=7, va="bottom", color="#7f4f00")
    net = inv.network
    sw = inv.storage.seaweedfs
    caption = (
        f"API VIP {net.vip}:6443 (kube-vip)   MetalLB {net.metallb.mode.upper()} pool "
        f"{', '.join(net.metallb.pool)}   SeaweedFS {sw.replication} racks={sw.racks}"
        + (f" -> target {sw.target.replication} racks={sw.target.racks}" if sw.target else "")
    )
    ax.text(0, -0.35, caption, fontsize=8, va="top")
    ax.set_xlim(-0.2, len(hosts) * (host_w + 0.5))
    ax.set_ylim(-0.9, total_h + 0.2)
    ax.axis("off")
    ax.set_title(
        f"{inv.cluster.name}: {len(hosts)} hosts, {len(inv.nodes)} k3s nodes "
        f"({len(inv.servers)} control plane)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig
