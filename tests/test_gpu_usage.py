"""Phase 8's GPU engine watch: intel_gpu_top's JSON read as it prints it, the watch over a
real sshd, and the verdict. There is no GPU here, so intel_gpu_top cannot run: the machine
that "has" one runs a stand-in printing samples in intel_gpu_top's own format, the way
it prints them (an array never closed, a sample a period); the other machine has no such
tool at all, as a host without intel-gpu-tools."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from halab.context import Context
from halab.evidence import Check
from halab.gpu_usage import EngineUse, GpuWatch, engine_class, parse_samples
from halab.hosts import SshHost
from halab.inventory import load_inventory
from halab.phases import gpu_busy
from halab.target import SshSettings, Target

import sshd

ROOT = Path(__file__).resolve().parents[1]


def _sample(ms: float, video: float, render: float, suffix: str = "/0") -> str:
    return (
        f'{{"period": {{"duration": {ms}, "unit": "ms"}}, "rc6": {{"value": 80.0, "unit": "%"}},'
        f' "engines": {{"Render/3D{suffix}": {{"busy": {render}, "sem": 0.0, "wait": 0.0,'
        f' "unit": "%"}}, "Blitter{suffix}": {{"busy": 0.0, "sem": 0.0, "wait": 0.0, "unit":'
        f' "%"}}, "Video{suffix}": {{"busy": {video}, "sem": 0.0, "wait": 0.0, "unit": "%"}},'
        f' "VideoEnhance{suffix}": {{"busy": 0.0, "sem": 0.0, "wait": 0.0, "unit": "%"}}}},'
        f' "clients": {{}}}}'
    )


def test_samples_parse_as_intel_gpu_top_prints_them() -> None:
    # The array opens, samples follow with commas, and the last one is cut off by the stop.
    text = "[\n" + _sample(25.3, 0, 0) + ",\n" + _sample(500.1, 37.5, 4.0) + ",\n"
    text += _sample(500.0, 12.0, 0.0).replace("Video/0", "Video/1") + ",\n"
    text += _sample(500.0, 99.0, 0.0)[:90]
    samples = parse_samples(text)
    assert len(samples) == 3
    assert samples[1] == {"Render/3D": 4.0, "Blitter": 0.0, "Video": 37.5, "VideoEnhance": 0.0}
    assert samples[2]["Video"] == 12.0  # a second video engine is still Video
    # Older releases print no instance suffix.
    assert parse_samples(_sample(500, 3.0, 1.0, suffix=""))[0]["Render/3D"] == 1.0
    assert [engine_class(n) for n in ("Render/3D/0", "Render/3D", "Video/1")] == [
        "Render/3D",
        "Render/3D",
        "Video",
    ]
    assert parse_samples("") == [] and parse_samples("[\n") == []


STAND_IN = """#!/bin/sh
# intel_gpu_top's -J output, as it prints it, with the Video engine busier each period.
echo "["
sleep 0.8  # as the real tool, its first sample comes a period (here a slow one) after it starts
i=0
while :; do
  [ $i -gt 0 ] && echo ","
  printf '%s\\n' '{"period": {"duration": 200.0, "unit": "ms"}, "engines": {"Render/3D/0": {"busy": 2.0, "sem": 0.0, "wait": 0.0, "unit": "%"}, "Video/0": {"busy": '"$((i * 10))"'.0, "sem": 0.0, "wait": 0.0, "unit": "%"}}}'
  i=$((i + 1))
  sleep 0.2
done
"""  # noqa: E501


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SshHost]]:
    if why := sshd.available():
        pytest.skip(why)
    tools = tmp_path_factory.mktemp("gpu-tools")
    (tools / "intel_gpu_top").write_text(STAND_IN)
    (tools / "intel_gpu_top").chmod(0o755)
    with_gpu = sshd.start(
        tmp_path_factory.mktemp("sshd-gpu"),
        "127.77.0.233",
        extra=f"SetEnv PATH={tools}:/usr/local/bin:/usr/bin:/bin\n",
    )
    without = sshd.start(tmp_path_factory.mktemp("sshd-plain"), "127.77.0.234")
    hosts = {}
    for name, server in (("gpu-node", with_gpu), ("plain-host", without)):
        settings = SshSettings(
            user=server.user,
            port=server.port,
            key_file=str(server.key_file),
            known_hosts=str(server.known_hosts),
            config_file="/nonexistent",
        )
        hosts[name] = SshHost(name, server.address, settings, connect_timeout=5)
    yield hosts
    for host in hosts.values():
        host.close()
    sshd.stop(with_gpu)
    sshd.stop(without)


def _stand_ins_running(tools_marker: str = "gpu-tools") -> list[str]:
    found = subprocess.run(["pgrep", "-af", tools_marker], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "intel_gpu_top" in line]


def test_the_watch_reads_each_machine_over_ssh_for_as_long_as_the_work(
    machines: dict[str, SshHost],
) -> None:
    watch = GpuWatch(machines, ["gpu-node", "plain-host"], period_ms=200)
    with watch:
        # The work starts once each machine has printed a sample (or cannot).
        assert watch.seen("gpu-node") >= 1
        time.sleep(1.5)  # the work the engines are watched during
        assert _stand_ins_running()  # so that its absence below means something
        inside = watch.seen("gpu-node")
    gpu, plain = watch.use["gpu-node"], watch.use["plain-host"]
    assert gpu.error == "", gpu
    # The stand-in's first sample (the start-up) is not counted; the rest are, and the
    # watch ended only after one more whole sample than the block had seen.
    assert gpu.samples >= 3 and gpu.samples + 1 > inside, (gpu, inside)
    assert gpu.busiest["Video"] >= 20 and gpu.busiest["Render/3D"] == 2.0, gpu
    assert gpu.transcoding == gpu.busiest["Video"]
    assert "Video" in gpu.said() and "samples" in gpu.said()
    # A host without intel-gpu-tools says so, with the package to install.
    assert plain.samples == 0
    assert "intel_gpu_top not found: install intel-gpu-tools" in plain.error, plain
    # The watch leaves nothing running on the machine once its block is over.
    deadline = time.monotonic() + 5
    while _stand_ins_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _stand_ins_running()


def _target(**cannot: str) -> Target:
    return Target(kind="cluster", cannot=cannot)


def _ctx(target: Target, tmp_path: Path) -> Context:
    path = ROOT / "params" / "cluster.yaml"
    return Context(load_inventory(path), path, target, tmp_path, False)


def _seen(*uses: EngineUse) -> GpuWatch:
    watch = GpuWatch({}, [u.machine for u in uses])
    watch.use = {u.machine: u for u in uses}
    return watch


def test_the_verdict_follows_the_engines(tmp_path: Path) -> None:
    ctx = _ctx(_target(), tmp_path)
    done = Check("plex-transcodes", "t", "pass", "2/2 played")
    busy = EngineUse("k3s-w3", 6, {"Video": 41.0, "Render/3D": 3.0})
    idle = EngineUse("unraid", 6, {"Video": 0.0, "Render/3D": 0.0})
    both = ["k3s-w3", "unraid"]
    check = gpu_busy.check(ctx, both, _seen(busy, idle), done)
    assert check.status == "warn" and "idle: unraid" in check.detail, check
    check = gpu_busy.check(ctx, ["k3s-w3"], _seen(busy), done)
    assert check.status == "pass" and "Video 41 %" in check.detail, check
    # Transcodes that ran with every engine idle ran in software: a failure, said so.
    check = gpu_busy.check(ctx, ["unraid"], _seen(idle), done)
    assert check.status == "fail" and "ran in software" in check.detail, check
    missing = EngineUse("unraid", error="intel_gpu_top not found: install intel-gpu-tools")
    check = gpu_busy.check(ctx, ["unraid"], _seen(missing), done)
    assert check.status == "fail" and "install intel-gpu-tools" in check.detail, check


def test_a_cluster_without_a_gpu_skips_naming_why(tmp_path: Path) -> None:
    ctx = _ctx(_target(gpu="there is no GPU on this machine"), tmp_path)
    assert gpu_busy.watch(ctx, {}, ["k3s-w3"]) is None
    done = Check("plex-transcodes", "t", "skip", "fell back")
    check = gpu_busy.check(ctx, ["k3s-w3"], None, done)
    assert check.status == "skip" and "there is no GPU on this machine" in check.detail
    assert not check.required
    nothing = gpu_busy.check(_ctx(_target(), tmp_path), [], None, done)
    assert nothing.status == "skip" and "FFMPEG_HWACCEL" in nothing.detail
