"""What the twin's kube-proxy costs: HTTP through a ClusterIP and a NodePort beside the
same requests straight to the pod, measured the same way in the same run.

Starts a twin of the plan's inventory on its own loopback /24, runs one pod whose Python
http.server serves a small page and a 4 MiB file, and prints per path: p50/p99 latency of the small
page (a fresh connection each request, as a client without keep-alive), and MB/s fetching
the file; then each path's figures against the pod's. Run:
.venv/bin/python bench/service_proxy.py [--requests 300] [--network 127.71.0.0/24]
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from halab import netguard
from halab.twin import supervisor

netguard.install()
ROOT = Path(__file__).resolve().parents[1]
FILE_MIB = 4
SERVE = (
    f"mkdir -p /tmp/w && echo ok > /tmp/w/ok && head -c {FILE_MIB * 1048576} /dev/zero > "
    '/tmp/w/big && exec python3 -m http.server 8080 --bind "$POD_IP" --directory /tmp/w'
)


def fetch(address: str, port: int, path: str) -> int:
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return len(resp.read())
    finally:
        conn.close()


def measure(address: str, port: int, requests: int) -> dict[str, float]:
    latencies = []
    for _ in range(requests):
        start = time.perf_counter()
        fetch(address, port, "/ok")
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    start = time.perf_counter()
    rounds = 5
    size = sum(fetch(address, port, "/big") for _ in range(rounds))
    seconds = time.perf_counter() - start
    return {
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
        "mb_s": size / seconds / 1e6,
    }


def wait(check: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise SystemExit(f"{what}: not within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--network", default="127.71.0.0/24")
    args = parser.parse_args()
    from kubernetes import client, config

    with tempfile.TemporaryDirectory(prefix="halab-proxy-bench-") as tmp:
        directory = Path(tmp) / "twin"
        supervisor.up(
            ROOT / "params" / "cluster.yaml", directory, network=IPv4Network(args.network)
        )
        try:
            conf = client.Configuration()
            config.load_kube_config(str(directory / "kubeconfig"), client_configuration=conf)
            api = client.ApiClient(conf)
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "bench"}})
            container = {
                "name": "web",
                "image": "debian:12",  # the twin runs its command as a process: python3 serves
                "command": ["sh", "-c", SERVE],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                ],
            }
            core.create_namespaced_pod(
                "bench",
                {
                    "metadata": {"name": "web", "labels": {"app": "web"}},
                    "spec": {"containers": [container]},
                },
            )
            svc = core.create_namespaced_service(
                "bench",
                {
                    "metadata": {"name": "web"},
                    "spec": {
                        "type": "NodePort",
                        "selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080}],
                    },
                },
            )
            pod = wait(
                lambda: (
                    (p := core.read_namespaced_pod("web", "bench")).status.pod_ip
                    and p.status.phase == "Running"
                    and p
                ),
                "the web pod runs",
            )
            node = core.read_node(pod.spec.node_name)
            node_ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
            paths = {
                "pod (baseline)": (pod.status.pod_ip, 8080),
                "ClusterIP": (svc.spec.cluster_ip, 80),
                "NodePort": (node_ip, svc.spec.ports[0].node_port),
            }
            for address, port in paths.values():  # every path answers before timing
                wait(lambda a=address, p=port: _answers(a, p), f"{address}:{port} answers")
            results = {name: measure(a, p, args.requests) for name, (a, p) in paths.items()}
        finally:
            supervisor.down(directory)
    base = results["pod (baseline)"]
    print(f"{args.requests} small GETs (new connection each) and 5 x {FILE_MIB} MiB per path")
    print(f"{'path':16} {'p50 ms':>8} {'p99 ms':>8} {'MB/s':>8}   vs pod: p50  MB/s")
    for name, r in results.items():
        print(
            f"{name:16} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['mb_s']:8.0f}   "
            f"x{r['p50_ms'] / base['p50_ms']:.2f}  x{r['mb_s'] / base['mb_s']:.2f}"
        )


def _answers(address: str, port: int) -> bool:
    try:
        return fetch(address, port, "/ok") > 0
    except OSError:
        return False


if __name__ == "__main__":
    main()
