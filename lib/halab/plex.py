"""Plex Media Server through python-plexapi, the library Plex users script with: identity
(no token), library sections, settings, and a transcode of a library item started through
the universal transcoder and driven as a player drives it (the playlist, then every
segment), its session's speed and progress read from `/transcode/sessions`.

The token is the server owner's (`X-Plex-Token`); it is never logged or put in an error.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from halab.errors import StepError

VARIANT = re.compile(r"^(?!#)(\S+\.m3u8)\s*$", re.MULTILINE)
SEGMENT = re.compile(r"^(?!#)(\S+\.ts)\s*$", re.MULTILINE)
CLIENT_ID = "halab-phase8"


class PlexError(StepError):
    def __init__(self, url: str, what: str) -> None:
        super().__init__(f"Plex at {url}: {what}")
        self.url = url


@dataclass
class TranscodeRun:
    """One transcode as a player saw it, and what Plex said of it while it ran."""

    session: str
    title: str
    seconds: float = 0.0
    segments: int = 0
    bytes: int = 0
    speed: float | None = None  # the session's last `speed` (x realtime)
    progress: float | None = None
    complete: bool = False
    error: str = ""
    first_segment: Path | None = None


def identity(url: str, timeout: float = 10.0) -> dict[str, str]:
    """`/identity`: what Plex answers without a token (machineIdentifier, version, claimed)."""
    try:
        answer = requests.get(f"{url}/identity", timeout=timeout)
    except requests.RequestException as exc:
        raise PlexError(url, f"no answer ({type(exc).__name__})") from None
    if answer.status_code != 200:
        raise PlexError(url, f"/identity answered {answer.status_code}")
    try:
        root = ET.fromstring(answer.content)
    except ET.ParseError:
        raise PlexError(url, "/identity is not Plex's XML") from None
    if root.tag != "MediaContainer" or not root.get("machineIdentifier"):
        raise PlexError(url, f"/identity did not answer as Plex does ({root.tag})")
    return dict(root.attrib)


class Plex:
    def __init__(self, url: str, token: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._server: Any = None

    @property
    def server(self) -> Any:
        if self._server is None:
            from plexapi.exceptions import PlexApiException
            from plexapi.server import PlexServer

            try:
                self._server = PlexServer(  # type: ignore[no-untyped-call]
                    self.url, self._token, timeout=self.timeout
                )
            except PlexApiException as exc:
                raise PlexError(self.url, _said(exc, self._token)) from None
            except requests.RequestException as exc:
                raise PlexError(self.url, f"no answer ({type(exc).__name__})") from None
        return self._server

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from plexapi.exceptions import PlexApiException

        try:
            return fn(*args, **kwargs)
        except PlexApiException as exc:
            raise PlexError(self.url, f"{what}: {_said(exc, self._token)}") from None
        except requests.RequestException as exc:
            raise PlexError(self.url, f"{what}: no answer ({type(exc).__name__})") from None

    # -- library ----------------------------------------------------------------------

    def sections(self) -> list[Any]:
        return list(self._call("list the libraries", self.server.library.sections))

    def ensure_section(self, title: str, kind: str, folder: str) -> tuple[Any, bool]:
        """The library of that kind on that folder, added (and scanned) if there is none;
        (section, whether it was added)."""
        for section in self.sections():
            if section.type == kind and folder in section.locations:
                return section, False
        agents = {
            "movie": ("tv.plex.agents.movie", "Plex Movie"),
            "show": ("tv.plex.agents.series", "Plex TV Series"),
        }
        agent, scanner = agents[kind]
        self._call(
            f"add the library {title}",
            self.server.library.add,
            name=title,
            type=kind,
            agent=agent,
            scanner=scanner,
            location=folder,
            language="en-US",
        )
        self._server = None  # plexapi caches the library's sections: read them afresh
        for section in self.sections():
            if section.type == kind and folder in section.locations:
                return section, True
        raise PlexError(self.url, f"the library {title} on {folder} was added but is not listed")

    def folders(self, path: str) -> list[str]:
        """The folders Plex sees under `path` on its own disk (its folder browser)."""
        found = self._call(f"browse {path}", self.server.browse, path, includeFiles=False)
        return [str(p.path) for p in found]

    def playable(self) -> list[Any]:
        """Every movie and episode, in library order."""
        items: list[Any] = []
        for section in self.sections():
            if section.type == "movie":
                items += self._call(f"list {section.title}", section.all)
            elif section.type == "show":
                items += self._call(f"list {section.title}", section.search, libtype="episode")
        return items

    # -- settings ---------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        settings = self._call("read the settings", lambda: self.server.settings)
        try:
            return str(settings.get(key).value)
        except Exception:  # plexapi raises NotFound for a setting the server lacks
            return None

    def set_setting(self, key: str, value: str) -> None:
        self._call(
            f"set {key}",
            self.server.query,
            "/:/prefs",
            method=self.server._session.put,
            params={key: value},
        )
        self._server = None  # and its settings

    # -- transcoding ------------------------------------------------------------------

    def transcode_sessions(self) -> list[Any]:
        return list(self._call("list the transcode sessions", self.server.transcodeSessions))

    def transcode(
        self,
        item: Any,
        height: int = 720,
        bitrate_kbps: int = 2000,
        timeout: float = 120.0,
        keep_first: Path | None = None,
    ) -> TranscodeRun:
        """Transcode `item` as a player would: start it, read the playlist and every
        segment until the playlist ends, then stop the session."""
        session = str(uuid.uuid4())
        run = TranscodeRun(session, str(getattr(item, "title", item)))
        width = (height * 16 // 9) // 2 * 2
        url = item.getStreamURL(
            videoResolution=f"{width}x{height}",
            maxVideoBitrate=bitrate_kbps,
            protocol="hls",
            directPlay=0,
            directStream=0,
            session=session,
            **{"X-Plex-Client-Identifier": CLIENT_ID, "X-Plex-Product": "halab"},
        )
        started = time.monotonic()
        http = requests.Session()
        http.headers["X-Plex-Token"] = self._token
        try:
            master = self._get(http, url)
            found = VARIANT.search(master.text)
            if not found:
                raise PlexError(self.url, "the transcoder's playlist names no stream")
            variant = urljoin(url.split("?", 1)[0], found.group(1))
            fetched: set[str] = set()
            while time.monotonic() - started < timeout:
                playlist = self._get(http, variant).text
                for name in SEGMENT.findall(playlist):
                    if name in fetched:
                        continue
                    body = self._get(http, urljoin(variant, name)).content
                    fetched.add(name)
                    run.segments += 1
                    run.bytes += len(body)
                    if keep_first is not None and run.first_segment is None:
                        keep_first.write_bytes(body)
                        run.first_segment = keep_first
                self._sample(run)
                if "#EXT-X-ENDLIST" in playlist:
                    break
                time.sleep(0.5)
            else:
                run.error = f"the playlist did not end within {timeout:g} s"
            self._sample(run)
        except PlexError as exc:
            run.error = str(exc)
        finally:
            run.seconds = time.monotonic() - started
            stop = f"{self.url}/video/:/transcode/universal/stop"
            # Should the stop not get through, the session ends once nobody reads it.
            with contextlib.suppress(requests.RequestException):
                http.get(stop, params={"session": session}, timeout=self.timeout)
        return run

    def _get(self, http: requests.Session, url: str) -> requests.Response:
        try:
            answer = http.get(url, timeout=self.timeout + 30)
        except requests.RequestException as exc:
            raise PlexError(self.url, f"no answer ({type(exc).__name__})") from None
        if answer.status_code != 200:
            path = url.split("?", 1)[0].removeprefix(self.url)
            raise PlexError(self.url, f"{path} answered {answer.status_code}")
        return answer

    def _sample(self, run: TranscodeRun) -> None:
        for found in self.transcode_sessions():
            if str(found.key).rsplit("/", 1)[-1] == run.session:
                run.speed = found.speed
                run.progress = found.progress
                run.complete = bool(found.complete)


def _said(exc: Exception, token: str) -> str:
    """plexapi's message without the token (its URLs carry it when a query has one)."""
    text = str(exc).replace(token, "«token»") if token else str(exc)
    return text[:300]
