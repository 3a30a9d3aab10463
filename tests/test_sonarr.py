"""halab.sonarr (pyarr) against the twin's Sonarr stand-in, its state in a /config folder
of its own, a media folder it may write and one mounted read-only (as the plan's
read-only media export is), in a bubblewrap sandbox as the twin runs its pods."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clusterplex_peers import free_port
from halab.sonarr import Sonarr, SonarrError

from twinlab import eventually

BWRAP = shutil.which("bwrap")
pytestmark = pytest.mark.skipif(BWRAP is None, reason="bubblewrap is missing (make setup)")


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """/config, a media folder the app may write, and one it may only read."""
    for name in ("config", "tv", "library"):
        (tmp_path / name).mkdir()
    (tmp_path / "tv" / "Pilot Show").mkdir()
    (tmp_path / "library" / "Old Show").mkdir()
    return tmp_path


Start = Callable[..., tuple[subprocess.Popen[bytes], str]]


@pytest.fixture
def start_sonarr(place: Path) -> Iterator[Start]:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        config: Path | None = None, port: int | None = None
    ) -> tuple[subprocess.Popen[bytes], str]:
        port = port or free_port("127.0.0.1")
        library = str(place / "library")
        proc = subprocess.Popen(
            [
                str(BWRAP), "--dev-bind", "/", "/", "--ro-bind", library, library,
                "--die-with-parent", "--",
                sys.executable, "-m", "halab.twin.images.sonarr",
                "--listen", "127.0.0.1", "--config", str(config or place / "config"),
            ],
            env={
                "PATH": os.environ["PATH"],
                "HALAB_NET_GUARD": "loopback",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "SONARR__SERVER__PORT": str(port),
            },
            stdout=(place / "sonarr.log").open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(url) or proc.poll() is not None, 20, "Sonarr answers")
        assert proc.poll() is None, (place / "sonarr.log").read_text()
        return proc, url

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def api_key(config: Path) -> str:
    return ET.parse(config / "config.xml").getroot().findtext("ApiKey") or ""


def test_status_with_its_key_and_a_401_without(start_sonarr: Start, place: Path) -> None:
    _, url = start_sonarr()
    key = api_key(place / "config")
    assert len(key) == 32
    status = Sonarr(url, key).status()
    assert status["appName"] == "Sonarr" and status["appData"] == str(place / "config")
    assert "stand-in" in status["packageAuthor"]  # it never passes for the real one
    with pytest.raises(SonarrError, match="API key was refused") as refused:
        Sonarr(url, "0" * 32).status()
    assert key not in str(refused.value)


def test_root_folders_on_what_the_app_may_write_and_not(start_sonarr: Start, place: Path) -> None:
    _, url = start_sonarr()
    sonarr = Sonarr(url, api_key(place / "config"))
    added = sonarr.add_root_folder(str(place / "tv"))
    assert added.accessible and added.unmapped == ["Pilot Show"] and added.free_bytes > 0
    assert not list((place / "tv").glob("sonarr_write_test*")), "the probe file is removed"
    with pytest.raises(SonarrError, match="is not writable by user 'abc'") as refused:
        sonarr.add_root_folder(str(place / "library"))
    assert f"Folder '{place / 'library'}/'" in str(refused.value)
    with pytest.raises(SonarrError, match="Path does not exist"):
        sonarr.add_root_folder(str(place / "nowhere"))
    with pytest.raises(SonarrError, match="already configured as a root folder"):
        sonarr.add_root_folder(str(place / "tv"))
    assert [r.path for r in sonarr.root_folders()] == [str(place / "tv")]
    listing = sonarr.browse(str(place / "tv"))
    assert [d["name"] for d in listing["directories"]] == ["Pilot Show"]


def test_a_series_added_by_hand_and_its_state_kept_in_config(
    start_sonarr: Start, place: Path
) -> None:
    proc, url = start_sonarr()
    key = api_key(place / "config")
    sonarr = Sonarr(url, key)
    sonarr.add_root_folder(str(place / "tv"))
    series = sonarr.add_series(81189, "Pilot Show", str(place / "tv"))
    assert series["path"] == str(place / "tv" / "Pilot Show") and not series["monitored"]
    with pytest.raises(SonarrError, match="This series has already been added"):
        sonarr.add_series(81189, "Pilot Show", str(place / "tv"))
    assert sonarr.root_folders()[0].unmapped == [], "the show's folder is now the series'"
    # Looking a series up needs Sonarr's metadata service: offline, it fails as the real one.
    with pytest.raises(SonarrError, match="Unable to communicate with SkyHook"):
        sonarr.lookup("pilot")

    proc.terminate()
    proc.wait(10)
    _, url = start_sonarr()  # the same /config: the same key, the same series
    assert api_key(place / "config") == key
    assert [s["title"] for s in Sonarr(url, key).series()] == ["Pilot Show"]
    fresh = place / "config-new"
    fresh.mkdir()
    _, url = start_sonarr(fresh)  # a /config volume lost: nothing configured, a new key
    assert api_key(fresh) != key
    assert Sonarr(url, api_key(fresh)).series() == []


def test_an_unreachable_sonarr_is_an_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    with pytest.raises(SonarrError, match="not reachable") as failed:
        Sonarr(url, "k" * 32, timeout=2).status()
    assert url in str(failed.value)


def test_answering_waits_for_a_sonarr_starting_but_not_out_a_refused_key(
    start_sonarr: Start, place: Path
) -> None:
    proc, url = start_sonarr()  # once, for its key in config.xml
    key = api_key(place / "config")
    proc.terminate()
    proc.wait(10)
    port = int(url.rsplit(":", 1)[1])
    waited: list[object] = []

    def wait() -> None:
        try:
            waited.append(Sonarr(url, key, timeout=2).answering(60, every=0.2))
        except SonarrError as exc:
            waited.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        # Not reachable while it is down: waited out, not raised.
        eventually(lambda: not _answers(url), 10, "the stand-in is down")
        assert waiter.is_alive()
        start_sonarr(port=port)
    finally:
        waiter.join(90)
    assert len(waited) == 1 and isinstance(waited[0], dict), waited
    assert waited[0]["appName"] == "Sonarr"
    # A refused key does not pass by itself: raised at once, not as "not answering".
    with pytest.raises(SonarrError, match="API key was refused") as refused:
        Sonarr(url, "0" * 32).answering(60)
    assert not refused.value.passing
