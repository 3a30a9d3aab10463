"""The benchmark with real ffmpeg on tiny clips: locally, over real SSH, and interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from halab.errors import InputError
from halab.hosts import HostError
from halab.inventory import load_inventory
from halab.target import SshSettings, Target
from halab.transcode.bench import BenchConfig, run_bench
from halab.transcode.detect import detect
from halab.transcode.harness import measure, new_tag, stream_command
from halab.transcode.media import ensure_sample, probe_media
from halab.transcode.profiles import PROFILES, SAMPLES
from halab.transcode.results import load_result, streams_frame, summary_frame
from halab.transcode.runners import LocalRunner, TranscodeError, have_local_ffmpeg, require_ffmpeg
from halab.transcode.workers import runners_for

import sshd
from conftest import CLUSTER_YAML, ROOT
from helpers import halab_cli, papermill

pytestmark = pytest.mark.skipif(
    not have_local_ffmpeg(), reason="ffmpeg is not installed (apt-get install ffmpeg)"
)

TINY = (320, 180)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def tiny(media_dir: Path, **overrides: object) -> BenchConfig:
    settings: dict[str, object] = {
        "profiles": ["1080p-h264-to-720p"],
        "encoders": ["libx264", "h264_vaapi"],
        "warmup_s": 0.5,
        "window_s": 1.5,
        "max_streams": 2,
        "clip_seconds": 2.0,
        "clip_size": TINY,
        "media_dir": media_dir,
    }
    settings.update(overrides)
    return BenchConfig(**settings)  # type: ignore[arg-type]


def ffmpeg_with(tag: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "ffmpeg" in line and "pgrep" not in line]


def test_clips_are_made_once_and_named_by_content(media_dir: Path) -> None:
    spec = SAMPLES["1080p-hevc"].scaled(*TINY)
    first = ensure_sample(spec, 1.0, media_dir)
    stamp = first.stat().st_mtime_ns
    assert ensure_sample(spec, 1.0, media_dir) == first
    assert first.stat().st_mtime_ns == stamp
    info = probe_media(first)
    assert info["codec"] == "hevc" and info["width"] == 320 and info["height"] == 180
    assert ensure_sample(spec, 1.5, media_dir) != first  # another clip, another name


def test_ten_bit_clip(media_dir: Path) -> None:
    clip = ensure_sample(SAMPLES["2160p-hevc10"].scaled(*TINY), 1.0, media_dir)
    assert probe_media(clip)["pix_fmt"] == "yuv420p10le"


def test_encoder_detection_says_why() -> None:
    found = detect(LocalRunner(), ["libx264", "h264_vaapi", "h264_nvenc"])
    assert found["libx264"].available and found["libx264"].reason == ""
    if not os.path.exists("/dev/dri"):
        assert not found["h264_vaapi"].available and found["h264_vaapi"].reason
        assert "0x" not in found["h264_vaapi"].reason  # ffmpeg's addresses are dropped
    for status in found.values():  # a reason exactly when an encoder is unavailable
        assert status.available == (status.reason == "")


def test_one_probe_measures_and_cleans_up(media_dir: Path) -> None:
    clip = ensure_sample(SAMPLES["1080p-h264"].scaled(*TINY), 2.0, media_dir)
    tag = new_tag()
    argv = stream_command(str(clip), 180, PROFILES["1080p-h264-to-720p"], "libx264", tag)
    probe = measure(LocalRunner(), argv, 2, warmup_s=0.5, window_s=1.5, tag=tag)
    assert len(probe.measures) == 2
    for m in probe.measures:
        assert m.error == "" and m.steady is not None
        assert m.steady.samples >= 3 and m.steady.speed > 0 and m.steady.frames > 0
    assert 0 < probe.cpu_percent <= 100
    assert ffmpeg_with(tag) == []


def test_local_bench_result_and_report(media_dir: Path, tmp_path: Path) -> None:
    doc = run_bench([LocalRunner()], tiny(media_dir), progress=lambda _: None)
    (worker,) = doc["workers"]
    assert worker["status"] == "ok" and worker["machine"]["ffmpeg"].startswith("ffmpeg")
    rows = {r["encoder"]: r for r in worker["results"]}
    assert rows["libx264"]["status"] == "measured"
    assert rows["libx264"]["max_realtime_streams"] >= 1  # 320x180 is light on any machine
    if not os.path.exists("/dev/dri"):
        assert rows["h264_vaapi"]["status"] == "skipped" and rows["h264_vaapi"]["reason"]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc))
    loaded = load_result(path)
    assert set(summary_frame(loaded).encoder) == {"libx264", "h264_vaapi"}
    assert not streams_frame(loaded).empty
    out = halab_cli("bench", "report", str(path), "--out", str(tmp_path / "report.html"))
    assert out.returncode == 0, out.stderr
    assert_plots_render(tmp_path / "report.html", expected=3)
    compared = halab_cli(
        "bench", "compare", str(path), str(path), "--out", str(tmp_path / "cmp.html")
    )
    assert compared.returncode == 0, compared.stderr
    assert "community" in (tmp_path / "cmp.html").read_text()


def assert_plots_render(page: Path, expected: int) -> None:
    """Open the page in headless Chromium and count the images that really decoded."""
    chromium = next(
        (
            c
            for c in ("chromium", "chromium-browser")
            if subprocess.run(["which", c], capture_output=True).returncode == 0
        ),
        None,
    )
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    probe = page.with_name("probe.html")
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>addEventListener('load',()=>{const n=[...document.images]"
            ".filter(i=>i.complete&&i.naturalWidth>100).length;"
            "document.body.insertAdjacentHTML('beforeend','<p id=decoded>'+n+'</p>')})</script>"
            "</body>",
        )
    )
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={page.parent / 'chrome'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'id="decoded">' in out.stdout, out.stderr[-1000:]
    decoded = int(out.stdout.split('id="decoded">')[1].split("<")[0])
    assert decoded >= expected


def test_unreadable_media_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "movie.mkv"
    bad.write_bytes(b"\x1a\x45\xdf\xa3 not really a video")
    with pytest.raises(InputError, match=r"movie\.mkv is not a readable video"):
        probe_media(bad)


def test_no_ffmpeg_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TranscodeError, match="apt-get install ffmpeg"):
        require_ffmpeg(LocalRunner())


def test_an_unreachable_worker_is_a_failed_row(media_dir: Path) -> None:
    target = Target(
        kind="cluster",
        ssh=SshSettings(port=9, known_hosts="/nonexistent"),
        addresses={"explicit": {"192.168.1.22": "127.77.0.250"}},
    )
    runners = runners_for(["k3s-w2", "local"], load_inventory(CLUSTER_YAML), target)
    doc = run_bench(
        runners, tiny(media_dir, encoders=["libx264"], max_streams=1), progress=lambda _: None
    )
    gone, here = doc["workers"]
    assert gone["status"] == "failed" and "127.77.0.250" in gone["reason"]
    assert here["status"] == "ok" and here["results"][0]["status"] == "measured"


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Sshd]:
    why = sshd.available()
    if why:
        pytest.skip(why)
    server = sshd.start(tmp_path_factory.mktemp("sshd"), "127.77.0.13")
    yield server
    sshd.stop(server)


def ssh_target(server: sshd.Sshd, known_hosts: Path) -> Target:
    """A target that maps 192.168.1.x to 127.77.0.x and logs in with the test's key."""
    settings = SshSettings(
        user=server.user,
        port=server.port,
        key_file=str(server.key_file),
        known_hosts=str(known_hosts),
        config_file="/nonexistent",
    )
    return Target(kind="cluster", ssh=settings, addresses={"last_octet_on": "127.77.0.0/24"})


def test_ssh_worker_through_inventory_and_target(ssh_server: sshd.Sshd, media_dir: Path) -> None:
    target = ssh_target(ssh_server, ssh_server.known_hosts)
    runners = runners_for(["k3s-w3", "local"], load_inventory(CLUSTER_YAML), target)
    try:
        doc = run_bench(
            runners, tiny(media_dir, encoders=["libx264"]), progress=lambda _: None, together=True
        )
    finally:
        for r in runners:
            r.close()
    ssh_worker, _local = doc["workers"]
    assert ssh_worker["name"] == "k3s-w3" and ssh_worker["status"] == "ok", ssh_worker["reason"]
    assert ssh_worker["results"][0]["status"] == "measured"
    assert doc["mode"] == "together"
    (total,) = doc["cluster"]
    assert set(total["per_worker"]) == {"k3s-w3", "local"}
    assert ffmpeg_with("halab-bench-") == []


def test_ssh_refuses_an_unknown_host_key(ssh_server: sshd.Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = ssh_target(ssh_server, empty)
    (runner,) = runners_for(["k3s-w3"], load_inventory(CLUSTER_YAML), target)
    with pytest.raises(HostError, match="known_hosts"):
        runner.run(["true"])


@pytest.mark.parametrize(
    "mode", [[], ["--workers", "local,local", "--together"]], ids=["one-worker", "together"]
)
def test_ctrl_c_leaves_no_ffmpeg_behind(tmp_path: Path, mode: list[str]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "halab.cli",
            "bench",
            "--encoders",
            "libx264",
            "--clip-size",
            "320x180",
            "--clip-seconds",
            "2",
            "--window",
            "30",
            "--warmup",
            "1",
            "--max-streams",
            "2",
            "--out",
            str(tmp_path / "r.json"),
            *mode,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ffmpeg_with("halab-bench-"):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert ffmpeg_with("halab-bench-"), "the benchmark never started ffmpeg"
        # At once: the interrupt lands while the other worker may still be starting up.
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err.decode()[-2000:]
        assert ffmpeg_with("halab-bench-") == []
    finally:
        proc.kill()
        subprocess.run(["pkill", "-KILL", "-f", "halab-bench-"], check=False)


def test_bench_notebook_through_papermill(tmp_path: Path) -> None:
    out = papermill(
        "notebooks/transcode-bench.ipynb",
        tmp_path / "tb.ipynb",
        "-p",
        "run_dir",
        str(tmp_path),
        "-p",
        "clip_size",
        "320x180",
        "-p",
        "window_s",
        "1.5",
        "-p",
        "warmup_s",
        "0.5",
        "-p",
        "max_streams",
        "2",
        "-p",
        "clip_seconds",
        "2",
        "-y",
        "encoders: [libx264, h264_nvenc]",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    checks = json.loads((tmp_path / "transcode-bench.checks.json").read_text())
    assert checks["passed"] and len(checks["figures"]) == 3
    assert (tmp_path / "transcode-bench.report.html").exists()
    assert (tmp_path / "transcode-bench-csv" / "summary.csv").exists()


def test_a_users_own_file_replaces_the_clip(media_dir: Path, tmp_path: Path) -> None:
    own = tmp_path / "my movie.mkv"
    own.write_bytes(
        ensure_sample(SAMPLES["1080p-hevc"].scaled(256, 144), 2.0, media_dir).read_bytes()
    )
    config = tiny(
        media_dir,
        profiles=["1080p-hevc-to-720p"],
        encoders=["libx264"],
        max_streams=1,
        media={"1080p-hevc": own},
    )
    doc = run_bench([LocalRunner()], config, progress=lambda _: None)
    (row,) = doc["workers"][0]["results"]
    assert row["status"] == "measured" and doc["config"]["media"] == {"1080p-hevc": str(own)}


def test_a_corrupt_file_is_refused_before_any_run(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mkv"
    bad.write_bytes(b"\x00" * 1000)
    out = halab_cli("bench", "--media", f"1080p-hevc={bad}", "--encoders", "libx264")
    assert out.returncode == 2
    assert "broken.mkv is not a readable video" in out.stderr
    assert "Traceback" not in out.stderr
