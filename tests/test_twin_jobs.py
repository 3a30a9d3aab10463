"""The transcode benchmark with Job workers: each command a Kubernetes Job pinned to a
node of the twin, progress read from the pod log (debian:12 runs this machine's ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from halab.inventory import load_inventory
from halab.kube import api_client
from halab.target import load_target
from halab.transcode.bench import BenchConfig, run_bench
from halab.transcode.jobs import LABEL
from halab.transcode.runners import TranscodeError, have_local_ffmpeg
from halab.transcode.workers import runners_for

from twinlab import TwinLab, eventually

pytestmark = [
    pytest.mark.twin,
    pytest.mark.skipif(not have_local_ffmpeg(), reason="ffmpeg is not installed"),
]


def config(media_dir: Path) -> BenchConfig:
    return BenchConfig(
        profiles=["1080p-h264-to-720p"],
        encoders=["libx264", "h264_vaapi"],
        warmup_s=0.5,
        window_s=2.0,
        max_streams=2,
        clip_seconds=2.0,
        clip_size=(320, 180),
        media_dir=media_dir,
    )


def test_job_worker_measures_on_its_node(twin: TwinLab, tmp_path: Path) -> None:
    target = load_target(twin.dir / "target.yaml")
    inventory = load_inventory(twin.inventory)
    runners = runners_for(["job:k3s-w1"], inventory, target, job_image="debian:12")
    try:
        doc = run_bench(runners, config(tmp_path), progress=lambda _: None)
    finally:
        for runner in runners:
            runner.close()
    (worker,) = doc["workers"]
    assert worker["name"] == "job:k3s-w1" and worker["status"] == "ok", worker["reason"]
    assert worker["machine"]["host"] == "k3s-w1" and worker["machine"]["image"] == "debian:12"
    x264 = next(r for r in worker["results"] if r["encoder"] == "libx264")
    assert x264["status"] == "measured" and x264["max_realtime_streams"] >= 1
    first = x264["probes"][0]["per_stream"][0]
    # Progress came from the pod log: samples with frames, and a steady speed from them.
    assert len(first["samples"]) >= 3 and first["frames"] > 0 and first["speed"] > 0
    vaapi = next(r for r in worker["results"] if r["encoder"] == "h264_vaapi")
    assert vaapi["status"] == "skipped" and vaapi["reason"]  # no /dev/dri on this machine
    # Every Job and pod of the run is gone.
    api = api_client(target)
    pods = client.CoreV1Api(api).list_namespaced_pod("halab-bench", label_selector=LABEL).items
    assert [p.metadata.name for p in pods if not p.metadata.deletion_timestamp] == []


def test_a_job_worker_on_an_unknown_node_is_refused(twin: TwinLab) -> None:
    from halab.errors import InputError

    target = load_target(twin.dir / "target.yaml")
    with pytest.raises(InputError) as refused:
        runners_for(["job:k3s-w9"], load_inventory(twin.inventory), target)
    assert "job:k3s-w1" in str(refused.value)


def test_own_files_need_the_claim(twin: TwinLab, tmp_path: Path) -> None:
    target = load_target(twin.dir / "target.yaml")
    (runner,) = runners_for(["job:k3s-w2"], load_inventory(twin.inventory), target, "debian:12")
    with pytest.raises(TranscodeError) as refused:
        runner.stage(tmp_path / "holiday.mkv")
    assert "halab-bench-media" in str(refused.value)


def test_kill_tagged_stops_a_streaming_job(twin: TwinLab) -> None:
    import subprocess

    from halab.transcode.harness import new_tag

    target = load_target(twin.dir / "target.yaml")
    (runner,) = runners_for(["job:k3s-w2"], load_inventory(twin.inventory), target, "debian:12")
    tag = new_tag()
    # The tag rides in the command line, as in every stream the harness starts.
    stream = runner.start(["sh", "-c", f"echo start; exec sleep 613 # -metadata comment={tag}"])

    def sleeping() -> bool:
        ps = subprocess.run(["pgrep", "-f", "sleep 613"], capture_output=True, text=True)
        return ps.returncode == 0

    try:
        eventually(lambda: any(line == "start" for _, line in stream.lines), 60, "the job's output")
        assert sleeping()
        runner.kill_tagged(tag)
        api = api_client(target)
        pods = client.CoreV1Api(api).list_namespaced_pod(
            "halab-bench", label_selector=f"{LABEL}={tag}"
        )
        assert pods.items == []
        # And its process is gone from this machine: the kubelet stopped it.
        eventually(lambda: not sleeping(), 20, "the pod's process ends")
    finally:
        stream.stop()
        runner.close()
