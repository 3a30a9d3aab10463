"""MetalLB's speaker for one twin node, run by the node's process while the speaker pod
runs on it (images/metallb.py says what the twin does in its place).

While its pod runs, the speaker watches MetalLB's configuration, the speaker pods and its
own node (informers, as the real speaker's controller-runtime caches; kube-proxy's give it
the Services and Endpoints), and each pass decides from those caches, as the real speaker
does, which addresses this node announces:
- BGP (a pool some BGPAdvertisement names, or all pools when it names none): every
  eligible node announces every address of a Service with a ready endpoint (only nodes
  with a local endpoint under externalTrafficPolicy Local), through ExaBGP to each BGPPeer;
- L2 (an L2Advertisement's pool): one node, the first of the nodes whose speaker is ready
  when sorted by sha256(node + "#" + address), as MetalLB's election.
An announced address is served on this node by kube-proxy's forwarding (kube_proxy.py);
with BGP every announcing node serves it (SO_REUSEPORT, the kernel's choice standing in
for the router's ECMP). Announcing records the `nodeAssigned` event and a
ServiceBGPStatus/ServiceL2Status; withdrawing deletes that status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halab.twin.client import Client, ClientError, Informer, path
from halab.twin.controllers.metallb import pool_addresses
from halab.twin.events import event_body
from halab.twin.exabgp import BgpSpeaker, Peer
from halab.twin.images import metallb
from halab.twin.kube_proxy import KubeProxy

log = logging.getLogger("halab.twin.speaker")
PASS_S = 0.5
DEFAULT_HOLD_S = 90  # MetalLB's default hold time


@dataclass
class Config:
    pools: dict[str, list[str]] = field(default_factory=dict)  # name -> twin addresses
    bgp_pools: set[str] = field(default_factory=set)
    l2_pools: set[str] = field(default_factory=set)
    peers: dict[str, Peer] = field(default_factory=dict)  # BGPPeer name -> peer


def parse_hold(text: Any) -> int:
    """A BGPPeer holdTime (a Go duration: "90s", "1m30s") in seconds; MetalLB's default
    when unset."""
    if not text:
        return DEFAULT_HOLD_S
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", str(text)))


CONFIG_KINDS = ("IPAddressPool", "BGPPeer", "BGPAdvertisement", "L2Advertisement")


class Watches:
    """The speaker's informers in its namespace, running while its pod runs there."""

    def __init__(self, client: Client, node: str, namespace: str) -> None:
        self.namespace = namespace
        self.config = {
            kind: Informer(client, path(*metallb.api(kind), namespace)) for kind in CONFIG_KINDS
        }
        self.speakers = Informer(
            client,
            path("v1", "pods", namespace),
            {"labelSelector": "app.kubernetes.io/component=speaker"},
        )
        self.node = Informer(
            client, path("v1", "nodes"), {"fieldSelector": f"metadata.name={node}"}
        )
        informers = [*self.config.values(), self.speakers, self.node]
        self.synced = [i.synced for i in informers]
        self.tasks = [asyncio.create_task(i.run()) for i in informers]

    def ready(self) -> bool:
        return all(event.is_set() for event in self.synced)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def l2_winner(candidates: list[str], ip: str) -> str | None:
    ordered = sorted(candidates, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())
    return ordered[0] if ordered else None


def _advertised(ads: list[dict[str, Any]], pools: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for ad in ads:
        named = (ad.get("spec") or {}).get("ipAddressPools") or []
        selectors = (ad.get("spec") or {}).get("ipAddressPoolSelectors") or []
        out |= set(named) if (named or selectors) else set(pools)
    return out


class Speaker:
    """The speaker of one node: decides, announces, withdraws."""

    def __init__(
        self,
        client: Client,
        node: str,
        address: str,
        running: Callable[[], list[str]],
        proxy: KubeProxy,
        directory: Path,
        to_twin: Callable[[str], str | None],
    ) -> None:
        self.client = client
        self.node = node
        self.address = address
        self.running = running  # namespaces of this node's running speaker pods
        self.proxy = proxy
        self.bgp = BgpSpeaker(address, directory)
        self.to_twin = to_twin
        self.announced: dict[tuple[str, str], tuple[str, list[str]]] = {}  # svc -> (proto, ips)
        self.status_names: dict[tuple[str, str], str] = {}
        self.swept = False  # an earlier life's status objects removed
        self.watches: Watches | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._pass()
                except (ClientError, OSError) as exc:
                    log.debug("%s: speaker pass: %s", self.node, exc)
                except Exception:  # a bug: say so, and keep speaking
                    log.exception("%s: speaker pass failed", self.node)
                await asyncio.sleep(PASS_S)
        finally:
            self.bgp.stop()
            for key in list(self.announced):
                self.proxy.serve_address(*key, [])
            if self.watches is not None:
                await self.watches.stop()

    async def _pass(self) -> None:
        namespaces = self.running()
        namespace = namespaces[0] if namespaces else None
        if self.watches is not None and self.watches.namespace != namespace:
            await self.watches.stop()
            self.watches = None
        if namespace is None:
            await self._apply({}, Config(), "")
            return
        if self.watches is None:
            self.watches = Watches(self.client, self.node, namespace)
        if not self.watches.ready():
            return  # decide nothing from a cache not yet filled: it would withdraw all
        if not self.swept:
            await self._sweep(namespace)
        config = self._config(self.watches)
        wanted: dict[tuple[str, str], tuple[str, list[str]]] = {}
        speakers = self._ready_speakers(self.watches)
        me = self.watches.node.items.get(("", self.node)) or {}
        excluded = metallb.EXCLUDE_LABEL in (me.get("metadata", {}).get("labels") or {})
        for key, svc in list(self.proxy.services.items.items()):
            spec = svc.get("spec") or {}
            if spec.get("type") != "LoadBalancer":
                continue
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            ips = [str(i["ip"]) for i in ingress if i.get("ip")]
            if not ips:
                continue
            pool = next((p for p, a in config.pools.items() if ips[0] in a), None)
            if pool is None:
                continue
            endpoints = self.proxy.endpoints.items.get(key)
            local = spec.get("externalTrafficPolicy") == "Local"
            ready = [
                a for s in (endpoints or {}).get("subsets") or [] for a in s.get("addresses") or []
            ]
            here = [a for a in ready if a.get("nodeName") == self.node]
            if not ready or (local and not here):
                continue
            if pool in config.bgp_pools and config.peers and not excluded:
                wanted[key] = ("bgp", ips)
            elif pool in config.l2_pools:
                candidates = [
                    n for n in speakers if not local or any(a.get("nodeName") == n for a in ready)
                ]
                if l2_winner(candidates, ips[0]) == self.node:
                    wanted[key] = ("layer2", ips)
        await self._apply(wanted, config, namespace)

    async def _sweep(self, namespace: str) -> None:
        """Delete this node's status objects from before this speaker started (its host
        went down with them announced): it records afresh what it announces now."""
        for kind in ("ServiceBGPStatus", "ServiceL2Status"):
            version, plural = metallb.api(kind)
            listed = await self.client.get(
                path(version, plural, namespace),
                {"labelSelector": f"{metallb.LABEL_NODE}={self.node}"},
            )
            for item in listed.get("items", []):
                with contextlib.suppress(ClientError):
                    await self.client.delete(
                        path(version, plural, namespace, item["metadata"]["name"])
                    )
        self.swept = True

    def _config(self, watches: Watches) -> Config:
        def items(kind: str) -> list[dict[str, Any]]:
            return watches.config[kind].values()

        config = Config()
        for pool in items("IPAddressPool"):
            config.pools[pool["metadata"]["name"]] = pool_addresses(pool, self.to_twin)
        config.bgp_pools = _advertised(items("BGPAdvertisement"), config.pools)
        config.l2_pools = _advertised(items("L2Advertisement"), config.pools)
        for peer in items("BGPPeer"):
            spec = peer.get("spec") or {}
            address = self.to_twin(str(spec.get("peerAddress", "")))
            if not address:
                continue  # a router the twin cannot reach: no session, as with a wrong address
            config.peers[peer["metadata"]["name"]] = Peer(
                address,
                int(spec.get("myASN", 0)),
                int(spec.get("peerASN", 0)),
                parse_hold(spec.get("holdTime")),
            )
        return config

    @staticmethod
    def _ready_speakers(watches: Watches) -> list[str]:
        out = []
        for pod in watches.speakers.values():
            conditions = (pod.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            if ready and pod["spec"].get("nodeName"):
                out.append(str(pod["spec"]["nodeName"]))
        return out

    async def _apply(
        self,
        wanted: dict[tuple[str, str], tuple[str, list[str]]],
        config: Config,
        namespace: str,
    ) -> None:
        routes = sorted({ip for proto, ips in wanted.values() if proto == "bgp" for ip in ips})
        # Sessions even with no route. In a thread: stopping ExaBGP waits for it to exit,
        # which must not hold up the process's loop (its kubelet, API server, controllers).
        await asyncio.to_thread(self.bgp.apply, list(config.peers.values()), routes)
        for key in set(self.announced) - set(wanted):
            self.proxy.serve_address(*key, [])
            log.info("%s: withdrawing %s/%s", self.node, *key)
            await self._delete_status(key)
            del self.announced[key]
        for key, (proto, ips) in wanted.items():
            if self.announced.get(key) == (proto, ips):
                continue
            self.proxy.serve_address(*key, ips)
            self.announced[key] = (proto, ips)
            log.info("%s: announcing %s/%s %s over %s", self.node, *key, ips, proto)
            svc = self.proxy.services.items.get(key)
            if svc is not None:
                await self._event(svc, proto)
                await self._status(key, proto, namespace, sorted(config.peers))

    async def _event(self, svc: dict[str, Any], proto: str) -> None:
        message = f'announcing from node "{self.node}" with protocol "{proto}"'
        body = event_body(svc, "nodeAssigned", message, "Normal", "metallb-speaker")
        with contextlib.suppress(ClientError):
            await self.client.create(path("v1", "events", svc["metadata"]["namespace"]), body)

    async def _status(
        self, key: tuple[str, str], proto: str, namespace: str, peers: list[str]
    ) -> None:
        kind = "ServiceBGPStatus" if proto == "bgp" else "ServiceL2Status"
        version, plural = metallb.api(kind)
        status: dict[str, Any] = {
            "node": self.node,
            "serviceName": key[1],
            "serviceNamespace": key[0],
        }
        if proto == "bgp":
            status["peers"] = peers
        body = {
            "apiVersion": version,
            "kind": kind,
            "metadata": {
                "generateName": "bgp-" if proto == "bgp" else "l2-",
                "namespace": namespace,
                "labels": {
                    metallb.LABEL_NODE: self.node,
                    metallb.LABEL_SERVICE: key[1],
                    metallb.LABEL_SERVICE_NS: key[0],
                },
            },
        }
        await self._delete_status(key)
        with contextlib.suppress(ClientError):
            # As MetalLB: create, then write the status subresource.
            made = await self.client.create(path(version, plural, namespace), body)
            name = made["metadata"]["name"]
            self.status_names[key] = f"{version}|{plural}|{namespace}|{name}"
            made["status"] = status
            await self.client.update(path(version, plural, namespace, name, "status"), made)

    async def _delete_status(self, key: tuple[str, str]) -> None:
        where = self.status_names.pop(key, None)
        if where is None:
            return
        version, plural, namespace, name = where.split("|")
        with contextlib.suppress(ClientError):
            await self.client.delete(path(version, plural, namespace, name))
