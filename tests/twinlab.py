"""A twin for tests: started from the shipped inventory with tuned failure timings (grace
and tolerations of a few seconds), reached only through its kubeconfig, always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from halab.inventory.yaml_source import read_yaml
from halab.kube import ClusterError, wait_for
from halab.twin import supervisor
from halab.twin.controllers.leader import parse_micro
from halab.twin.timings import REHEARSAL_TIMING
from halab.twin.timings import tuned_inventory as rehearsal_inventory
from halab.twin.topology import TWIN_NETWORK

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
TUNED = REHEARSAL_TIMING
T = TypeVar("T")


OTHER_SHAPE = ROOT / "tests" / "data" / "other-shape.yaml"
OTHER_NETWORK = IPv4Network("127.78.0.0/24")  # beside the session's twin on 127.77.0.0/24


def tuned_inventory(path: Path, source: Path = ROOT / "params" / "cluster.yaml") -> Path:
    return rehearsal_inventory(source, path)


@dataclass
class TwinLab:
    dir: Path
    inventory: Path

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}"
            )
        return done

    def api(self) -> Any:
        from kubernetes import client, config

        conf = client.Configuration()
        config.load_kube_config(str(self.kubeconfig), client_configuration=conf)
        return client.ApiClient(conf)

    def namespace(self) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"

        def created() -> bool:
            done = self.kubectl("create", "namespace", name, check=False)
            if done.returncode == 0:
                return True
            # With the tests' 2 s VIP lease, a host just recovered can make the VIP move:
            # refused for a moment, as kubectl at home would be. Anything else is a failure.
            if "was refused" not in done.stderr:
                raise AssertionError(f"kubectl create namespace {name} failed:\n{done.stderr}")
            return False

        eventually(created, 30, f"namespace {name} created through the VIP", every=1.0)
        return name

    def fail(self, host: str) -> None:
        supervisor.fail(self.dir, host)

    def recover(self, host: str) -> None:
        supervisor.recover(self.dir, host)

    def etcd_endpoints(self) -> list[str]:
        endpoints: list[str] = read_yaml(self.dir / "target.yaml").data["etcd"]["endpoints"]
        return endpoints

    def freeze(self, host: str, seconds: float) -> None:
        """Stop every process of the host for a while (SIGSTOP), then let it go on: a host
        that hangs rather than dies. Its sockets stay open meanwhile."""
        pid = json.loads((self.dir / "state.json").read_text())["hosts"][host]["pid"]
        os.killpg(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.killpg(pid, signal.SIGCONT)


def start(
    directory: Path,
    source: Path = ROOT / "params" / "cluster.yaml",
    network: IPv4Network = TWIN_NETWORK,
) -> TwinLab:
    directory.mkdir(parents=True, exist_ok=True)
    inventory = tuned_inventory(directory / source.name, source)
    supervisor.up(inventory, directory / "twin", timeout=120, network=network)
    return TwinLab(directory / "twin", inventory)


def through_vip(call: Callable[..., T], *args: Any, timeout: float = 30) -> T | None:
    """An API call made again while the VIP refuses connections (it moves for a moment
    after a host comes back, with the tests' 2 s lease); a 409 means an earlier try of a
    create landed."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(*args)
        except urllib3.exceptions.MaxRetryError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise


def eventually(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll until check() returns something truthy; fail the test naming what never happened."""
    try:
        return wait_for(check, timeout, what, every)
    except ClusterError as exc:
        raise AssertionError(str(exc)) from None


def diagnostics(lab: TwinLab, lines: int = 25) -> str:
    """`twin status` and the last lines of each host's log (warnings and lifecycle)."""
    out = []
    try:
        doc = supervisor.status(lab.dir)
        out.append(f"etcd {doc.get('etcd')}  VIP {doc.get('vip_holder')}")
        out.append(f"nodes Ready: {doc.get('nodes')}")
        for host, info in doc.get("hosts", {}).items():
            out.append(f"host {host}: {info.get('state')} pid {info.get('pid')}")
    except Exception as exc:  # the report must not fail on a broken twin
        out.append(f"twin status failed: {exc}")
    # Each API server's own view of the node heartbeats: tells a kubelet that stopped
    # renewing from an API server that serves an old view.
    out.append(f"node leases as each API server sees them, at {time.time():.1f}:")
    servers: list[str] = []
    try:
        servers = sorted(set(_api_servers(lab)))
    except Exception as exc:  # no target file: the twin never came up
        out.append(f"  no API servers known: {exc}")
    for address in servers:
        url = f"http://{address}:6443/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                items = json.load(resp)["items"]
            seen = {
                i["metadata"]["name"]: round(parse_micro(i["spec"].get("renewTime")), 1)
                for i in items
            }
            out.append(f"  {address}: {seen}")
        except Exception as exc:  # a host may be down
            out.append(f"  {address}: {exc}")
    for log in sorted((lab.dir / "hosts").glob("*/host.log")):
        text = log.read_text(errors="replace").splitlines()
        keep = [t for t in text if " INFO " in t or " WARNING " in t or " ERROR " in t]
        out.append(f"--- {log.parent.name}: last {lines} of {len(keep)} log lines")
        out.extend(keep[-lines:])
    return "\n".join(out)


def _api_servers(lab: TwinLab) -> list[str]:
    """Each control-plane node's address: its etcd member's, where its API server listens."""
    return [urllib.parse.urlsplit(e).hostname or "" for e in lab.etcd_endpoints()]


def namespace_gone(api: Any, name: str, timeout: float = 120) -> None:
    """Until a deleted namespace has finished terminating: the next module may deliver
    into a namespace of the same name."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    def gone() -> bool:
        try:
            client.CoreV1Api(api).read_namespace(name)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    eventually(gone, timeout, f"namespace {name} gone")


def http_body(address: str, port: int) -> str | None:
    """The body of GET / at address:port from this machine, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/", timeout=3) as resp:
            return str(resp.read().decode())
    except OSError:
        return None
