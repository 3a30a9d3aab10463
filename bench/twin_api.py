"""The twin at scale: API latency, pod startup and rescheduling after a host fails.

Starts a twin of 100 nodes on 10 hosts (a synthetic inventory), creates 3,000 pods through
Deployments, and prints p50/p99 latencies of get, list and create, pod startup latency
(created -> Ready, seen through a watch; for the burst, and for 100 more pods created at
20 pods/s as the SLO's load tests pace them), the time until every Deployment pod is Ready
again after a host fails, and the twin's memory, beside Kubernetes' scalability SLOs. Smaller runs:
--hosts 4 --nodes-per-host 5 --pods 200. Run: .venv/bin/python bench/twin_api.py
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from halab import netguard
from halab.inventory.synthetic import synthetic_data
from halab.twin import supervisor

netguard.install()

SLO = {"get": 1.0, "create": 1.0, "list": 30.0, "startup": 5.0}  # seconds, p99


def inventory_data(hosts: int, per_host: int) -> dict[str, Any]:
    """Synthetic, moved into one /24 so the twin's last-octet map stays one rule."""
    data = synthetic_data(hosts=hosts, nodes_per_host=per_host)
    for i, host in enumerate(data["hosts"]):
        host["address"] = f"192.168.1.{200 + i}"
    for i, node in enumerate(data["nodes"]):
        node["address"] = f"192.168.1.{i + 1}"
    data["network"] = {
        "subnet": "192.168.1.0/24",
        "gateway": "192.168.1.254",
        "vip": "192.168.1.250",
        "metallb": {
            "mode": "bgp",
            "pool": ["192.168.1.240-192.168.1.249"],
            "bgp": {"my_asn": 64513, "peer_asn": 64512, "peer_address": "192.168.1.254"},
        },
    }
    data["storage"]["nfs"] = None
    data["storage"].pop("nfs")
    data["apps"] = [
        a for a in data["apps"] if not any(v.get("kind") == "nfs" for v in a.get("volumes", []))
    ]
    data["cluster"]["timing"] = {
        "node_monitor_grace_period_s": 10,
        "default_not_ready_toleration_s": 5,
        "default_unreachable_toleration_s": 5,
        "kube_vip": {"lease_duration_s": 5, "renew_deadline_s": 3, "retry_period_s": 1},
    }
    return data


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def twin_rss_mib(directory: Path) -> float:
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if str(directory).encode() not in cmd:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class ReadyWatch:
    """When each pod was first seen, and first seen Ready, through one watch."""

    def __init__(self, core: Any, ns: str) -> None:
        self.core, self.ns = core, ns
        self.seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        from kubernetes import watch

        while not self.stop:
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod, self.ns, timeout_seconds=30
                ):
                    pod = event["object"]
                    name, now = pod.metadata.name, time.monotonic()
                    self.seen.setdefault(name, now)
                    ok = any(
                        c.type == "Ready" and c.status == "True"
                        for c in pod.status.conditions or []
                    )
                    if ok and not pod.metadata.deletion_timestamp:
                        self.ready.setdefault(name, now)
                    if self.stop:
                        return
            except Exception:
                time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--nodes-per-host", type=int, default=10)
    parser.add_argument("--pods", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=200, help="single-object calls per verb")
    args = parser.parse_args()
    from kubernetes import client, config

    with tempfile.TemporaryDirectory(prefix="halab-twin-bench-") as tmp:
        root = Path(tmp)
        inventory = root / "cluster.yaml"
        yaml = YAML()
        with inventory.open("w") as fh:
            yaml.dump(inventory_data(args.hosts, args.nodes_per_host), fh)
        directory = root / "twin"
        nodes = args.hosts * args.nodes_per_host
        print(f"starting a twin of {nodes} nodes on {args.hosts} hosts ...", flush=True)
        start = time.perf_counter()
        supervisor.up(inventory, directory, timeout=600)
        print(f"  up, every node Ready, in {time.perf_counter() - start:.1f} s", flush=True)
        try:
            conf = client.Configuration()
            config.load_kube_config(str(directory / "kubeconfig"), client_configuration=conf)
            api = client.ApiClient(conf)
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            core.create_namespace({"metadata": {"name": "bench"}})
            creates = timed(
                lambda i: core.create_namespaced_config_map(
                    "bench", {"metadata": {"name": f"c{i}"}}
                ),
                args.calls,
            )
            gets = timed(lambda i: core.read_namespaced_config_map(f"c{i}", "bench"), args.calls)
            watcher = ReadyWatch(core, "bench")
            per = 100
            deployments = max(args.pods // per, 1)
            t0 = time.monotonic()
            for d in range(deployments):
                labels = {"app": f"d{d}"}
                apps.create_namespaced_deployment(
                    "bench",
                    {
                        "metadata": {"name": f"d{d}"},
                        "spec": {
                            "replicas": min(per, args.pods),
                            "selector": {"matchLabels": labels},
                            "template": {
                                "metadata": {"labels": labels},
                                "spec": {"containers": [{"name": "c", "image": "app:1"}]},
                            },
                        },
                    },
                )
            want = deployments * min(per, args.pods)
            while len(watcher.ready) < want and time.monotonic() - t0 < 1800:
                time.sleep(1)
                print(f"\r  pods Ready: {len(watcher.ready)}/{want}", end="", flush=True)
            print()
            all_ready = time.monotonic() - t0
            startup = [
                watcher.ready[n] - watcher.seen[n] for n in watcher.ready if n in watcher.seen
            ]
            # Paced, as the SLO's load tests create pods: 100 more at 20 pods/s.
            for i in range(100):
                body = {
                    "metadata": {"name": f"paced{i}"},
                    "spec": {"containers": [{"name": "c", "image": "app:1"}]},
                }
                core.create_namespaced_pod("bench", body)
                time.sleep(0.05)
            paced_names = [f"paced{i}" for i in range(100)]
            deadline = time.monotonic() + 300
            while not all(n in watcher.ready for n in paced_names) and time.monotonic() < deadline:
                time.sleep(0.5)
            paced = [watcher.ready[n] - watcher.seen[n] for n in paced_names if n in watcher.ready]
            lists = timed(lambda i: core.list_pod_for_all_namespaces(), 10)
            memory = twin_rss_mib(directory)
            # A host fails: its nodes go NotReady after the grace period, their pods are
            # evicted after the toleration, and the Deployments make them again elsewhere.
            victim = "host05" if args.hosts > 5 else "host01"
            before = dict(watcher.ready)
            failed_at = time.monotonic()
            supervisor.fail(directory, victim)
            on_victim = {
                p.metadata.name
                for p in core.list_namespaced_pod("bench").items
                if (p.spec.node_name or "").startswith(f"h{victim[-2:]}-")
            }

            def ready_again() -> bool:
                live: list[Any] = [
                    p
                    for p in core.list_namespaced_pod("bench").items
                    if not p.metadata.deletion_timestamp and not p.metadata.name.startswith("paced")
                ]
                fresh = [
                    p
                    for p in live
                    if p.metadata.name not in before or p.metadata.name not in on_victim
                ]
                return bool(sum(1 for p in fresh if p.metadata.name in watcher.ready) >= want)

            while not ready_again() and time.monotonic() - failed_at < 900:
                time.sleep(1)
            reschedule = time.monotonic() - failed_at
        finally:
            if "watcher" in locals():
                watcher.stop = True
            supervisor.down(directory)
    print()
    print(f"twin: {nodes} nodes, {want + 100} pods ({want} in {deployments} Deployments, 100 bare)")
    print(f"{'measure':34} {'p50':>9} {'p99':>9} {'SLO (p99)':>10}")
    for label, values, slo in (
        ("get (single object)", gets, SLO["get"]),
        ("create (single object)", creates, SLO["create"]),
        ("list all pods (cluster-wide)", lists, SLO["list"]),
        ("pod startup, burst of all at once", startup, SLO["startup"]),
        ("pod startup, paced at 20 pods/s", paced, SLO["startup"]),
    ):
        print(f"{label:34} {pct(values, 0.5):8.3f}s {pct(values, 0.99):8.3f}s {slo:9.1f}s")
    print(f"all {want} pods Ready after the Deployments were created: {all_ready:.1f} s")
    print(
        f"every Deployment pod Ready again after {victim} failed: {reschedule:.1f} s "
        f"(grace 10 s + toleration 5 s of that are the tuned timings, by design)"
    )
    print(f"twin memory (RSS of hosts, etcd and pod processes): {memory:.0f} MiB")


if __name__ == "__main__":
    main()
