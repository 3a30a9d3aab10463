"""The SeaweedFS connector: the master's, volume servers' and filers' HTTP APIs, reached
through the Kubernetes API server's service proxy.

A kubeconfig is all it needs, at home as in the twin: every SeaweedFS server of the
rendered tree has a Service of its own (`seaweedfs-<role>-<node>` in `seaweedfs`), and
`/api/v1/namespaces/seaweedfs/services/<svc>:<port>/proxy/<path>` reaches it. Facts on
the APIs: reference/seaweedfs.md §2, seaweedfs-real.md. Errors name the server and quote
what it said.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd

from halab.errors import StepError
from halab.inventory import Inventory
from halab.render.storage import FILER_PORT, MASTER_PORT, NS, VOLUME_PORT
from halab.seaweed_shell import (
    ClusterCheck,
    Repair,
    cluster_check,
    fix_replication,
    short_of_copies,
    volume_list,
)


class SeaweedError(StepError):
    """SeaweedFS refused or could not be reached; the message names the server."""

    def __init__(self, server: str, what: str, status: int = 0, said: str = "") -> None:
        self.server, self.status, self.said = server, status, said
        text = f"{server}: {what}"
        if status:
            text += f" (HTTP {status})"
        if said:
            text += f": {said}"
        super().__init__(text)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def error_text(self) -> str:
        """SeaweedFS's own words: the `error` field of its JSON, else the body."""
        try:
            doc = self.json()
        except ValueError:
            return self.body.decode("utf-8", "replace").strip()
        if isinstance(doc, dict) and doc.get("error"):
            return " ".join(str(doc["error"]).split())
        if isinstance(doc, dict) and doc.get("kind") == "Status":  # the API server's own
            return f"the API server's proxy: {doc.get('message', '')}"
        return self.body.decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class Growth:
    """What the master said to `/vol/grow` for one replication code."""

    code: str
    grown: bool
    copies: int
    reason: str  # SeaweedFS's refusal, one line; "" when grown


def service_name(role: str, node: str) -> str:
    return f"seaweedfs-{role}-{node}"


class SeaweedFS:
    """One cluster's SeaweedFS, named from the inventory (which nodes run what)."""

    def __init__(self, api: Any, inventory: Inventory, namespace: str = NS, timeout: float = 15):
        self.api = api
        self.inventory = inventory
        self.namespace = namespace
        self.timeout = timeout
        self.masters = [service_name("master", n.name) for n in inventory.seaweed_masters]
        self.filers = [service_name("filer", n.name) for n in inventory.nodes if n.seaweedfs.filer]

    # -- transport ------------------------------------------------------------------------

    def call(
        self,
        service: str,
        port: int,
        path: str,
        method: str = "GET",
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        accept: str | None = None,
    ) -> Answer:
        """One HTTP call to a SeaweedFS server through the service proxy."""
        resource = f"/api/v1/namespaces/{self.namespace}/services/{service}:{port}/proxy/{path}"
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        if accept:
            headers["Accept"] = accept
        where = f"{service}:{port} (through the API server's service proxy)"
        try:
            m, url, hdrs, _, _ = self.api.param_serialize(
                method,
                resource,
                query_params=list((params or {}).items()),
                header_params=headers,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(m, url, hdrs, body, _request_timeout=self.timeout)
            response.read()
        except Exception as exc:  # the API server itself did not answer
            from halab.explain import explain

            raise SeaweedError(where, "not reached", said=explain(exc)) from None
        return Answer(int(response.status), bytes(response.data or b""))

    def _ok(self, service: str, port: int, path: str, **kw: Any) -> Any:
        answer = self.call(service, port, path, **kw)
        if answer.status >= 300:
            raise SeaweedError(
                f"{service}:{port}", f"/{path} failed", answer.status, answer.error_text()
            )
        return answer.json()

    # -- master -----------------------------------------------------------------------------

    def cluster_status(self) -> dict[str, Any]:
        """`/cluster/status` of the first master that names a leader (else of the first
        that answers), with `answered_by` added. A master just back from a restart answers
        before it has heard from the leader, with no leader named: the others are asked."""
        errors, first = [], None
        for master in self.masters:
            try:
                doc = {**self._ok(master, MASTER_PORT, "cluster/status"), "answered_by": master}
            except SeaweedError as exc:
                errors.append(str(exc))
                continue
            if doc.get("Leader"):
                return doc
            first = first or doc
        if first is not None:
            return first
        raise SeaweedError("every master", "none answered /cluster/status", said="; ".join(errors))

    def leader(self) -> str:
        """The leading master's Service ("seaweedfs-master-k3s-cp1")."""
        doc = self.cluster_status()
        name = str(doc.get("Leader") or "")
        if not name:
            raise SeaweedError(doc["answered_by"], "no leader elected", said=json.dumps(doc))
        # Masters advertise themselves as <service>.<namespace>:<port>.<grpc port>.
        return name.split(".", 1)[0]

    def topology(self) -> pd.DataFrame:
        """Every volume server the master knows: data center, rack, slots and volumes."""
        doc = self._ok(self.leader(), MASTER_PORT, "dir/status")
        rows = []
        for dc in doc.get("Topology", {}).get("DataCenters") or []:
            for rack in dc.get("Racks") or []:
                for node in rack.get("DataNodes") or []:
                    rows.append(
                        {
                            "data_center": dc.get("Id"),
                            "rack": rack.get("Id"),
                            "server": str(node.get("Url", "")),
                            "node": self.node_of(str(node.get("Url", ""))),
                            "volumes": int(node.get("Volumes", 0)),
                            "slots": int(node.get("Max", 0)),
                        }
                    )
        return pd.DataFrame(
            rows, columns=["data_center", "rack", "server", "node", "volumes", "slots"]
        )

    def volume_copies(self) -> pd.DataFrame:
        """One row per copy of every volume, from `/vol/status`, with the node and host."""
        doc = self._ok(self.leader(), MASTER_PORT, "vol/status")
        rows = []
        for dc, racks in (doc.get("Volumes", {}).get("DataCenters") or {}).items():
            for rack, servers in (racks or {}).items():
                for server, volumes in (servers or {}).items():
                    node = self.node_of(server)
                    for vol in volumes or []:
                        rows.append(
                            {
                                "volume": int(vol["Id"]),
                                "collection": vol.get("Collection", ""),
                                "data_center": dc,
                                "rack": rack,
                                "node": node,
                                "host": self._host_of(node),
                                "size": int(vol.get("Size", 0)),
                                "files": int(vol.get("FileCount", 0)),
                                "replication": _placement_code(vol.get("ReplicaPlacement")),
                            }
                        )
        columns = ["volume", "collection", "data_center", "rack", "node", "host", "size"]
        return pd.DataFrame(rows, columns=[*columns, "files", "replication"])

    def lookup(self, volume: int) -> list[str]:
        """The nodes the master says hold live copies of a volume (`/dir/lookup`)."""
        doc = self._ok(self.leader(), MASTER_PORT, "dir/lookup", params={"volumeId": str(volume)})
        return [self.node_of(str(loc.get("url", ""))) for loc in doc.get("locations") or []]

    def grow(self, code: str, collection: str) -> Growth:
        """Ask the leader to grow one volume of `code` in `collection`."""
        answer = self.call(
            self.leader(),
            MASTER_PORT,
            "vol/grow",
            params={"replication": code, "count": "1", "collection": collection},
        )
        if answer.status == 200:
            return Growth(code, True, int(answer.json().get("count", 0)), "")
        return Growth(code, False, 0, answer.error_text())

    def assign(self, replication: str = "", collection: str = "") -> tuple[str, str]:
        """A new file id from the leader, and the node of the volume server to write it to."""
        params = {k: v for k, v in (("replication", replication), ("collection", collection)) if v}
        doc = self._ok(self.leader(), MASTER_PORT, "dir/assign", params=params)
        return str(doc["fid"]), self.node_of(str(doc["url"]))

    def write_blob(self, node: str, fid: str, data: bytes) -> Answer:
        """PUT a file's bytes to a volume server as it is (the answer says if it took)."""
        return self.call(service_name("volume", node), VOLUME_PORT, fid, method="PUT", body=data)

    def read_blob(self, node: str, fid: str) -> Answer:
        return self.call(service_name("volume", node), VOLUME_PORT, fid)

    def delete_collection(self, collection: str) -> None:
        self._ok(self.leader(), MASTER_PORT, "col/delete", params={"collection": collection})

    # -- filer --------------------------------------------------------------------------------

    def put(self, path: str, data: bytes, filer: str | None = None) -> None:
        filer = filer or self.filers[0]
        self._ok(filer, FILER_PORT, path.lstrip("/"), method="PUT", body=data)

    def get(self, path: str, filer: str | None = None) -> bytes:
        filer = filer or self.filers[0]
        answer = self.call(filer, FILER_PORT, path.lstrip("/"))
        if answer.status != 200:
            raise SeaweedError(
                f"{filer}:{FILER_PORT}",
                f"reading {path} failed",
                answer.status,
                answer.error_text(),
            )
        return answer.body

    def ls(self, path: str, filer: str | None = None) -> list[str]:
        """The names in a filer directory (empty when it does not exist)."""
        filer = filer or self.filers[0]
        where = path.strip("/") + "/"
        answer = self.call(filer, FILER_PORT, where, accept="application/json")
        if answer.status == 404:
            return []
        if answer.status != 200:
            raise SeaweedError(
                f"{filer}:{FILER_PORT}",
                f"listing {path} failed",
                answer.status,
                answer.error_text(),
            )
        entries = answer.json().get("Entries") or []
        return sorted(str(e.get("FullPath", "")).rsplit("/", 1)[-1] for e in entries)

    def chunks(self, path: str, filer: str | None = None) -> list[str]:
        """The file ids ("3,01637037d6") of a file's chunks, from the filer's metadata."""
        filer = filer or self.filers[0]
        doc = self._ok(filer, FILER_PORT, path.lstrip("/"), params={"metadata": "true"})
        return [str(c.get("file_id") or c.get("fileId")) for c in doc.get("chunks") or []]

    def delete(self, path: str, filer: str | None = None) -> None:
        filer = filer or self.filers[0]
        answer = self.call(
            filer, FILER_PORT, path.lstrip("/"), method="DELETE", params={"recursive": "true"}
        )
        if answer.status not in (200, 202, 204, 404):
            raise SeaweedError(
                f"{filer}:{FILER_PORT}",
                f"deleting {path} failed",
                answer.status,
                answer.error_text(),
            )

    # -- weed shell, for what only it shows ---------------------------------------------------

    def shell(self, commands: list[str], timeout: float = 180) -> str:
        """Run `weed shell` commands in a short-lived pod of the SeaweedFS image (the
        shell speaks gRPC to the masters, which only the cluster's network reaches) and
        return what it printed. Its exit code says nothing: parse the text."""
        from kubernetes import client

        from halab.kube import wait_for
        from halab.render.storage import SEAWEEDFS_IMAGE

        core = client.CoreV1Api(self.api)
        masters = ",".join(f"{m}.{self.namespace}:{MASTER_PORT}" for m in self.masters)
        script = "printf '%s\\n' " + " ".join(shlex.quote(c) for c in commands)
        name = f"halab-weed-shell-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_pod(
            self.namespace,
            {
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "halab"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "shell",
                            "image": SEAWEEDFS_IMAGE,
                            "command": ["sh", "-c", f"{script} | weed shell -master={masters}"],
                        }
                    ],
                },
            },
        )
        try:
            try:
                wait_for(
                    lambda: (
                        core.read_namespaced_pod(name, self.namespace).status.phase
                        in ("Succeeded", "Failed")
                    ),
                    timeout,
                    "weed shell finished",
                )
            except Exception as exc:  # say where the pod is, not only that it did not end
                pod = core.read_namespaced_pod(name, self.namespace)
                where = f"pod {name} on {pod.spec.node_name or 'no node'}, {pod.status.phase}"
                raise SeaweedError(
                    "weed shell", f"did not finish ({where})", said=str(exc)
                ) from None
            return str(core.read_namespaced_pod_log(name, self.namespace))
        finally:
            core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def health(self) -> tuple[ClusterCheck, bool, list[Repair]]:
        """`cluster.check`, and what a repair would copy: `volume.list` says whether any
        volume is short of copies; only then is `volume.fix.replication` asked for its
        plan (simulated). It first waits ~15 s for fresh heartbeats, to say nothing more
        than the list did when every volume has its copies."""
        text = self.shell(["cluster.check", "volume.list"])
        if not short_of_copies(volume_list(text)):
            return cluster_check(text), True, []
        fixed = self.shell(["volume.fix.replication"])
        simulated, repairs = fix_replication(fixed)
        if not simulated:
            raise SeaweedError(
                "weed shell", "volume.fix.replication did not say it simulated", said=fixed[-300:]
            )
        return cluster_check(text), simulated, repairs

    # -- names ----------------------------------------------------------------------------------

    def node_of(self, server: str) -> str:
        """ "seaweedfs-volume-k3s-w1.seaweedfs:8080" -> "k3s-w1" (the inventory's node)."""
        service = server.split(".", 1)[0].split(":", 1)[0]
        for node in self.inventory.nodes:
            if service == service_name("volume", node.name):
                return node.name
        return service

    def _host_of(self, node: str) -> str:
        try:
            return self.inventory.node(node).host
        except KeyError:
            return "?"


def _placement_code(placement: Any) -> str:
    """/vol/status's ReplicaPlacement ({"rack":1}, {} for 000) as the three-digit code."""
    if isinstance(placement, dict):
        return (
            f"{int(placement.get('dc', 0) or placement.get('diff_data_center_count', 0))}"
            f"{int(placement.get('rack', 0) or placement.get('diff_rack_count', 0))}"
            f"{int(placement.get('node', 0) or placement.get('same_rack_count', 0))}"
        )
    return str(placement or "000")
