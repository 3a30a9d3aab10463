"""halab.plex (python-plexapi) against the twin's Plex stand-in, run as a real process with
its /config in a folder of its own and the twin's seeded media; with ClusterPlex's PMS
dockermod, its transcodes go through the orchestrator and worker stand-ins."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plexapi.exceptions import Unauthorized
from plexapi.server import PlexServer

from clusterplex_peers import FFMPEG, TRANSCODER, free_port
from halab.phases import plex_transcodes
from halab.plex import Plex, PlexError, identity
from halab.twin.media import seed

from twinlab import eventually

pytestmark = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is missing (make setup)")
PMS_HOST = "127.0.91.3"
PMS_ARGV = [sys.executable, "-m", "halab.twin.images.plex.server"]
PREFS = "Library/Application Support/Plex Media Server/Preferences.xml"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The twin's seeded library (two films, two episodes)."""
    root = tmp_path_factory.mktemp("media")
    seed(root / "media", root / "cache", root / "manifest.json")
    return root / "media"


class Pms:
    def __init__(self, config: Path, log: Path, **env: str) -> None:
        self.config, self.log = config, log
        port = free_port(PMS_HOST)
        self.url = f"http://{PMS_HOST}:{port}"
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [*PMS_ARGV, "--listen", PMS_HOST, "--config", str(config)],
            env={
                "PATH": os.environ["PATH"],
                "HALAB_NET_GUARD": "loopback",
                "PYTHONUNBUFFERED": "1",
                "HOSTNAME": "plex-test",
                "PMS_PORT": str(port),
                **env,
            },
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        eventually(lambda: "listening on" in self.text(), 20, "PMS listens")

    @property
    def token(self) -> str:
        return str(ET.parse(self.config / PREFS).getroot().get("PlexOnlineToken"))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._out.close()


@pytest.fixture
def start_pms(tmp_path: Path) -> Iterator[Callable[..., Pms]]:
    started: list[Pms] = []

    def start(config: Path | None = None, **env: str) -> Pms:
        folder = config or tmp_path / "config"
        folder.mkdir(exist_ok=True)
        pms = Pms(folder, tmp_path / f"pms-{len(started)}.log", **env)
        started.append(pms)
        return pms

    yield start
    for pms in started:
        pms.stop()


def ffprobe_codecs(path: Path) -> set[str]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return {line for line in probe.stdout.split() if line}


def libraries(plex: Plex, media: Path) -> None:
    plex.ensure_section("Movies", "movie", str(media / "Movies"))
    plex.ensure_section("TV Shows", "show", str(media / "TV Shows"))


def test_plexapi_reads_the_server_its_library_and_settings(
    start_pms: Callable[..., Pms], media: Path, tmp_path: Path
) -> None:
    pms = start_pms()
    said = identity(pms.url)  # no token needed, as Plex answers /identity
    assert said["claimed"] == "1" and said["machineIdentifier"]
    with pytest.raises(Unauthorized):
        PlexServer(pms.url, "not-the-token")
    plex = Plex(pms.url, pms.token)
    libraries(plex, media)
    _, added = plex.ensure_section("Movies", "movie", str(media / "Movies"))
    assert not added  # found, not added twice
    server = PlexServer(pms.url, pms.token)
    assert server.machineIdentifier == said["machineIdentifier"]
    films = server.library.section("Movies").all()
    assert {(f.title, f.year) for f in films} == {("Test Pattern", 2024), ("Colour Bars", 2023)}
    show = server.library.section("TV Shows").get("Signal Check")
    episodes = show.episodes()
    assert [e.seasonEpisode for e in episodes] == ["s01e01", "s01e02"]
    part = episodes[1].media[0].parts[0]
    assert part.file == str(media / "TV Shows/Signal Check/Season 01/Signal Check - S01E02.mkv")
    assert episodes[1].media[0].videoCodec == "hevc" and episodes[1].duration > 1000
    # A setting changed through the API is Plex's Preferences.xml on /config...
    plex.set_setting("TranscoderTempDirectory", str(tmp_path / "transcode"))
    assert plex.setting("TranscoderTempDirectory") == str(tmp_path / "transcode")
    prefs = ET.parse(pms.config / PREFS).getroot()
    assert prefs.get("TranscoderTempDirectory") == str(tmp_path / "transcode")
    # ...and the library and the token live there too: a restart on the same volume keeps
    # them, a fresh volume starts empty with a token of its own.
    token = pms.token
    pms.stop()
    again = start_pms(pms.config)
    assert again.token == token
    assert len(Plex(again.url, token).playable()) == 4
    again.stop()
    fresh = start_pms(tmp_path / "other-config")
    assert fresh.token != token and Plex(fresh.url, fresh.token).sections() == []


def test_a_transcode_through_plex_gives_a_playable_segment(
    start_pms: Callable[..., Pms], media: Path, tmp_path: Path
) -> None:
    pms = start_pms()  # plain Plex: no dockermod, its own transcoder
    plex = Plex(pms.url, pms.token)
    libraries(plex, media)
    item = next(i for i in plex.playable() if i.title == "Colour Bars")  # HEVC in
    run = plex.transcode(item, height=180, bitrate_kbps=300, keep_first=tmp_path / "first.ts")
    assert run.error == "" and run.complete and run.segments >= 1
    assert run.speed is not None and run.speed > 0 and run.progress == 100.0
    assert run.first_segment is not None
    assert ffprobe_codecs(run.first_segment) == {"h264", "aac"}
    # Stopped by the player, the session is gone, and so is its directory.
    assert plex.transcode_sessions() == []
    assert not list((pms.config / "Library").rglob("plex-transcode-*"))


def test_with_the_dockermod_the_transcode_runs_on_a_worker(
    start_pms: Callable[..., Pms],
    start_orchestrator: Callable[..., tuple[Any, str]],
    start_worker: Callable[..., Any],
    media: Path,
    tmp_path: Path,
) -> None:
    orchestrator, url = start_orchestrator()
    worker = start_worker(url, "w-soft", **TRANSCODER)
    worker.wait_line("Worker connected on socket")
    shared = tmp_path / "transcode"
    pms = start_pms(
        DOCKER_MODS="ghcr.io/pabloromeo/clusterplex_dockermod:latest",
        ORCHESTRATOR_URL=url,
        PMS_IP=PMS_HOST,
        TRANSCODE_OPERATING_MODE="remote",
    )
    plex = Plex(pms.url, pms.token)
    libraries(plex, media)
    plex.set_setting("TranscoderTempDirectory", str(shared))
    item = next(i for i in plex.playable() if i.title == "Test Pattern")
    run = plex.transcode(item, height=180, bitrate_kbps=300, keep_first=tmp_path / "first.ts")
    assert run.error == "" and run.complete, pms.text()
    assert run.first_segment is not None and ffprobe_codecs(run.first_segment) == {"h264", "aac"}
    # Logged once the worker's job response reaches the shim, which may be after the
    # player has the last segment.
    eventually(
        lambda: "Remote Transcoding was successful" in pms.text(), 10, "the remote run's end"
    )
    orchestrator.wait_line("Forwarding work request to")
    # The worker ran ffmpeg in the session's directory on the shared volume (the segment
    # came from there), and its progress lines are in the worker's log.
    assert "Completed transcode" in worker.text()
    # What phase 8's transcode report reads of it: the task's final fps and speed.
    worker.wait_line("Transcoder close")
    report = plex_transcodes.report({"w-soft": worker.text()})
    row = report.iloc[0]
    assert row["transcodes"] == 1 and row["median speed (x)"] > 0 and row["median fps"] > 0


def test_remote_fails_without_a_worker_and_both_falls_back(
    start_pms: Callable[..., Pms],
    start_orchestrator: Callable[..., tuple[Any, str]],
    media: Path,
    tmp_path: Path,
) -> None:
    _, url = start_orchestrator()  # no worker registered: "No worker available"
    mod = {"DOCKER_MODS": "ghcr.io/pabloromeo/clusterplex_dockermod", "ORCHESTRATOR_URL": url}
    pms = start_pms(PMS_IP=PMS_HOST, TRANSCODE_OPERATING_MODE="remote", **mod)
    plex = Plex(pms.url, pms.token)
    libraries(plex, media)
    item = plex.playable()[0]
    run = plex.transcode(item, height=180, bitrate_kbps=300, timeout=30)
    assert run.segments == 0 and run.error
    eventually(
        lambda: (
            "Error transcoding and local transcode is disabled: TRANSCODE_OPERATING_MODE=remote"
            in pms.text()
        ),
        10,
        "the shim's refusal",
    )
    pms.stop()
    pms = start_pms(pms.config, PMS_IP=PMS_HOST, TRANSCODE_OPERATING_MODE="both", **mod)
    plex = Plex(pms.url, pms.token)
    run = plex.transcode(plex.playable()[0], height=180, bitrate_kbps=300)
    assert run.error == "" and run.complete
    assert "Distributed transcoder failed, calling local" in pms.text()
    # PMS logs the local run's end after the last segment is served: look a while.
    eventually(lambda: "Completed local transcode" in pms.text(), 10, "the local run's end")


def test_the_shim_refuses_without_pms_ip_or_service(
    start_pms: Callable[..., Pms], start_orchestrator: Callable[..., tuple[Any, str]], media: Path
) -> None:
    _, url = start_orchestrator()
    pms = start_pms(DOCKER_MODS="ghcr.io/pabloromeo/clusterplex_dockermod", ORCHESTRATOR_URL=url)
    plex = Plex(pms.url, pms.token)
    libraries(plex, media)
    run = plex.transcode(plex.playable()[0], height=180, bitrate_kbps=300, timeout=20)
    assert run.segments == 0 and run.error
    assert "neither PMS_SERVICE nor PMS_IP is set" in pms.text()


def test_an_unreachable_plex_is_an_error_naming_it() -> None:
    url = f"http://{PMS_HOST}:{free_port(PMS_HOST)}"
    with pytest.raises(PlexError, match=f"Plex at {url}: no answer"):
        identity(url)


def test_capacity_through_plex_doubles_until_it_falls_behind(
    start_pms: Callable[..., Pms], media: Path
) -> None:
    from halab.transcode.through_plex import capacity, pick

    pms = start_pms()
    plex = Plex(pms.url, pms.token)
    libraries(plex, media)
    with pytest.raises(PlexError, match=r"no item titled 'Nope' \(there are: .*Test Pattern"):
        pick(plex, "Nope")
    lines: list[str] = []
    doc = capacity(
        plex,
        pick(plex, "test pattern"),
        most=2,
        height=180,
        bitrate_kbps=300,
        progress=lines.append,
    )
    assert [level["transcodes"] for level in doc["levels"]] == [1, 2]
    assert all(len(level["speeds"]) == level["transcodes"] for level in doc["levels"])
    assert doc["realtime_transcodes"] == 2  # 2 s clips at 180p keep up on this machine
    assert lines[0].startswith("1 at once: median ")
