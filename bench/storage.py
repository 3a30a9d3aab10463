"""SeaweedFS in the twin: how long until it runs, what it costs, how fast it stores.

Starts a twin of the shipped inventory (tuned timings) in a temporary directory, delivers
phase 2 (the rendered SeaweedFS), and prints:
- seconds from `twin up` to the API, and from delivery to every SeaweedFS pod Ready;
- the twin's memory without and with SeaweedFS (RSS, and PSS, which counts the shared weed
  binary once: the honest figure for 13 processes of one 150 MB binary);
- write and read MB/s from one pod through a PVC of the `seaweedfs-ha` class (the CSI
  driver's volume: a real `weed mount`, FUSE) and through the filer's HTTP API (by the
  cluster DNS name), beside the same pod's local disk (an emptyDir), all measured the same
  way in the same run (the command's wall time for the same bytes), with the ratios;
- then phase 3 delivered (the NFS claims on the Unraid host's real nfs-ganesha) and the
  storage benchmark (fio Jobs, as `halab storage-bench` runs them) on the local disk, a
  SeaweedFS claim and the NFS transcode claim: sequential MB/s, 4k random IOPS, latency
  p50/p99, each with its ratio to local.

Run: .venv/bin/python bench/storage.py [--mib 64] [--fio-size 256M] [--fio-runtime 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from halab import netguard
from halab.context import open_context
from halab.kube import api_client, wait_for
from halab.phases import phase2, phase3
from halab.phases.seaweed_servers import all_servers, wait_ready
from halab.storagebench import runner as storage_bench
from halab.storagebench.fio import FioSpec
from halab.twin import supervisor
from halab.twin.timings import tuned_inventory
from halab.twin.topology import TWIN_NETWORK

netguard.install()
ROOT = Path(__file__).resolve().parents[1]


def memory_mib(directory: Path) -> tuple[float, float]:
    """RSS and PSS of every process of the twin: those naming its directory and all their
    descendants (a sandboxed weed names it only through its bubblewrap parent)."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(proc.name)] = int(stat[1])
            if str(directory).encode() in (proc / "cmdline").read_bytes():
                roots.add(int(proc.name))
        except OSError:
            continue
    mine = set(roots)
    changed = True
    while changed:
        more = {pid for pid, parent in parents.items() if parent in mine} - mine
        changed = bool(more)
        mine |= more
    rss = pss = 0
    for pid in mine:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


SCRIPT = """
set -e
head -c {size} /dev/urandom > /tmp/src
t() {{ date +%s.%N; }}
a=$(t); dd if=/tmp/src of=/scratch/f bs=1M conv=fsync status=none; b=$(t)
echo local-write $a $b
a=$(t); dd if=/scratch/f of=/dev/null bs=1M status=none; b=$(t)
echo local-read $a $b
a=$(t); curl -sf -o /dev/null -T /tmp/src http://seaweedfs-filer.seaweedfs:8888/bench/f; b=$(t)
echo seaweedfs-write $a $b
a=$(t); curl -sf -o /dev/null http://seaweedfs-filer.seaweedfs:8888/bench/f; b=$(t)
echo seaweedfs-read $a $b
a=$(t); dd if=/tmp/src of=/pvc/f bs=1M conv=fsync status=none; b=$(t)
echo mount-write $a $b
a=$(t); dd if=/pvc/f of=/dev/null bs=1M status=none; b=$(t)
echo mount-read $a $b
"""


def throughput(api: Any, mib: int, node: str) -> dict[str, float]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = "storage-bench"
    core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "seaweedfs-ha",
                "resources": {"requests": {"storage": f"{max(1, mib * 4 // 1024 + 1)}Gi"}},
            },
        },
    )
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": node},
                "containers": [
                    {
                        "name": "bench",
                        "image": "debian:12",
                        "command": ["sh", "-c", SCRIPT.format(size=mib * 2**20)],
                        "volumeMounts": [
                            {"name": "scratch", "mountPath": "/scratch"},
                            {"name": "pvc", "mountPath": "/pvc"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "pvc", "persistentVolumeClaim": {"claimName": name}},
                ],
            },
        },
    )
    try:
        pod = wait_for(
            lambda: (
                (p := core.read_namespaced_pod(name, "default")).status.phase
                in ("Succeeded", "Failed")
                and p
            ),
            600,
            "the bench pod finished",
        )
        log = core.read_namespaced_pod_log(name, "default")
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        core.delete_namespaced_persistent_volume_claim(name, "default")
    if pod.status.phase != "Succeeded":
        raise SystemExit(f"the bench pod failed:\n{log}")
    rates = {}
    for line in log.splitlines():
        what, start, end = line.split()
        rates[what] = mib / (float(end) - float(start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="bytes written and read, in MiB")
    parser.add_argument(
        "--network",
        type=IPv4Network,
        default=TWIN_NETWORK,
        help="the loopback /24 of the bench's twin (another when a twin runs already)",
    )
    parser.add_argument("--fio-size", default="256M", help="fio's file (fio's units)")
    parser.add_argument("--fio-runtime", type=int, default=10, help="seconds a random job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="halab-storage-bench-") as tmp:
        directory = Path(tmp) / "twin"
        inventory = tuned_inventory(ROOT / "params" / "cluster.yaml", Path(tmp) / "cluster.yaml")
        start = time.perf_counter()
        supervisor.up(inventory, directory, timeout=180, network=args.network)
        up = time.perf_counter() - start
        try:
            time.sleep(2)
            bare = memory_mib(directory)
            ctx = open_context(
                inventory, target=directory / "target.yaml", run_dir=Path(tmp) / "run"
            )
            api = api_client(ctx.target)  # type: ignore[arg-type]
            start = time.perf_counter()
            phase2.deliver(ctx, api)
            every = {s.pod for s in all_servers(ctx)}
            readiness = wait_ready(api, every, 300)
            if "Ready after" not in readiness.detail:
                raise SystemExit(f"SeaweedFS did not come up: {readiness.detail}")
            ready = time.perf_counter() - start
            csi = phase2.check_csi(ctx, api)
            if csi[0].status != "pass":
                raise SystemExit(f"the CSI driver did not register: {csi[0].detail}")
            time.sleep(3)
            loaded = memory_mib(directory)
            node = next(n.name for n in ctx.inventory.nodes if not n.is_server and not n.taints)
            rates = throughput(api, args.mib, node)
            phase3.deliver(ctx, api)
            fio = storage_bench.run(
                ctx,
                api,
                spec=FioSpec(args.fio_size, args.fio_runtime),
                node=node,
                say=lambda line: print(line, flush=True),
            )
        finally:
            supervisor.down(directory)
    print(f"twin up (API on the VIP, every node Ready): {up:.1f} s")
    print(f"SeaweedFS delivered -> all {len(every)} pods Ready: {ready:.1f} s")
    print(
        f"twin memory: {bare[0]:.0f} MiB RSS / {bare[1]:.0f} MiB PSS without SeaweedFS, "
        f"{loaded[0]:.0f} MiB RSS / {loaded[1]:.0f} MiB PSS with it"
    )
    print(f"{args.mib} MiB from one pod on {node}, both measured alike (the command's wall time):")
    for op in ("write", "read"):
        local, sw, mount = rates[f"local-{op}"], rates[f"seaweedfs-{op}"], rates[f"mount-{op}"]
        print(
            f"  {op:5}  local emptyDir {local:8.1f} MiB/s   weed mount PVC {mount:8.1f} MiB/s "
            f"(ratio {mount / local:.2f})   filer HTTP {sw:8.1f} MiB/s (ratio {sw / local:.2f})"
        )
    print(
        "  (writes are fsynced on both local and PVC; reads right after the write may come "
        "from the page cache or weed mount's chunk cache: every side runs on this one "
        "machine's disk, and the replication's copies all land on it)"
    )
    print(f"\nfio Jobs on {fio.node} ({args.fio_size} file, {args.fio_runtime} s random jobs):")
    print("\n".join(fio.lines()))


if __name__ == "__main__":
    main()
