"""The twin's NFS: the real nfs-ganesha on the NFS host with the inventory's exports and a
seeded media library, halab.nfs against it, the kubelet's FUSE NFS mounts in pods, and
what happens when the NFS host is down or a volume names an export that is not there."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from halab.context import open_context
from halab.inventory import load_inventory
from halab.nfs import Endpoint, list_exports, probe
from halab.phases import phase3
from halab.twin.nfs_server import MOUNT_PORT
from halab.twin.topology import twin_address

from helpers import write_yaml
from twinlab import TwinLab, eventually

pytestmark = pytest.mark.twin

MOVIE = "/Movies/Test Pattern (2024)/Test Pattern (2024).mkv"


def _server(twin: TwinLab) -> tuple[Endpoint, str, str]:
    """The NFS server as the twin serves it, a node address on it, the server's inventory
    address."""
    inv = load_inventory(twin.inventory)
    assert inv.storage.nfs is not None
    host = inv.host(inv.storage.nfs.host)
    node = str(twin_address(inv.nodes[0].address))
    return Endpoint(str(twin_address(host.address)), 2049, MOUNT_PORT), node, str(host.address)


def _on_disk(twin: TwinLab, path: str) -> Path:
    inv = load_inventory(twin.inventory)
    assert inv.storage.nfs is not None
    return twin.dir / "hosts" / inv.storage.nfs.host / "root" / path.lstrip("/")


def test_ganesha_serves_the_inventory_exports_to_the_subnet_only(twin: TwinLab) -> None:
    server, node, _ = _server(twin)
    assert list_exports(server, node) == ["/mnt/user/media", "/mnt/user/transcode"]
    media = probe(server, "/mnt/user/media", node, write=True)
    assert media.ok and media.write.startswith("refused: EROFS"), media
    assert {"Movies", "TV Shows"} <= set(media.entries)
    transcode = probe(server, "/mnt/user/transcode", node, write=True)
    assert transcode.ok and transcode.write == "written", transcode
    # 127.0.0.1 is not in the cluster's subnet (as the twin maps it): the export refuses it.
    outsider = probe(server, "/mnt/user/media", "127.0.0.1")
    assert not outsider.ok and "access denied" in outsider.error, outsider
    # A source address this machine does not have: said so, nothing sent.
    foreign = probe(server, "/mnt/user/media", "192.0.2.7")
    assert "not an address of this machine" in foreign.error, foreign


def test_the_library_is_plex_shaped_h264_and_hevc(twin: TwinLab) -> None:
    root = _on_disk(twin, "/mnt/user/media")
    clips = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.mkv"))
    assert MOVIE.lstrip("/") in clips
    assert any(c.startswith("TV Shows/") and " - S01E01.mkv" in c for c in clips), clips
    codecs = set()
    for clip in clips:
        done = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
             "stream=codec_name", "-of", "csv=p=0", str(root / clip)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        codecs.add(done.stdout.strip())
    assert codecs == {"h264", "hevc"}


def _reader_pod(name: str, node: str, server: str, script: str) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeName": node,
            "containers": [
                {
                    "name": "r",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "media", "mountPath": "/media", "readOnly": True}],
                }
            ],
            # An inline nfs: volume naming the inventory's address, as a manifest would.
            "volumes": [
                {
                    "name": "media",
                    "nfs": {"server": server, "path": "/mnt/user/media", "readOnly": True},
                }
            ],
        },
    }


def test_readers_wait_while_the_nfs_host_is_down_and_finish_after(twin: TwinLab) -> None:
    inv = load_inventory(twin.inventory)
    assert inv.storage.nfs is not None
    nfs_host = inv.storage.nfs.host
    node = next(n.name for n in inv.nodes if n.host != nfs_host and not n.taints)
    _, _, server = _server(twin)
    core = client.CoreV1Api(twin.api())
    ns = twin.namespace()
    expected = hashlib.sha256(_on_disk(twin, "/mnt/user/media" + MOVIE).read_bytes()).hexdigest()
    # The read starts only once the host is down (the pod waits for the marker time).
    script = f'sleep 4; sha256sum "/media{MOVIE}"'
    core.create_namespaced_pod(ns, _reader_pod("reader", node, server, script))
    # A second reader, stopped while it waits: a signal ends a hard wait (EINTR), so its
    # deletion completes long before its grace period would have it killed.
    other_movie = "/Movies/Colour Bars (2023)/Colour Bars (2023).mkv"
    quitter = f'sleep 4; cat "/media{other_movie}" > /dev/null'
    core.create_namespaced_pod(ns, _reader_pod("quitter", node, server, quitter))
    for name in ("reader", "quitter"):
        eventually(
            lambda name=name: core.read_namespaced_pod(name, ns).status.phase == "Running",
            60,
            f"the {name} pod Running (its NFS volume mounted)",
        )
    uid = core.read_namespaced_pod("reader", ns).metadata.uid
    twin.fail(nfs_host)
    try:
        # The reader's client notices the server gone, and keeps trying (a hard mount).
        logs = f"hosts/*/kubelet/{node}/pods/{uid}/nfs/*/mount.log"
        eventually(
            lambda: any(
                "server not responding, still trying" in p.read_text(errors="replace")
                for p in twin.dir.glob(logs)
            ),
            60,
            "the reader's NFS client saying the server is not responding",
        )
        # The read is waiting: hard, not failed, nothing from a copy.
        assert core.read_namespaced_pod("reader", ns).status.phase == "Running"
        # The rest of the cluster is not held up: the API answers, and the reader's node
        # starts and finishes another pod.
        other = {
            "metadata": {"name": "bystander"},
            "spec": {
                "restartPolicy": "Never",
                "nodeName": node,
                "containers": [
                    {"name": "b", "image": "busybox:1.36", "command": ["sh", "-c", "echo ok"]}
                ],
            },
        }
        core.create_namespaced_pod(ns, other)
        eventually(
            lambda: core.read_namespaced_pod("bystander", ns).status.phase == "Succeeded",
            30,
            "a pod without NFS on the same node finished",
        )
        assert core.read_namespaced_pod("reader", ns).status.phase == "Running"
        core.delete_namespaced_pod("quitter", ns, grace_period_seconds=120)

        def quitter_gone() -> bool:
            try:
                core.read_namespaced_pod("quitter", ns)
            except client.exceptions.ApiException as exc:
                return exc.status == 404
            return False

        eventually(quitter_gone, 30, "the waiting reader ended by SIGTERM, server still down")
        assert core.read_namespaced_pod("reader", ns).status.phase == "Running"
    finally:
        twin.recover(nfs_host)
    done = eventually(
        lambda: (
            (p := core.read_namespaced_pod("reader", ns)).status.phase in ("Succeeded", "Failed")
            and p
        ),
        60,
        "the reader finished once the NFS host was back",
    )
    log = core.read_namespaced_pod_log("reader", ns)
    assert done.status.phase == "Succeeded" and expected in log, log
    eventually(
        lambda: all(
            c.status == "True"
            for n in core.list_node().items
            for c in n.status.conditions
            if c.type == "Ready"
        ),
        90,
        "every node Ready again",
    )
    twin.kubectl("delete", "namespace", ns, "--wait=false")


def test_a_pv_naming_a_missing_export_leaves_the_pod_waiting(twin: TwinLab) -> None:
    _, _, server = _server(twin)
    core = client.CoreV1Api(twin.api())
    ns = twin.namespace()
    pv = f"nfs-missing-{uuid.uuid4().hex[:5]}"
    core.create_persistent_volume(
        {
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "nfs": {"server": server, "path": "/mnt/user/nope", "readOnly": True},
                "claimRef": {"namespace": ns, "name": "missing"},
            },
        }
    )
    try:
        core.create_namespaced_persistent_volume_claim(
            ns,
            {
                "metadata": {"name": "missing"},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        pod = {
            "metadata": {"name": "waits"},
            "spec": {
                "containers": [{"name": "w", "image": "busybox:1.36", "command": ["true"]}],
                "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "missing"}}],
            },
        }
        core.create_namespaced_pod(ns, pod)

        def failed_mount() -> str:
            events = core.list_namespaced_event(ns).items
            found = [e.message for e in events if e.reason == "FailedMount"]
            return found[0] if found else ""

        message = eventually(failed_mount, 60, "a FailedMount event for the pod")
        assert f"{server}:/mnt/user/nope" in message, message
        assert "access denied by server" in message, message
        status = core.read_namespaced_pod("waits", ns).status
        waiting = [
            c.state.waiting.reason for c in status.container_statuses or [] if c.state.waiting
        ]
        assert status.phase == "Pending" and waiting in ([], ["ContainerCreating"]), status
    finally:
        twin.kubectl("delete", "namespace", ns, "--wait=false")
        core.delete_persistent_volume(pv)


def test_an_unreachable_nfs_server_fails_the_checks_naming_the_address(
    twin: TwinLab, tmp_path: Path
) -> None:
    from halab.inventory.yaml_source import read_yaml

    _, _, server = _server(twin)
    target = read_yaml(twin.dir / "target.yaml").data
    # Nothing listens on 127.77.0.250: the NFS host's address mapped there is unreachable.
    target["addresses"]["explicit"] = {server: "127.77.0.250"}
    path = write_yaml(tmp_path / "target.yaml", target)
    ctx = open_context(twin.inventory, target=path, run_dir=tmp_path / "run")
    exported = phase3.check_exports(ctx, timeout=2)
    assert exported.status == "fail" and "127.77.0.250" in exported.detail, exported
    nodes = phase3.check_from_nodes(ctx, timeout=2)
    assert nodes and all(c.status == "fail" for c in nodes), nodes
    assert all("127.77.0.250" in c.detail for c in nodes), nodes


def test_storage_bench_cli_measures_nfs_beside_local(twin: TwinLab, tmp_path: Path) -> None:
    ctx = open_context(twin.inventory, target=twin.dir / "target.yaml", run_dir=tmp_path)
    from halab.kube import api_client

    assert ctx.target is not None
    phase3.deliver(ctx, api_client(ctx.target))
    done = subprocess.run(
        [sys.executable, "-m", "halab.cli", "storage-bench", "--target",
         str(twin.dir / "target.yaml"), "--inventory", str(twin.inventory), "--subjects",
         "local,nfs", "--size", "8M", "--runtime", "1", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ratio to local" in done.stdout
    (saved,) = (tmp_path / "out").glob("storage-*.json")
    doc = json.loads(saved.read_text())
    assert doc["schema"] == "halab.storagebench/v1" and doc["baseline"] == "local"
    assert [s["name"] for s in doc["subjects"]] == ["local", "nfs"]
    nfs = doc["subjects"][1]
    assert nfs["volume"].endswith("(/mnt/user/transcode)")
    assert nfs["seq_read_mbps"] > 0 and nfs["rand_write_iops"] > 0 and nfs["read_p99_ms"] > 0
    assert saved.with_suffix(".png").stat().st_size > 0
    # The Job worked in a directory of its own on the export and removed it.
    assert not list(_on_disk(twin, "/mnt/user/transcode").glob(".halab-fio-*"))


def test_nodes_whose_addresses_are_not_here_are_checked_by_a_pod_on_them(
    twin: TwinLab, tmp_path: Path
) -> None:
    """At home the notebook's machine has no node's address: each node's own NFS client is
    proven by a pod pinned there. A target mapping the nodes to TEST-NET addresses (never
    connected to: the check only sees this machine does not have them) takes that path."""
    from halab.inventory.yaml_source import read_yaml
    from halab.kube import api_client

    inv = load_inventory(twin.inventory)
    target = read_yaml(twin.dir / "target.yaml").data
    target["addresses"]["explicit"] = {
        str(n.address): f"192.0.2.{int(n.address) & 0xFF}" for n in inv.nodes
    }
    path = write_yaml(tmp_path / "target.yaml", target)
    ctx = open_context(twin.inventory, target=path, run_dir=tmp_path / "run")
    assert ctx.target is not None
    api = api_client(ctx.target)  # the kubeconfig: the address map does not touch it
    phase3.deliver(ctx, api)
    checks = phase3.check_from_nodes(ctx, api=api)
    assert checks and all(c.status == "pass" for c in checks), checks
    assert all(c.detail.startswith("a pod on ") for c in checks), checks
    assert all("media: 2 entries" in c.detail and "transcode: " in c.detail for c in checks)
