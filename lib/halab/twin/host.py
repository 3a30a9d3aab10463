"""One physical host of the twin, as one process group: the host process holds its sshd,
its NFS server, its share of the cluster DNS and of kube-proxy's ClusterIPs, its control
socket (host_control.py) and its bare-metal node (etcd member as a child, API server, VIP
and controller-manager candidates, kubelet, NodePorts, MetalLB speaker); each VM or LXC
node is a guest process of its own (guests.py) holding the same parts for that node, so a
hypervisor can power one off alone. The BGP gateway (gateway.py) is a host process too.
A host with Docker (Unraid) runs its engine here (docker_engine.py). `twin fail` SIGKILLs
the whole group: every part of the host stops at once, like pulling its plug.

Run by the supervisor: python -m halab.twin.host --inventory FILE --dir DIR --host NAME
(and by the host for a guest: ... --node NAME)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

from aiohttp import web

from halab.exports_file import parse as parse_exports
from halab.inventory import Inventory, load_inventory
from halab.inventory.model import Node as InventoryNode
from halab.twin import cgroups
from halab.twin.api.admission import Tolerations
from halab.twin.api.server import ApiServer
from halab.twin.api.store import Store
from halab.twin.bootstrap import bootstrap
from halab.twin.client import Client, Informer, path
from halab.twin.controllers.leader import LeaderElector, Timings
from halab.twin.controllers.manager import Manager, Settings
from halab.twin.dns import ClusterDns, dns_address
from halab.twin.docker_engine import DockerEngine
from halab.twin.etcd import member_command
from halab.twin.gateway import GATEWAY, start_bgpd
from halab.twin.gateway import RENDERED as RENDERED_BGP
from halab.twin.gateway import twin_config as gateway_config
from halab.twin.guests import Guests
from halab.twin.host_control import HostControl
from halab.twin.images import metallb
from halab.twin.kube_proxy import KubeProxy
from halab.twin.kubelet.agent import Kubelet
from halab.twin.kubelet.nfs import twin_mapper
from halab.twin.kubelet.node import KUBELET_PORT
from halab.twin.kubelet.server import kubelet_app
from halab.twin.nfs_server import NfsServerSpec, file_exports
from halab.twin.nfs_server import reload as reload_nfs
from halab.twin.nfs_server import spec_for as nfs_spec
from halab.twin.nfs_server import start as start_nfs
from halab.twin.speaker import Speaker
from halab.twin.ssh_world import Machine, has_docker, start_sshd, world_path
from halab.twin.ssh_world import facts_for as ssh_facts
from halab.twin.ssh_world import machines as ssh_machines
from halab.twin.timings import TwinTimings
from halab.twin.topology import TWIN_NETWORK, TwinTopology
from halab.twin.vip import VipHolder

API_PORT = 6443
RENDERED_EXPORTS = "exports.rendered"
log = logging.getLogger("halab.twin.host")


class Host:
    def __init__(
        self,
        inv: Inventory,
        directory: Path,
        name: str,
        network: IPv4Network = TWIN_NETWORK,
        only_node: str | None = None,
        inventory_file: str = "",
    ) -> None:
        self.inv = inv
        self.only_node = only_node
        self.inventory_file = inventory_file
        self.dir = directory
        self.name = name
        self.topology = TwinTopology.from_inventory(inv, directory, network)
        self.timings = TwinTimings.from_inventory(inv)
        self.host_dir = directory / "hosts" / name
        self.etcd: list[subprocess.Popen[bytes]] = []
        self.nfs: list[subprocess.Popen[bytes]] = []
        self.runners: list[web.AppRunner] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.clients: list[Client] = []
        self.sshd: list[subprocess.Popen[bytes]] = []
        self.bgpd: list[subprocess.Popen[bytes]] = []
        self.guests: Guests | None = None
        self.control: HostControl | None = None
        self.nfs_spec: NfsServerSpec | None = None
        self.docker: DockerEngine | None = None
        self._served_exports = ""
        self.proxy: KubeProxy | None = None
        self.kubelets: dict[str, Kubelet] = {}

    @property
    def root(self) -> Path:
        """The host's own disk: its bare-metal node's files, its NFS exports, its Docker
        containers' host paths."""
        return self.host_dir / "root"

    def node_root(self, node: InventoryNode) -> Path:
        """The node's own filesystem, where its hostPath volumes live: a VM or container
        has a disk of its own, a bare-metal node is its host."""
        if node.kind == "bare-metal":
            return self.root
        return self.host_dir / "nodes" / node.name / "root"

    def server_addresses(self) -> list[str]:
        return [f"http://{self.topology.nodes[n.name]}:{API_PORT}" for n in self.inv.servers]

    async def run(self) -> None:
        if self.only_node is not None:
            await self._run_guest(self.only_node)
            return
        if self.name == GATEWAY:
            await self._run_gateway()
            return
        self.host_dir.mkdir(parents=True, exist_ok=True)
        here = [n for n in self.inv.nodes if n.host == self.name]
        bare = [n for n in here if n.kind == "bare-metal"]
        self.guests = (
            Guests(self.inv, self.inventory_file, self.dir, self.name, str(self.topology.network))
            if len(bare) < len(here)
            else None
        )
        if has_docker(self.inv, self.name):
            me = next(m for m in self._machines(guest=False) if m.name == self.name)
            self.docker = DockerEngine(
                self.host_dir / "docker",
                str(self.topology.hosts[self.name]),
                lambda path: world_path(me, self.root, path),
                str(self.dir),
                self._address_map(),
                # Containers resolve names through the host's resolver, the home gateway
                # (as Docker copies the host's resolv.conf): never this machine's own.
                nameserver=str(self.topology.gateway),
            )
        self.control = HostControl(
            self.dir,
            self.name,
            self.guests,
            self._nfs_running,
            self._exports,
            self._reload_exports,
            self.docker,
        )
        self.runners.append(await self.control.start())
        nfs = self.inv.storage.nfs
        exports = None
        if nfs is not None and nfs.host == self.name:
            # Rendered by the supervisor (the renderer's imports cost this process seconds
            # at every start): what /etc/exports holds until someone uploads another.
            exports = (self.host_dir / "nfs" / RENDERED_EXPORTS).read_text()
        for machine in self._machines(guest=False):
            self._sshd(machine, self.root, exports if machine.name == self.name else None)
        if exports is not None:
            spec = nfs_spec(self.inv, self.root, self.host_dir / "nfs", self.topology.network)
            self.nfs_spec = spec
            self.nfs = start_nfs(self.inv, spec, self._exports_text(), self.topology.network)
        for node in bare:
            await self._node_parts(node)
        if self.docker is not None:
            await self.docker.restore()  # as the daemon starts its containers at boot
        if self.guests is not None:
            for guest in self.guests.guests.values():
                self.guests.start(guest)  # onboot, as the plan's VMs and containers are
        servers = [n for n in self.inv.servers if n.host == self.name]
        if here:
            self._cluster_dns(servers[0].name if servers else None)
        # A host with nothing but its sshd and NFS server still runs until stopped.
        await asyncio.gather(*self.tasks, asyncio.get_running_loop().create_future())

    async def _run_guest(self, node_name: str) -> None:
        """This process is one VM or LXC node of the host: its parts and its sshd."""
        node = next(n for n in self.inv.nodes if n.name == node_name)
        for machine in self._machines(guest=True):
            if machine.name == node_name:
                self._sshd(machine, self.node_root(node), None)
        await self._node_parts(node)
        self._node_ports(node_name)
        await asyncio.gather(*self.tasks, asyncio.get_running_loop().create_future())

    async def _run_gateway(self) -> None:
        """The home gateway: the real bgpd with the rendered BGP configuration, and sshd."""
        router = self.topology.gateway
        assert router is not None
        frr = self.host_dir / "frr"
        (self.host_dir / "control").mkdir(parents=True, exist_ok=True)  # sessions bind it
        rendered = (frr / RENDERED_BGP).read_text()  # written by the supervisor
        config = gateway_config(rendered, self._address_map(), str(router))
        self.bgpd.append(start_bgpd(frr, config, str(router)))
        log.info("bgpd on %s with the rendered BGP configuration", router)
        for machine in self._machines(guest=False):
            self._sshd(machine, None, None)
        await asyncio.get_running_loop().create_future()

    def _machines(self, guest: bool) -> list[Machine]:
        return [
            m
            for m in ssh_machines(self.inv, self.dir, self.topology.network)
            if m.host == self.name and m.guest == guest
        ]

    def _sshd(self, machine: Machine, disk: Path | None, exports: str | None) -> None:
        facts = ssh_facts(self.inv, machine, self.topology.network)
        self.sshd.append(
            start_sshd(
                machine,
                facts,
                self.dir,
                self.host_dir / "control",
                disk if disk is not None else machine.world / "disk",
                exports,
            )
        )

    async def _node_parts(self, node: InventoryNode) -> None:
        """A node's etcd member, control plane and kubelet, in this process."""
        for member in self.topology.etcd_on(self.name):
            if member.name != node.name:
                continue
            member.data_dir.parent.mkdir(parents=True, exist_ok=True)
            out = (member.data_dir.parent / f"{member.name}.log").open("ab")
            # Same process group as this host: one SIGKILL takes both.
            self.etcd.append(
                subprocess.Popen(
                    member_command(member, self.topology.initial_cluster),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        if node.k3s_role == "server":
            await self._control_plane(node.name)
        await self._kubelet(node.name, is_server=node.k3s_role == "server")

    # -- what the control socket asks of the NFS server ------------------------------

    def _exports_file(self) -> Path:
        return self.host_dir / "ssh" / "etc" / "exports"

    def _exports_text(self) -> str:
        return self._exports_file().read_text()

    def _nfs_running(self) -> bool:
        return len(self.nfs) == 2 and all(p.poll() is None for p in self.nfs)

    def _exports(self) -> list[dict[str, str]]:
        if self.nfs_spec is None:
            return []
        # What ganesha was last told: the file as of the last start or exportfs -ra.
        text = self._served_exports or self._exports_text()
        file_exports(text, self.nfs_spec, self.topology.network)  # refuses what ganesha would
        return [
            {"path": path, "client": client, "options": ",".join(sorted(options))}
            for path, clients in parse_exports(text).items()
            for client, options in clients.items()
        ]

    def _reload_exports(self) -> list[dict[str, str]]:
        if self.nfs_spec is None:
            raise ValueError(f"{self.name} is not the NFS server")
        text = self._exports_text()
        reload_nfs(self.inv, self.nfs_spec, text, self.topology.network, self.nfs[1])
        self._served_exports = text
        log.info("exports re-read from %s", self._exports_file())
        return self._exports()

    def _cluster_dns(self, local_server: str | None) -> None:
        # This host's share of the cluster DNS, reading its own API server where it has one.
        endpoints = (
            [f"http://{self.topology.nodes[local_server]}:{API_PORT}"]
            if local_server
            else self.server_addresses()
        )
        client = Client(endpoints)
        self.clients.append(client)
        server = ClusterDns(client, dns_address(self.topology.pod_octet))
        self.tasks.append(asyncio.create_task(server.run()))
        # kube-proxy on the same watches: every ClusterIP here, NodePorts on the host's own
        # bare-metal nodes (a guest's come from its own process).
        bare = [str(self.topology.nodes[n.name]) for n in self._bare_nodes()]
        self.proxy = KubeProxy(server.services, server.endpoints, bare, cluster_ips=True)
        self.tasks.append(asyncio.create_task(self.proxy.run()))
        for node in self._bare_nodes():
            self._speaker(node.name, client)

    def _address_map(self) -> Callable[[str], str | None]:
        """Home-network addresses onto the twin's, as every twin address is mapped."""
        return twin_mapper(
            self.inv.network.subnet.network_address,
            self.inv.network.subnet.prefixlen,
            self.topology.network.network_address,
        )

    def _bare_nodes(self) -> list[InventoryNode]:
        return [n for n in self.inv.nodes if n.host == self.name and n.kind == "bare-metal"]

    def _node_ports(self, node_name: str) -> None:
        """A guest's kube-proxy: its node's NodePorts, from watches of its own."""
        client = Client(self.server_addresses())
        self.clients.append(client)
        services = Informer(client, path("v1", "services"))
        endpoints = Informer(client, path("v1", "endpoints"))
        address = str(self.topology.nodes[node_name])
        self.proxy = KubeProxy(services, endpoints, [address], cluster_ips=False)
        for work in (services.run(), endpoints.run(), self.proxy.run()):
            self.tasks.append(asyncio.create_task(work))
        self._speaker(node_name, client)

    def _speaker(self, node_name: str, client: Client) -> None:
        """MetalLB's speaker for the node, acting while its pod runs there."""
        kubelet, proxy = self.kubelets.get(node_name), self.proxy
        if kubelet is None or proxy is None:
            return
        speaker = Speaker(
            client,
            node_name,
            str(self.topology.nodes[node_name]),
            lambda: kubelet.running(metallb.is_speaker),
            proxy,
            self.host_dir / "speaker" / node_name,
            self._address_map(),
        )
        self.tasks.append(asyncio.create_task(speaker.run()))

    async def _control_plane(self, node_name: str) -> None:
        address = str(self.topology.nodes[node_name])
        member = next(m for m in self.topology.etcd if m.name == node_name)
        store = Store(member.client_url)
        api = ApiServer(
            store,
            Tolerations(self.timings.not_ready_toleration, self.timings.unreachable_toleration),
            self.inv.cluster.kubernetes_version,
            self.inv.cluster.k3s_version,
            f"{address}:{API_PORT}",
            self.topology.service_network,
        )
        # A watch whose client went away ends at once (as with Go's request contexts),
        # rather than holding its subscription or etcd watch until its next event.
        runner = web.AppRunner(api.app(), access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, address, API_PORT, reuse_address=True).start()
        self.runners.append(runner)
        local = Client([f"http://{address}:{API_PORT}"])
        self.clients.append(local)
        self.tasks.append(asyncio.create_task(bootstrap(api)))
        vip = VipHolder(runner, str(self.topology.vip), API_PORT)
        vt = Timings(self.timings.vip_lease, self.timings.vip_renew, self.timings.vip_retry)
        self.tasks.append(
            asyncio.create_task(
                LeaderElector(
                    local, "kube-system", "plndr-cp-lock", node_name, vt, vip.bind, vip.release
                ).run()
            )
        )
        manager_task: list[asyncio.Task[None]] = []
        kt = Timings(*self.timings.controller_manager_lease)

        async def lead() -> None:
            settings = Settings(
                self.timings.node_monitor_grace,
                self.timings.node_monitor_period,
                node_name,
                self.timings.force_detach,
                self._address_map(),
            )

            async def manage() -> None:
                # As k3s restarts its controller manager when it dies: say so, start again.
                while True:
                    try:
                        await Manager(local, settings).run()
                    except Exception:
                        log.exception("%s: the controller manager crashed", node_name)
                    await asyncio.sleep(1.0)

            manager_task.append(asyncio.create_task(manage()))

        async def follow() -> None:
            while manager_task:
                task = manager_task.pop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

        self.tasks.append(
            asyncio.create_task(
                LeaderElector(
                    local, "kube-system", "kube-controller-manager", node_name, kt, lead, follow
                ).run()
            )
        )

    async def _kubelet(self, node_name: str, is_server: bool) -> None:
        address = self.topology.nodes[node_name]
        node = next(n for n in self.inv.nodes if n.name == node_name)
        # A server's kubelet talks to its own API server; an agent balances over all of
        # them, as the k3s agent's client-side load balancer does.
        endpoints = [f"http://{address}:{API_PORT}"] if is_server else self.server_addresses()
        client = Client(endpoints)
        self.clients.append(client)
        kubelet = Kubelet(
            client,
            node,
            address,
            self.inv.cluster.k3s_version,
            node.gpu.resource_name if node.gpu else None,
            self.host_dir / "kubelet" / node_name,
            self.node_root(node),
            self.dir,
            self.timings.kubelet_heartbeat,
            self.topology.pod_octet,
            self._address_map(),
        )
        runner = web.AppRunner(
            kubelet_app(kubelet.log_file), access_log=None, handler_cancellation=True
        )
        await runner.setup()
        await web.TCPSite(runner, str(address), KUBELET_PORT, reuse_address=True).start()
        self.runners.append(runner)
        self.kubelets[node_name] = kubelet
        self.tasks.append(asyncio.create_task(kubelet.run()))

    async def stop(self) -> None:
        if self.guests is not None:
            # Guests shut down with their host, each as an ACPI shutdown would.
            await asyncio.to_thread(self.guests.stop_all)
        if self.control is not None:
            await self.control.stop()
        if self.docker is not None:
            await self.docker.shutdown()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            await client.close()
        for runner in self.runners:
            await runner.cleanup()
        for proc in self.etcd + self.nfs + self.sshd + self.bgpd:
            proc.terminate()
        for proc in self.etcd + self.nfs + self.sshd + self.bgpd:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m halab.twin.host")
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--network", default=str(TWIN_NETWORK))
    parser.add_argument("--node", help="run only this VM or LXC node of the host (a guest)")
    args = parser.parse_args()
    # Before anything is forked: every process of this machine is then in its group.
    cgroups.enter(cgroups.machine_group(Path(args.dir), args.host, *filter(None, [args.node])))
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.node or args.host} %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    host = Host(
        load_inventory(args.inventory),
        Path(args.dir),
        args.host,
        IPv4Network(args.network),
        only_node=args.node,
        inventory_file=args.inventory,
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
        try:
            await host.run()
        except asyncio.CancelledError:
            pass
        finally:
            await host.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
