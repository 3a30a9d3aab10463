"""ClusterIP allocation, as kube-apiserver's allocator does it: one address per Service,
unique across API servers, kept in etcd beside the objects.

The twin's service range is on loopback (127.<pod octet>.0.0/24, where k3s has
10.43.0.0/16) so that the twin's kube-proxy can listen on every ClusterIP. An address is
claimed by creating its key, which only one API server can do; a claim whose Service is
gone (a namespace deleted wholesale) is taken over.
"""

from __future__ import annotations

import zlib
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from halab.twin.api.status import ApiError, invalid
from halab.twin.api.store import Store

PREFIX = "/registry/halab-twin/serviceips/"
DNS_HOST = 10  # the cluster DNS's address (dns.py), as kube-dns keeps 10.43.0.10


def _key(ip: str) -> str:
    return PREFIX + ip


class ServiceIps:
    def __init__(self, store: Store, network: IPv4Network, service_key: Any) -> None:
        self.store = store
        self.network = network
        self.service_key = service_key  # (namespace, name) -> the Service's etcd key

    def reserved(self) -> set[str]:
        return {str(self.network.network_address + DNS_HOST)}

    async def allocate(self, obj: dict[str, Any]) -> None:
        """Give a new Service its ClusterIP (the one it asks for, if free and in range)."""
        spec = obj.setdefault("spec", {})
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            return
        meta = obj["metadata"]
        owner = {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}
        asked = spec.get("clusterIP")
        if asked:
            self._in_range(obj, asked)
            if not await self._claim(asked, owner):
                raise self._refused(obj, asked, "provided IP is already allocated")
            ip = asked
        else:
            hosts = [str(h) for h in self.network.hosts() if str(h) not in self.reserved()]
            start = zlib.crc32(f"{meta['namespace']}/{meta['name']}".encode()) % len(hosts)
            for i in range(len(hosts)):
                candidate = hosts[(start + i) % len(hosts)]
                if await self._claim(candidate, owner):
                    ip = candidate
                    break
            else:
                raise ApiError(
                    500, "Internal error occurred: failed to allocate a serviceIP: range is full"
                )
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    async def release(self, obj: dict[str, Any]) -> None:
        ip = (obj.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            return
        found = await self.store.get(_key(ip))
        if found is not None and found.obj.get("uid") == obj["metadata"].get("uid"):
            await self.store.delete(found.key, found.revision)

    def _in_range(self, obj: dict[str, Any], ip: str) -> None:
        try:
            inside = IPv4Address(ip) in self.network
        except ValueError:
            inside = False
        if not inside:
            raise self._refused(
                obj,
                ip,
                f"provided IP is not in the valid range. The range of valid IPs is {self.network}",
            )

    async def _claim(self, ip: str, owner: dict[str, str]) -> bool:
        if await self.store.create(_key(ip), owner) is not None:
            return True
        held = await self.store.get(_key(ip))
        if held is None:
            return await self.store.create(_key(ip), owner) is not None
        service = await self.store.get(
            self.service_key(held.obj.get("namespace"), held.obj.get("name"))
        )
        if service is not None and service.obj["metadata"].get("uid") == held.obj.get("uid"):
            return False
        return await self.store.update(held.key, owner, held.revision) is not None

    @staticmethod
    def _refused(obj: dict[str, Any], ip: str, why: str) -> ApiError:
        return invalid(
            "Service",
            "",
            obj["metadata"]["name"],
            [
                (
                    "spec.clusterIPs",
                    "FieldValueInvalid",
                    f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: {why}',
                )
            ],
        )


def keep_allocated(new: dict[str, Any], old: dict[str, Any]) -> None:
    """An update that leaves out the ClusterIP or node ports keeps them, as the API server
    does (its patchAllocatedValues)."""
    spec, before = new.setdefault("spec", {}), old.get("spec") or {}
    for field in ("clusterIP", "clusterIPs"):
        if not spec.get(field) and before.get(field):
            spec[field] = before[field]
    ports = {(p.get("name"), p.get("port")): p for p in before.get("ports") or []}
    for port in spec.get("ports") or []:
        was = ports.get((port.get("name"), port.get("port")))
        if was and "nodePort" in was and not port.get("nodePort"):
            port["nodePort"] = was["nodePort"]
