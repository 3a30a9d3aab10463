"""Phase 0, 1, 2, 3, 4, 6, 7 and 8 notebooks, run by `halab run` against the twin, as a user
would: phase 6 pulls a control-plane host's plug (allowed) and must bring it back; phase 7
delivers the GPU plugin and MetalLB, whose speakers peer with the gateway's real FRR; phase 8
delivers ClusterPlex and starts the Unraid worker with docker compose over SSH."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kubernetes import client

from halab.experiments.expect import tolerance_s
from halab.twin import supervisor
from halab.twin.kubelet.csi import mounts_under

from twinlab import ROOT, TwinLab, eventually, namespace_gone

pytestmark = [pytest.mark.twin, pytest.mark.notebook]


LIVE_PHASE0 = ("ssh-", "api-vip", "address-", "sizes-", "pi-prepared-", "cluster-state")


def _halab_run(twin: TwinLab, phases: str, out: Path, *flags: str) -> tuple[int, str, Path]:
    """`halab run` of those phases against the twin's target, as a user types it: its
    exit code, what it printed, and the run's directory of evidence."""
    done = subprocess.run(
        [
            sys.executable, "-m", "halab.cli", "run", "--phases", phases,
            "--target", str(twin.dir / "target.yaml"), "--inventory", str(twin.inventory),
            "--out", str(out), *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    runs = list(out.iterdir()) if out.is_dir() else []
    return done.returncode, done.stdout + done.stderr, runs[0] if len(runs) == 1 else out


def test_every_phase_on_the_twin(twin: TwinLab, tmp_path: Path) -> None:
    try:
        _phases_0_to_7(twin, tmp_path / "0-7")
        _phase8(twin, tmp_path / "8")
        _scenario_1(twin, tmp_path / "failover")
    finally:
        # SeaweedFS, MetalLB and ClusterPlex go again: the rest of the session need not
        # carry them. What a failed run never delivered is not there to delete, and must
        # not hide that failure behind a 404.
        _compose_down(twin)
        core = client.CoreV1Api(twin.api())
        with contextlib.suppress(client.ApiException):
            client.AppsV1Api(twin.api()).delete_namespaced_daemon_set(
                "intel-gpu-plugin", "kube-system"
            )
        # The apps before their storage, as one takes a cluster apart: an app's weed
        # mount whose filer went first would wait on it. Their pods' volumes go with
        # them: a mount left behind is this test's, said here rather than by the next
        # module that looks. SeaweedFS's own pods mount nothing; they go meanwhile.
        for namespace in ("media", "metallb-system"):
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(namespace)
        for namespace in ("media", "metallb-system"):
            namespace_gone(twin.api(), namespace)
        with contextlib.suppress(client.ApiException):
            core.delete_namespace("seaweedfs")
        try:
            eventually(lambda: not mounts_under(twin.dir), 60, "every pod's mount released")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {mounts_under(twin.dir)}") from None


def _phases_0_to_7(twin: TwinLab, tmp_path: Path) -> None:
    # Phases 0 to 4 (and 6) without permission to disrupt: phase 2 powers no host off (the
    # other shape's test and test_twin_seaweedfs prove its rehearsal); 5 to 7 with it.
    code, printed, run_dir = _halab_run(twin, "0-4,6", tmp_path / "0-4")
    assert code == 0, printed
    # Phase 6 without permission pulls no plug either (it runs again below, with it).
    doc = json.loads((run_dir / "phase6.checks.json").read_text())
    unpulled = next(c for c in doc["checks"] if c["id"] == "api-survives-host-loss")
    assert unpulled["status"] == "skip" and "allow_disruption" in unpulled["detail"], unpulled
    code, printed, later = _halab_run(twin, "5-7", tmp_path / "5-7", "--allow-disruption")
    assert code == 0, printed
    for written in later.iterdir():
        if written.name.startswith("phase"):  # one directory of evidence to read below
            shutil.copy(written, run_dir / written.name)
    statuses = {}
    details = {}
    advisory = set()
    for name in ("phase0", "phase1", "phase2", "phase3", "phase4", "phase5", "phase6", "phase7"):
        doc = json.loads((run_dir / f"{name}.checks.json").read_text())
        statuses.update({c["id"]: c["status"] for c in doc["checks"]})
        details.update({c["id"]: c["detail"] for c in doc["checks"]})
        advisory |= {c["id"] for c in doc["checks"] if not c["required"]}
        # What is asked of the cluster or its hosts is timed (phase 0's inventory checks
        # are answered from the file alone).
        live = [c for c in doc["checks"] if c["status"] != "skip"]
        if name == "phase0":
            live = [
                c for c in live if c["id"].startswith(LIVE_PHASE0) and c["id"] != "address-plan"
            ]
        assert live and all(c["seconds"] > 0 for c in live), name
    # Nothing skips: the twin runs the CSI driver's stand-in with real weed mounts. With the
    # plan's 002 in one rack copies may share a host (advisory), and a volume may have had
    # every copy on the host that went down (a warning naming it).
    skipped = {k for k, s in statuses.items() if s == "skip"} - {"survives-host-loss"}
    # Only what nothing serves yet (MetalLB before phase 7 delivers it, so no BGP session
    # for phase 6's servers) and what the twin's target says it cannot do (ask GitHub);
    # the hosts answer SSH, so the NFS server's own /etc/exports is read and compared.
    assert skipped == {"metallb", "github-pat", "bgp-joined-6"}, statuses
    assert statuses["coredns"] == "pass", statuses
    # Phase 7: the plugin's GPU on w3 alone, the test pod with its resource sees /dev/dri;
    # the plan's own line (intel.com/gpu) stays Pending, quoted, naming the finding.
    phase7 = {
        c["id"]: c for c in json.loads((run_dir / "phase7.checks.json").read_text())["checks"]
    }
    for cid in ("gpu-node-k3s-w3", "gpu-allocatable", "gpu-test-pod", "seaweedfs-volumes"):
        assert phase7[cid]["status"] == "pass", phase7[cid]
    assert "renderD128" in phase7["gpu-test-pod"]["detail"]
    plan_line = phase7["gpu-test-pod-workloads"]
    assert plan_line["status"] == "fail" and not plan_line["required"], plan_line
    assert "Insufficient intel.com/gpu" in plan_line["detail"]
    assert "gpu-resource-name" in plan_line["detail"]
    for cid in ("metallb-config", "loadbalancer", "bgp-joined-7", "docker-worker-files"):
        assert phase7[cid]["status"] == "pass", phase7[cid]
    assert "k3s-w3 (127.77.0.13): Established" in phase7["bgp-joined-7"]["detail"]
    # In BGP mode every eligible node announces, each with its ServiceBGPStatus.
    assert phase7["loadbalancer"]["detail"].count("(BGP)") >= 2, phase7["loadbalancer"]
    assert statuses["server-exports"] == "pass"
    assert statuses["pi-prepared-k3s-cp3"] == "pass"
    assert {f"sizes-{n}" for n in ("k3s-cp1", "k3s-w1", "k3s-w3")} <= set(statuses)
    assert {"csi-registered", "pvc-binds", "pvc-write-read"} <= set(statuses)
    rehearsal = statuses["survives-host-loss"]
    assert rehearsal == "skip" and "disruption not allowed" in details["survives-host-loss"]
    must = {
        k: s
        for k, s in statuses.items()
        if k not in advisory | skipped | {"survives-host-loss", "app-writes-sonarr-media"}
        and k != "gpu-test-pod-workloads"
    }
    assert all(s == "pass" for s in must.values()), statuses
    assert {"planner-agrees", "replicated", "read-back", "masters", "pods-k3s-w1"} <= set(statuses)
    assert (run_dir / "phase2.copies.png").exists()
    # Phase 3 on the twin's real NFS server: every node reaches the exports, the claims
    # bind, a pod reads the library, writes land where the exports allow; Sonarr's write to
    # the read-only media export fails (a warning: the plan's mistake, live).
    assert {"exports-served", "nfs-from-k3s-w1", "pvc-media-media", "pod-reads-media"} <= set(
        statuses
    )
    assert {"write-media", "write-transcode"} <= set(statuses)
    assert statuses["app-writes-sonarr-media"] == "warn", statuses
    # Each storage notebook measured its storage beside the local disk, with fio Jobs.
    for name, subject in (("phase2", "seaweedfs"), ("phase3", "nfs")):
        bench = json.loads((run_dir / f"{name}.storage.json").read_text())
        assert bench["schema"] == "halab.storagebench/v1", bench
        assert [s["name"] for s in bench["subjects"]] == ["local", subject]
        assert all(s["seq_write_mbps"] > 0 for s in bench["subjects"]), bench
        assert (run_dir / f"{name}.storage.png").exists()
    # Phase 4: Sonarr on w1 (role=primary), the test series read back from its database
    # through the filer; the read-only media export browsable but no root folder.
    assert statuses["running-sonarr"] == "pass" and statuses["functional-sonarr"] == "pass"
    assert statuses["config-on-seaweedfs-sonarr"] == "pass", statuses
    assert statuses["media-sonarr-media"] == "warn", statuses
    assert {"ready-k3s-w1", "labels-k3s-w2", "test-pod-k3s-w1", "etcd-quorum"} <= set(statuses)
    _phase5(run_dir, statuses)
    assert {"api-survives-host-loss", "host-restored", "etcd-consistent-after"} <= set(statuses)
    assert "etcd-consistent" in statuses
    assert (run_dir / "phase6.availability.png").exists()
    # Powered back on: every host runs again.
    assert set(supervisor.running_hosts(supervisor.TwinPaths(twin.dir))) == {
        "proxmox",
        "unraid",
        "pi",
        "udm",
    }


def _phase5(run_dir: Path, statuses: dict[str, str]) -> None:
    """Phase 5's Tests 1 to 3 as experiments: Sonarr drained off w1 and back with its
    series, SeaweedFS read through the faults, the copies back after the volume server's
    restart, w1 cut off the NFS server (Sonarr's media unavailable, other nodes still
    reading) and let in again, every fault undone, the observed move as predicted."""
    for cid in (
        "test1-steady-before", "test1-moved-sonarr", "test1-seaweedfs-readable",
        "test1-returned-sonarr", "test1-data-seaweedfs-files", "test1-data-sonarr-config",
        "test1-restored", "test2-steady-before", "test2-unaffected-sonarr",
        "test2-data-replication", "test2-data-sonarr-config", "test2-restored",
        "test3-cut-seen", "test3-others-unaffected", "test3-media-unavailable-sonarr-media",
        "test3-media-back-sonarr-media", "test3-restored", "test3-data-sonarr-config",
    ):  # fmt: skip
        assert statuses[cid] == "pass", (cid, statuses)
    # One copy gone of three: every read still answers, maybe after a retry.
    assert statuses["test2-seaweedfs-readable"] in ("pass", "warn"), statuses
    doc = json.loads((run_dir / "phase5.checks.json").read_text())
    by_id = {c["id"]: c for c in doc["checks"]}
    (row,) = by_id["test1-planner"]["data"]
    assert row["workload"] == "sonarr" and row["verdict"] == "as predicted", row
    assert row["observed where"] in row["predicted where"].split(" or "), row
    assert by_id["test1-returned-sonarr"]["detail"].startswith("Running on k3s-w1"), by_id
    for name in ("test1-swimlane.png", "test1.samples.csv", "test1.timeline.csv"):
        assert (run_dir / f"phase5.{name}").exists(), name
    timeline = (run_dir / "phase5.test1.timeline.csv").read_text()
    for event in ("fault injected", "sonarr Running and Ready on", "fault undone",
                  "steady state back"):  # fmt: skip
        assert event in timeline, timeline
    # The evicted pod, seen Terminating or (deleted between two samples) gone.
    assert "Terminating on k3s-w1" in timeline or "gone from k3s-w1" in timeline, timeline


def _papermill(twin: TwinLab, notebook: str, out: Path, *more: str) -> tuple[int, str, Path]:
    """`papermill notebooks/<notebook>.ipynb OUT -p target ...`, as the kit's users run a
    phase by hand: exit code, what it printed, and the evidence directory it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable, "-m", "papermill", f"notebooks/{notebook}.ipynb",
            str(out / f"{notebook}.ipynb"), "-p", "target", str(twin.dir / "target.yaml"),
            "-p", "inventory", str(twin.inventory), "-p", "run_dir", str(out), *more,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr, out


def _phase8(twin: TwinLab, out: Path) -> None:
    """Phase 8 by papermill, on the storage phases 2 and 3 left and the MetalLB phase 7
    delivered. With the plan's `intel.com/gpu` the k8s worker stays Pending, so one worker
    of two registers and the notebook fails, naming the finding; the rest holds."""
    code, printed, run_dir = _papermill(twin, "phase8", out)
    assert code == 1 and "CheckFailed" in printed, printed
    checks = {
        c["id"]: c for c in json.loads((run_dir / "phase8.checks.json").read_text())["checks"]
    }
    failed = {k for k, c in checks.items() if c["status"] == "fail"}
    assert failed == {"worker-clusterplex-worker", "workers-registered"}, checks
    assert "Insufficient intel.com/gpu" in checks["worker-clusterplex-worker"]["detail"]
    assert "gpu-resource-name" in checks["worker-clusterplex-worker"]["detail"]
    assert "127.77.0.150:3500/health answers Healthy" in checks["orchestrator"]["detail"]
    assert checks["pms-plex"]["status"] == "pass", checks["pms-plex"]
    assert checks["pms-web-plex"]["status"] == "pass", checks["pms-web-plex"]
    assert checks["docker-worker-clusterplex-worker-unraid"]["status"] == "pass"
    assert "workers_active 1" in checks["workers-registered"]["detail"]
    jobs = checks["jobs-distributed"]
    assert jobs["status"] == "pass" and jobs["detail"].startswith("4/4 succeeded"), jobs
    assert checks["transcode-shared"]["status"] == "pass"
    assert checks["plex-versions"]["status"] == "warn"  # :latest on both sides
    # Plex: its libraries scanned from the NFS media, its transcoder directory on the
    # share, and real transcodes through it. The workers ask for VA-API and there is no
    # GPU here: each remote job fails at the decoder and PMS falls back, which the check
    # reports as the twin's limit, not as a pass; the segments still play.
    assert checks["plex-library-plex"]["status"] == "pass", checks["plex-library-plex"]
    assert "4 playable items" in checks["plex-library-plex"]["detail"]
    assert checks["plex-transcode-dir-plex"]["status"] == "pass"
    transcodes = checks["plex-transcodes"]
    assert transcodes["status"] == "skip", transcodes
    assert "2/2 played to the end" in transcodes["detail"], transcodes
    assert "fell back to PMS" in transcodes["detail"] and "aac+h264" in transcodes["detail"]
    assert checks["transcode-report"]["status"] == "skip"
    # The Unraid worker asks for VA-API: its host's engines would be watched, but the
    # twin's target says it has no GPU, so the watch skips, naming why.
    gpu = checks["gpu-busy"]
    assert gpu["status"] == "skip" and "no GPU on this machine" in gpu["detail"], gpu
    # The cluster's capacity as Plex's users see it, while PMS is up.
    bench = subprocess.run(
        [
            sys.executable, "-m", "halab.cli", "bench", "--through", "plex", "--max-streams", "2",
            "--target", str(twin.dir / "target.yaml"), "--inventory", str(twin.inventory),
            "--out", str(out / "plex-bench.json"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # Whether a level keeps up is this machine's speed (a fallback after the failed remote
    # try costs a 2 s clip most of its time), so that is measured, not asserted: exit 0
    # with a realtime level, 1 without, and the levels stop at the first that fell behind.
    doc = json.loads((out / "plex-bench.json").read_text())
    assert bench.returncode == (0 if doc["realtime_transcodes"] else 1), bench.stderr
    levels = doc["levels"]
    assert [level["transcodes"] for level in levels] == [1, 2][: len(levels)], levels
    assert len(levels[0]["speeds"]) == 1 and levels[0]["speeds"][0] > 0, levels
    assert all(level["kept up"] for level in levels[:-1]), levels
    assert len(levels) == 2 or not levels[-1]["kept up"], levels
    # The token PMS generated (read as the kit reads it) never reaches the evidence.
    from halab.context import open_context
    from halab.kube import api_client
    from halab.phases import plex_transcodes

    ctx = open_context(str(twin.inventory), target=str(twin.dir / "target.yaml"), run_dir=out)
    assert ctx.target is not None
    pms = next(a for a in ctx.inventory.apps if a.role == "plex")
    secret = plex_transcodes.token(ctx, api_client(ctx.target), pms)
    assert len(secret) >= 16
    for written in run_dir.rglob("*"):
        if written.is_file() and written.suffix in (".ipynb", ".json", ".html"):
            assert secret not in written.read_text(errors="replace"), written


def _scenario_1(twin: TwinLab, out: Path) -> None:
    """The plan's Scenario 1 by papermill, on everything phases 0 to 8 deployed: the
    Proxmox host's plug pulled; Plex, Sonarr and the orchestrator move off its nodes by the
    tuned timings (as predicted, within the stated tolerance), the API stays up, the
    media stays, the Unraid worker is the one left; then the host is back and nothing lost."""
    code, printed, run_dir = _papermill(
        twin, "failover", out, "-p", "allow_disruption", "True", "-y", "hosts: [proxmox]"
    )
    checks = {
        c["id"]: c for c in json.loads((run_dir / "failover.checks.json").read_text())["checks"]
    }
    for cid in ("steady-before", "api", "media", "restored", "data-seaweedfs-files",
                "data-sonarr-config"):  # fmt: skip
        assert checks[f"host-proxmox-{cid}"]["status"] == "pass", (
            checks[f"host-proxmox-{cid}"],
            {k: (c["status"], c["detail"][:400]) for k, c in checks.items()},
        )
    moved = {k for k in checks if k.startswith("host-proxmox-moved-")}
    assert {"host-proxmox-moved-sonarr", "host-proxmox-moved-plex"} <= moved, checks
    # With the plan's 002 in one rack SeaweedFS may have put every copy of a volume on
    # Proxmox's three servers (it places at random): an app whose config is in such a
    # volume cannot start elsewhere until the host is back. The experiment names the
    # volumes and the files in them; anything else must move as predicted.
    stranded = checks["host-proxmox-data-stranded"]
    stuck = {cid.removeprefix("host-proxmox-moved-") for cid in moved
             if checks[cid]["status"] != "pass"}  # fmt: skip
    for app in stuck:
        assert f"{app}:" in stranded["detail"], (checks[f"host-proxmox-moved-{app}"], stranded)
    assert stranded["status"] in ("pass", "warn"), stranded
    # The notebook fails exactly when the plan's "moves to w2" did not hold.
    assert code == (1 if stuck else 0), printed
    # The k8s worker never ran (the plan's intel.com/gpu): not followed, and said so.
    assert "clusterplex-worker" in checks["host-proxmox-not-followed"]["detail"]
    assert checks["host-proxmox-gpu-workers"]["status"] == "pass", checks
    # Observed against predicted, from the same tuned inventory: every move within the
    # stated tolerance.
    rows = [r for r in checks["host-proxmox-planner"]["data"] if r["workload"] not in stuck]
    assert rows, checks["host-proxmox-planner"]
    for row in rows:
        assert row["verdict"] == "as predicted", rows
        if row["observed s"] is not None:  # an app that stays has no time to compare
            late = abs(row["observed s"] - row["predicted s"])
            assert late <= tolerance_s(row["predicted s"]), row
    # With 002 in one rack, a volume may have had every copy on Proxmox (the planner says
    # so): a warning naming it, never a pass that hides it.
    assert checks["host-proxmox-seaweedfs-readable"]["status"] in ("pass", "warn"), checks
    assert (run_dir / "failover.host-proxmox-swimlane.png").exists()
    samples = pd.read_csv(run_dir / "failover.host-proxmox.samples.csv")
    after = samples[samples["seconds"] >= 0]
    # A synthetic ClusterPlex job, back to back, done on the worker left.
    jobs = after[after["lane"] == "ClusterPlex job"]
    assert jobs["ok"].any(), samples["lane"].unique()
    assert jobs["detail"].str.contains("a test job done in").any(), jobs.tail()
    # Sonarr's API through its Service is down while its pod moves: the API server's proxy
    # answering in its place is not taken for Sonarr.
    if "sonarr" not in stuck:
        api_lane = after[after["lane"] == "sonarr API"]
        assert not api_lane["ok"].all(), api_lane.tail()
        assert api_lane["ok"].iloc[-1], api_lane.tail()


def _compose_down(twin: TwinLab) -> None:
    from halab.hosts import Hosts
    from halab.inventory import load_inventory
    from halab.phases.phase8 import COMPOSE_DIR
    from halab.target import load_target

    inv = load_inventory(twin.inventory)
    hosts = sorted({a.host for a in inv.apps if a.kind == "docker"})
    with Hosts(inv, load_target(twin.dir / "target.yaml")) as pool:
        for name in hosts:
            pool[name].run(f"cd {COMPOSE_DIR} 2>/dev/null && docker compose down || true")
