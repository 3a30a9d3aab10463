"""Services as kube-proxy makes them, for the twin: a forwarding listener per Service port.

- ClusterIP: every host process listens on each Service's ClusterIP and port (SO_REUSEPORT,
  as the cluster DNS shares its address), so a Service answers while any host lives; the
  twin's ClusterIPs are on loopback (127.<pod octet>.0.0/24, see topology.py) for that.
- NodePort: each node's process listens on the node's address at the nodePort.
- Extra addresses (a LoadBalancer address a MetalLB speaker announces here) are added
  with `serve_address`.
A listener exists only while its Service has a ready endpoint: with none, connections are
refused, as kube-proxy's REJECT rule does. Each connection goes to a ready endpoint picked
at random (kube-proxy's iptables mode), or with sessionAffinity ClientIP to the same
endpoint for the same client address, and is piped both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from halab.twin.client import Informer

log = logging.getLogger("halab.twin.kube_proxy")
PIPE_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Rule:
    """One listening address and where its connections go."""

    namespace: str
    service: str
    port: dict[str, Any]  # the Service's port entry

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.service


def target_port(endpoints: dict[str, Any], port: dict[str, Any], subset: dict[str, Any]) -> int:
    """The endpoint port for a Service port: matched by name, as the Endpoints carry it."""
    name = port.get("name") or ""
    for candidate in subset.get("ports") or []:
        if (candidate.get("name") or "") == name:
            return int(candidate["port"])
    target = port.get("targetPort", port["port"])
    return int(target) if str(target).isdigit() else int(port["port"])


def ready_backends(endpoints: dict[str, Any] | None, port: dict[str, Any]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for subset in (endpoints or {}).get("subsets") or []:
        for address in subset.get("addresses") or []:
            ip = str(address.get("ip", ""))
            if ip and IPv4Address(ip).is_loopback:  # never forward off this machine
                out.append((ip, target_port(endpoints or {}, port, subset)))
    return out


def wanted_listeners(
    service: dict[str, Any], node_addresses: list[str], cluster_ips: bool, extra: list[str]
) -> dict[tuple[str, int], Rule]:
    """Every (address, port) this process should listen on for one Service."""
    meta, spec = service.get("metadata", {}), service.get("spec", {})
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    out: dict[tuple[str, int], Rule] = {}
    cluster_ip = spec.get("clusterIP") or ""
    for port in spec.get("ports") or []:
        if port.get("protocol", "TCP") != "TCP":
            continue
        rule = Rule(ns, name, port)
        if cluster_ips and cluster_ip not in ("", "None") and IPv4Address(cluster_ip).is_loopback:
            out[(cluster_ip, int(port["port"]))] = rule
        if spec.get("type") in ("NodePort", "LoadBalancer") and port.get("nodePort"):
            for address in node_addresses:
                out[(address, int(port["nodePort"]))] = rule
        for address in extra:
            out[(address, int(port["port"]))] = rule
    return out


class KubeProxy:
    """The forwarding listeners of one process, following Services and Endpoints."""

    def __init__(
        self,
        services: Informer,
        endpoints: Informer,
        node_addresses: list[str],
        cluster_ips: bool,
    ) -> None:
        self.services = services
        self.endpoints = endpoints
        self.node_addresses = node_addresses
        self.cluster_ips = cluster_ips
        self.extra: dict[tuple[str, str], list[str]] = {}  # Service -> addresses announced here
        self.listeners: dict[tuple[str, int], tuple[Rule, asyncio.Server]] = {}
        self._changed = asyncio.Event()
        services.handlers.append(self._poke)
        endpoints.handlers.append(self._poke)

    def _poke(self, _kind: str, _obj: dict[str, Any]) -> None:
        self._changed.set()

    def serve_address(self, namespace: str, service: str, addresses: list[str]) -> None:
        """Listen on these addresses too for the Service's ports (empty: stop)."""
        if addresses:
            self.extra[(namespace, service)] = addresses
        else:
            self.extra.pop((namespace, service), None)
        self._changed.set()

    def wanted(self) -> dict[tuple[str, int], Rule]:
        out: dict[tuple[str, int], Rule] = {}
        for key, service in self.services.items.items():
            rules = wanted_listeners(
                service, self.node_addresses, self.cluster_ips, self.extra.get(key, [])
            )
            for where, rule in rules.items():
                if ready_backends(self.endpoints.items.get(key), rule.port):
                    out[where] = rule
        return out

    async def run(self) -> None:
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                await self.sync()
                await asyncio.sleep(0.05)  # gather a burst of changes into one pass
        finally:
            for _rule, server in self.listeners.values():
                server.close()
            self.listeners.clear()

    async def sync(self) -> None:
        wanted = self.wanted()
        for where in list(self.listeners):
            rule, server = self.listeners[where]
            if wanted.get(where) != rule:
                server.close()
                del self.listeners[where]
        for where, rule in wanted.items():
            if where in self.listeners:
                continue
            try:
                server = await asyncio.start_server(
                    functools.partial(self._forward, rule), sock=_listening_socket(*where)
                )
            except OSError as exc:
                log.warning("cannot listen on %s:%d for %s/%s: %s", *where, *rule.key, exc)
                continue
            self.listeners[where] = (rule, server)

    def _pick(
        self, rule: Rule, backends: list[tuple[str, int]], writer: asyncio.StreamWriter
    ) -> tuple[str, int]:
        """A ready endpoint at random, or with sessionAffinity ClientIP always the same one
        for a client address (while the endpoints stay the same)."""
        service = self.services.items.get(rule.key) or {}
        if (service.get("spec") or {}).get("sessionAffinity") == "ClientIP":
            peer = str((writer.get_extra_info("peername") or ("",))[0])
            ordered = sorted(backends)
            return ordered[zlib.crc32(peer.encode()) % len(ordered)]
        return random.choice(backends)

    async def _forward(
        self, rule: Rule, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        backends = ready_backends(self.endpoints.items.get(rule.key), rule.port)
        try:
            if not backends:
                return
            ip, port = self._pick(rule, backends, writer)
            try:
                up_reader, up_writer = await asyncio.open_connection(ip, port)
            except OSError as exc:
                log.debug("%s/%s: endpoint %s:%d refused: %s", *rule.key, ip, port, exc)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _listening_socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Every host listens on the same ClusterIP: the kernel spreads connections over the
    # live ones, and one host's failure leaves the others serving.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((address, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; pass the end on as a half-close, or a reset as a close."""
    try:
        while data := await reader.read(PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
