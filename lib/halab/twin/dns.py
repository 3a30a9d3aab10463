"""Cluster DNS, as CoreDNS's kubernetes plugin answers it, for the twin's pods.

Every host process serves it on the same address (127.<pod octet>.0.10:53, SO_REUSEPORT),
so it lives while any host does, as a CoreDNS with a replica per host would. Answers come
from the host's own watch of Services and Endpoints:
- `<svc>.<ns>.svc.cluster.local`: a headless Service's endpoint addresses; a ClusterIP
  Service's ClusterIP, where kube_proxy.py listens (one from before the twin's ClusterIPs
  moved to loopback answers with its endpoints: a pod is never handed an address off it);
- `<hostname>.<svc>.<ns>.svc.cluster.local`: a StatefulSet pod through its headless Service;
- anything else: NXDOMAIN. Nothing is ever forwarded off this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from ipaddress import IPv4Address
from typing import cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from halab.twin.client import Client, Informer, path

log = logging.getLogger("halab.twin.dns")
DOMAIN = "cluster.local"
DNS_PORT = 53
TTL = 5  # short: pods move when hosts fail


def dns_address(pod_octet: int) -> str:
    """Where the twin's pods send DNS queries (k3s: the kube-dns ClusterIP 10.43.0.10)."""
    return f"127.{pod_octet}.0.10"


def resolv_conf(namespace: str, nameserver: str) -> str:
    """A pod's /etc/resolv.conf, as the kubelet writes it for dnsPolicy ClusterFirst."""
    return (
        f"search {namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\n"
        f"nameserver {nameserver}\n"
        "options ndots:5\n"
    )


class Records:
    """Names to addresses, from the Services and Endpoints informers."""

    def __init__(self, services: Informer, endpoints: Informer) -> None:
        self.services = services
        self.endpoints = endpoints

    def lookup(self, name: str) -> list[str] | None:
        """Addresses for a name (maybe none), or None when no such name exists."""
        labels = name.lower().rstrip(".").split(".")
        suffix = ["svc", *DOMAIN.split(".")]
        if labels[-len(suffix) :] != suffix:
            return None
        head = labels[: -len(suffix)]
        if len(head) == 2:
            return self._service(head[1], head[0], None)
        if len(head) == 3:
            return self._service(head[2], head[1], head[0])
        return None

    def _service(self, ns: str, svc: str, hostname: str | None) -> list[str] | None:
        service = self.services.items.get((ns, svc))
        if service is None:
            return None
        cluster_ip = str(service.get("spec", {}).get("clusterIP") or "")
        headless = cluster_ip == "None"
        if not headless and hostname is None and cluster_ip and IPv4Address(cluster_ip).is_loopback:
            return [cluster_ip]  # the twin's kube-proxy forwards it to a ready endpoint
        found: list[str] = []
        endpoints = self.endpoints.items.get((ns, svc)) or {}
        for subset in endpoints.get("subsets") or []:
            # The endpoints controller puts not-ready pods here too when the Service has
            # publishNotReadyAddresses, as the SeaweedFS peers need to find each other.
            for address in subset.get("addresses") or []:
                if hostname is not None and address.get("hostname") != hostname:
                    continue
                ip = str(address.get("ip", ""))
                if ip and ip not in found and IPv4Address(ip).is_loopback:
                    found.append(ip)
        if hostname is not None and not found and headless:
            return None  # no such pod behind this Service
        return found


def answer(records: Records, wire: bytes) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # not a DNS message: drop it, as a server does
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    for question in query.question:
        name = question.name.to_text()
        found = records.lookup(name)
        if found is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            continue
        if question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and found:
            response.answer.append(
                dns.rrset.from_text_list(name, TTL, dns.rdataclass.IN, dns.rdatatype.A, found)
            )
    return response.to_wire()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, records: Records) -> None:
        self.records = records
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(self.records, data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class ClusterDns:
    """One host's share of the cluster DNS: two informers and a UDP socket."""

    def __init__(self, client: Client, address: str) -> None:
        self.address = address
        self.services = Informer(client, path("v1", "services"))
        self.endpoints = Informer(client, path("v1", "endpoints"))
        self.records = Records(self.services, self.endpoints)
        self.transport: asyncio.DatagramTransport | None = None

    async def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Every host binds the same address: the kernel spreads queries over the live ones.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.address, DNS_PORT))
        except OSError as exc:
            sock.close()
            log.warning(
                "cluster DNS cannot listen on %s:%d (%s): pods will not resolve names; "
                "port 53 needs root or net.ipv4.ip_unprivileged_port_start=53",
                self.address,
                DNS_PORT,
                exc,
            )
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self.records), sock=sock
        )
        self.transport = transport
        try:
            await asyncio.gather(self.services.run(), self.endpoints.run())
        finally:
            with contextlib.suppress(Exception):
                transport.close()
