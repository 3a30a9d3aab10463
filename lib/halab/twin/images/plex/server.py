"""Stand-in for Plex Media Server (linuxserver/plex, with ClusterPlex's PMS dockermod when
DOCKER_MODS has it), run as its pod's process:
`python -m halab.twin.images.plex.server --listen ADDRESS`.

What it answers, as PMS does and as python-plexapi parses it (XML by default, JSON with
`Accept: application/json`): `/identity` without a token; with `X-Plex-Token` (header or
query) `/`, `/library`, `/library/sections` (GET, and POST to add one, as plexapi's
`library.add` does), `/library/sections/N/all|refresh`, `/library/metadata/K[/children|
/allLeaves]`, `/:/prefs`, `/transcode/sessions` (and DELETE of one), and the universal
transcoder: `start.m3u8`, its session's playlist and segments, `ping`, `stop`.

Its state is where Plex keeps its own, on /config: Preferences.xml (written at first start
with a MachineIdentifier and a PlexOnlineToken, as a claimed server has; TranscoderTempDirectory
read at every start, so an init container's edit takes effect) and the library database.
The token is generated here, not fetched from plex.tv: the twin has no internet.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import platform
import secrets
import signal
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from aiohttp import web

from halab.twin.images.plex import has_pms_mod
from halab.twin.images.plex.library import TYPES, Library
from halab.twin.images.plex.transcode import Session, Transcoder, log, session_directory

VERSION = "1.41.3.9314-a0bfb8370"  # the stand-in's: what /identity reports
API_VERSION = "1.1.1"
# Under /config, where linuxserver/plex keeps Plex's data directory.
APP_SUPPORT = "Library/Application Support/Plex Media Server"
PREFERENCES = f"{APP_SUPPORT}/Preferences.xml"
DATABASE = f"{APP_SUPPORT}/Plug-in Support/Databases/com.plexapp.plugins.library.db"
DEFAULT_TRANSCODE = f"{APP_SUPPORT}/Cache/Transcode"
SESSION_IDLE_S = 120.0  # a session no client pinged or read for this long is stopped
UNAUTHORIZED = (
    "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>"
)
BITRATES = "64,96,208,320,720,1500,2000,3000,4000,8000,10000,12000,20000"
QUALITIES = "0,1,2,3,4,5,6,7,8,9,10,11,12"
RESOLUTIONS = "128,128,160,240,320,480,768,720,720,1080,1080,1080,1080"
AGENTS = {"movie": "tv.plex.agents.movie", "show": "tv.plex.agents.series"}
SCANNERS = {"movie": "Plex Movie", "show": "Plex TV Series"}


class Preferences:
    """Preferences.xml: read at start, written at first start and on `PUT /:/prefs`."""

    def __init__(self, config: Path, friendly_name: str) -> None:
        self.config = config
        self.path = path = config / PREFERENCES
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            machine = hashlib.sha1(uuid.uuid4().bytes).hexdigest()
            attrs = {
                "MachineIdentifier": str(uuid.uuid4()),
                "ProcessedMachineIdentifier": machine,
                "AnonymousMachineIdentifier": str(uuid.uuid4()),
                "FriendlyName": friendly_name,
                "PlexOnlineToken": secrets.token_urlsafe(15)[:20],
                "OldestPreviousVersion": VERSION,
                "AcceptedEULA": "1",
            }
            self._write(attrs)
        self.attrs = dict(ET.parse(path).getroot().attrib)

    def _write(self, attrs: dict[str, str]) -> None:
        body = " ".join(f'{k}="{_escape(v)}"' for k, v in attrs.items())
        self.path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n<Preferences {body}/>\n')

    def set(self, key: str, value: str) -> None:
        self.attrs[key] = value
        self._write(self.attrs)

    @property
    def token(self) -> str:
        return self.attrs.get("PlexOnlineToken", "")

    @property
    def transcode_dir(self) -> Path:
        chosen = self.attrs.get("TranscoderTempDirectory")
        return Path(chosen) if chosen else self.config / DEFAULT_TRANSCODE


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# -- answers --------------------------------------------------------------------------


def container(attrs: dict[str, Any], children: list[ET.Element] | None = None) -> ET.Element:
    root = ET.Element("MediaContainer", {"size": str(len(children or [])), **_strs(attrs)})
    root.extend(children or [])
    return root


def _strs(attrs: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in attrs.items() if v is not None}


def _as_json(elem: ET.Element) -> dict[str, Any]:
    doc: dict[str, Any] = dict(elem.attrib)
    for child in elem:
        name = "Metadata" if child.tag == "Video" or child.get("ratingKey") else child.tag
        doc.setdefault(name, []).append(_as_json(child))
    return doc


def answer(request: web.Request, root: ET.Element, status: int = 200) -> web.Response:
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({root.tag: _as_json(root)}, status=status)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
    return web.Response(text=text, status=status, content_type="text/xml", charset="utf-8")


class Server:
    def __init__(self, env: dict[str, str], config: Path) -> None:
        self.env = env
        self.name = env.get("HOSTNAME") or platform.node()
        self.prefs = Preferences(config, self.name)
        self.library = Library(config / DATABASE)
        self.transcoder = Transcoder(env, has_pms_mod(env))
        self.sessions: dict[str, Session] = {}
        self.started = int(time.time())

    @property
    def machine(self) -> str:
        return self.prefs.attrs.get("ProcessedMachineIdentifier", "")

    # -- auth -------------------------------------------------------------------------

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/identity":
            token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
            if not token or not secrets.compare_digest(token, self.prefs.token):
                return web.Response(status=401, text=UNAUTHORIZED, content_type="text/html")
        response: web.StreamResponse = await handler(request)
        return response

    # -- server -----------------------------------------------------------------------

    async def identity(self, request: web.Request) -> web.Response:
        attrs = {
            "apiVersion": API_VERSION,
            "claimed": "1",
            "machineIdentifier": self.machine,
            "version": VERSION,
        }
        return answer(request, container(attrs))

    async def root(self, request: web.Request) -> web.Response:
        attrs = {
            "allowCameraUpload": 0, "allowChannelAccess": 1, "allowMediaDeletion": 1,
            "allowSharing": 1, "allowSync": 1, "backgroundProcessing": 1, "certificate": 0,
            "companionProxy": 1, "diagnostics": "logs,databases,streaminglogs",
            "eventStream": 1, "friendlyName": self.prefs.attrs.get("FriendlyName", self.name),
            "hubSearch": 1, "machineIdentifier": self.machine, "multiuser": 1, "myPlex": 1,
            "myPlexMappingState": "unknown", "myPlexSigninState": "ok",
            "myPlexSubscription": 0, "myPlexUsername": "", "ownerFeatures": "",
            "photoAutoTag": 0, "platform": "Linux", "platformVersion": platform.release(),
            "pluginHost": 1, "readOnlyLibraries": 0, "requestParametersInCookie": 1,
            "streamingBrainVersion": 2, "sync": 1,
            "transcoderActiveVideoSessions": sum(not s.done for s in self.sessions.values()),
            "transcoderAudio": 1, "transcoderLyrics": 1, "transcoderPhoto": 1,
            "transcoderSubtitles": 1, "transcoderVideo": 1,
            "transcoderVideoBitrates": BITRATES, "transcoderVideoQualities": QUALITIES,
            "transcoderVideoResolutions": RESOLUTIONS,
            "updatedAt": self.started, "updater": 1, "version": VERSION, "voiceSearch": 1,
        }  # fmt: skip
        dirs = [
            ET.Element("Directory", {"count": "1", "key": k, "title": k})
            for k in ("library", "transcode")
        ]
        return answer(request, container(attrs, dirs))

    async def preferences(self, request: web.Request) -> web.Response:
        if request.method == "PUT":
            for key, value in request.query.items():
                if key != "X-Plex-Token":
                    self.prefs.set(key, value)
            return web.Response(status=200)
        settings = [
            ("FriendlyName", "Friendly name", "text", ""),
            ("TranscoderTempDirectory", "Transcoder temporary directory", "text", ""),
            ("MachineIdentifier", "", "text", ""),
        ]
        rows = [
            ET.Element(
                "Setting",
                {
                    "id": key,
                    "label": label,
                    "summary": "",
                    "type": kind,
                    "default": default,
                    "value": self.prefs.attrs.get(key, default),
                    "hidden": "1" if not label else "0",
                    "advanced": "0",
                    "group": "transcoder" if key.startswith("Transcoder") else "general",
                },
            )
            for key, label, kind, default in settings
        ]
        return answer(request, container({}, rows))

    async def browse(self, request: web.Request) -> web.Response:
        """The server's folders (and files), as the library's "add folder" dialog lists them."""
        encoded = request.match_info.get("path", "")
        try:
            where = (
                Path(base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
                if encoded
                else Path("/")
            )
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="400 Bad Request")
        if not where.is_dir():
            return web.Response(status=404, text="404 Not Found")
        files = request.query.get("includeFiles", "1") != "0"
        elems = []
        for entry in sorted(where.iterdir()):
            if entry.name.startswith("."):
                continue
            key = "/services/browse/" + base64.b64encode(str(entry).encode()).decode()
            if entry.is_dir():
                elems.append(
                    ET.Element("Path", {"key": key, "path": str(entry), "title": entry.name})
                )
            elif files:
                elems.append(
                    ET.Element("File", {"key": key, "path": str(entry), "title": entry.name})
                )
        return answer(request, container({}, elems))

    # -- library ----------------------------------------------------------------------

    async def library_root(self, request: web.Request) -> web.Response:
        dirs = [
            ET.Element("Directory", {"key": k, "title": t})
            for k, t in (
                ("sections", "Library Sections"),
                ("recentlyAdded", "Recently Added Content"),
            )
        ]
        attrs = {
            "allowSync": 0,
            "art": "/:/resources/library-art.png",
            "content": "",
            "identifier": "com.plexapp.plugins.library",
            "mediaTagPrefix": "/system/bundle/media/flags/",
            "mediaTagVersion": self.started,
            "title1": "Plex Library",
            "title2": "",
        }
        return answer(request, container(attrs, dirs))

    def _section_elem(self, section: dict[str, Any]) -> ET.Element:
        elem = ET.Element(
            "Directory",
            _strs(
                {
                    "allowSync": 1,
                    "art": f"/:/resources/{section['section_type']}-fanart.jpg",
                    "composite": (
                        f"/library/sections/{section['id']}/composite/{section['updated_at']}"
                    ),
                    "filters": 1,
                    "refreshing": 0,
                    "thumb": f"/:/resources/{section['section_type']}.png",
                    "key": section["id"],
                    "type": section["section_type"],
                    "title": section["name"],
                    "agent": section["agent"],
                    "scanner": section["scanner"],
                    "language": section["language"],
                    "uuid": section["uuid"],
                    "updatedAt": section["updated_at"],
                    "createdAt": section["created_at"],
                    "scannedAt": section["scanned_at"],
                    "content": 1,
                    "directory": 1,
                    "contentChangedAt": section["scanned_at"],
                    "hidden": 0,
                }
            ),
        )
        for loc in self.library.locations(section["id"]):
            ET.SubElement(elem, "Location", {"id": str(loc["id"]), "path": loc["root_path"]})
        return elem

    async def sections(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            return await self._add_section(request)
        elems = [self._section_elem(s) for s in self.library.sections()]
        return answer(request, container({"allowSync": 0, "title1": "Plex Library"}, elems))

    async def _add_section(self, request: web.Request) -> web.Response:
        q = request.query
        kind = q.get("type", "")
        paths = q.getall("location", [])
        if kind not in AGENTS or not q.get("name") or not paths:
            return web.Response(status=400, text="400 Bad Request")
        missing = [p for p in paths if not Path(p).is_dir()]
        if missing:
            return web.Response(status=400, text=f"400 Bad Request: no such folder {missing[0]}")
        section = self.library.add_section(
            q["name"],
            kind,
            q.get("agent") or AGENTS[kind],
            q.get("scanner") or SCANNERS[kind],
            q.get("language", "en-US"),
            paths,
        )
        found = await asyncio.to_thread(self.library.scan, section)
        log(f"Library section {section} ({q['name']}): scanned {found} media files")
        return answer(request, container({}, []))

    async def section(self, request: web.Request) -> web.Response:
        section = self.library.section(int(request.match_info["section"]))
        if section is None:
            return web.Response(status=404, text="404 Not Found")
        if request.method == "DELETE":
            self.library.delete_section(section["id"])
            return web.Response(status=200)
        return answer(request, container({}, [self._section_elem(section)]))

    async def refresh(self, request: web.Request) -> web.Response:
        section = int(request.match_info["section"])
        if self.library.section(section) is None:
            return web.Response(status=404, text="404 Not Found")
        found = await asyncio.to_thread(self.library.scan, section)
        log(f"Library section {section}: scanned {found} media files")
        return web.Response(status=200)

    async def section_all(self, request: web.Request) -> web.Response:
        section = self.library.section(int(request.match_info["section"]))
        if section is None:
            return web.Response(status=404, text="404 Not Found")
        default = "movie" if section["section_type"] == "movie" else "show"
        wanted = request.query.get("type")
        names = {str(v): k for k, v in TYPES.items()}
        kind = names.get(wanted or "", default)
        items = self.library.items(section["id"], kind)
        title = request.query.get("title")
        if title:
            items = [i for i in items if title.lower() in i["title"].lower()]
        page = self._page(request, items)
        elems = [self._item_elem(i, section) for i in page]
        attrs = {
            "totalSize": len(items),
            "offset": request.headers.get("X-Plex-Container-Start", "0"),
            "librarySectionID": section["id"],
            "librarySectionTitle": section["name"],
            "librarySectionUUID": section["uuid"],
            "title1": section["name"],
            "viewGroup": kind,
        }
        return answer(request, container(attrs, elems))

    @staticmethod
    def _page(request: web.Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        start = int(request.headers.get("X-Plex-Container-Start", "0") or 0)
        size = request.headers.get("X-Plex-Container-Size")
        return items[start : start + int(size)] if size else items[start:]

    def _item_elem(self, item: dict[str, Any], section: dict[str, Any] | None = None) -> ET.Element:
        section = section or self.library.section(item["library_section_id"]) or {}
        kind = item["metadata_type"]
        rk = item["id"]
        attrs: dict[str, Any] = {
            "ratingKey": rk,
            "key": f"/library/metadata/{rk}" + ("/children" if kind in ("show", "season") else ""),
            "guid": f"local://{rk}",
            "type": kind,
            "title": item["title"],
            "librarySectionID": section.get("id"),
            "librarySectionTitle": section.get("name"),
            "librarySectionKey": f"/library/sections/{section.get('id')}",
            "addedAt": item["added_at"],
            "updatedAt": item["added_at"],
        }
        if item.get("year"):
            attrs["year"] = item["year"]
        if item.get("item_index") is not None:
            attrs["index"] = item["item_index"]
        above: dict[str, Any] | None = item
        for role in ("parent", "grandparent"):  # an episode's season, then its show
            parent_id = above.get("parent_id") if above else None
            above = self.library.item(parent_id) if parent_id else None
            if above is None:
                break
            attrs[f"{role}RatingKey"] = above["id"]
            attrs[f"{role}Key"] = f"/library/metadata/{above['id']}"
            attrs[f"{role}Title"] = above["title"]
            if above.get("item_index") is not None:
                attrs[f"{role}Index"] = above["item_index"]
        if kind in ("show", "season"):
            leaves = self.library.leaves(rk)
            attrs["leafCount"] = len(leaves)
            attrs["viewedLeafCount"] = 0
            attrs["childCount"] = len(self.library.children(rk))
            return ET.Element("Directory", _strs(attrs))
        part = self.library.part(rk)
        if part is not None:
            attrs["duration"] = part["duration_ms"]
        elem = ET.Element("Video", _strs(attrs))
        if part is not None:
            media = ET.SubElement(
                elem,
                "Media",
                _strs(
                    {
                        "id": part["id"],
                        "duration": part["duration_ms"],
                        "bitrate": part["bitrate"],
                        "width": part["width"],
                        "height": part["height"],
                        "aspectRatio": f"{part['width'] / max(part['height'], 1):.2f}",
                        "audioChannels": 2,
                        "audioCodec": part["audio_codec"] or None,
                        "videoCodec": part["video_codec"],
                        "videoResolution": str(part["height"]),
                        "container": part["container"],
                    }
                ),
            )
            ET.SubElement(
                media,
                "Part",
                _strs(
                    {
                        "id": part["id"],
                        "key": (
                            f"/library/parts/{part['id']}/{item['added_at']}"
                            f"/file.{part['container']}"
                        ),
                        "duration": part["duration_ms"],
                        "file": part["file"],
                        "size": part["size"],
                        "container": part["container"],
                    }
                ),
            )
        return elem

    async def metadata(self, request: web.Request) -> web.Response:
        item = self.library.item(int(request.match_info["key"]))
        if item is None:
            return web.Response(status=404, text="404 Not Found")
        sub = request.match_info.get("sub", "")
        if sub == "children":
            items = self.library.children(item["id"])
        elif sub == "allLeaves":
            items = self.library.leaves(item["id"])
        elif sub:
            return web.Response(status=404, text="404 Not Found")
        else:
            items = [item]
        attrs = {"totalSize": len(items), "librarySectionID": item["library_section_id"]}
        return answer(
            request, container(attrs, [self._item_elem(i) for i in self._page(request, items)])
        )

    # -- transcoding ------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        q = request.query
        path = q.get("path", "")
        key = path.rsplit("/", 1)[-1] if path.startswith("/library/metadata/") else ""
        item = self.library.item(int(key)) if key.isdigit() else None
        part = self.library.part(item["id"]) if item else None
        if part is None:
            return web.Response(status=400, text="400 Bad Request")
        sid = (
            q.get("session")
            or request.headers.get("X-Plex-Session-Identifier")
            or q.get("X-Plex-Session-Identifier")
            or str(uuid.uuid4())
        )
        old = self.sessions.pop(sid, None)
        if old is not None:
            await self.transcoder.stop(old)
        resolution = q.get("videoResolution", "")
        height = int(resolution.split("x")[1]) if "x" in resolution else 720
        height = min(height, int(part["height"] or height)) // 2 * 2
        bitrate = int(q.get("maxVideoBitrate") or 2000)
        session = Session(
            sid,
            session_directory(self.prefs.transcode_dir, sid),
            part,
            height,
            bitrate,
        )
        self.sessions[sid] = session
        self.transcoder.start(session)
        width = (height * 16 // 9) // 2 * 2
        text = (
            "#EXTM3U\n"
            f"#EXT-X-STREAM-INF:BANDWIDTH={(bitrate + 128) * 1000},RESOLUTION={width}x{height},"
            'CODECS="avc1.640028,mp4a.40.2"\n'
            f"session/{sid}/base/index.m3u8\n"
        )
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl")

    async def session_file(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.get(request.match_info["sid"])
        name = request.match_info["name"]
        if session is None or "/" in name or name.startswith("."):
            return web.Response(status=404, text="404 Not Found")
        session.last_ping = time.monotonic()
        file = session.directory / name
        # Plex holds a request for what the transcoder has not written yet.
        deadline = time.monotonic() + 30
        while not self._ready(session, file) and time.monotonic() < deadline:
            if session.done and not file.exists():
                break
            await asyncio.sleep(0.1)
        if not file.exists():
            return web.Response(status=404, text="404 Not Found")
        kind = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "video/mp2t"
        return web.Response(body=file.read_bytes(), content_type=kind)

    @staticmethod
    def _ready(session: Session, file: Path) -> bool:
        if file.suffix == ".m3u8":
            return file.exists()
        # A segment is whole once the playlist lists it.
        with contextlib.suppress(OSError):
            return file.name in session.playlist.read_text()
        return False

    async def ping(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.query.get("session", ""))
        if session is not None:
            session.last_ping = time.monotonic()
        return answer(request, container({}))

    async def stop(self, request: web.Request) -> web.Response:
        session = self.sessions.pop(request.query.get("session", ""), None)
        if session is not None:
            await self.transcoder.stop(session)
        return answer(request, container({}))

    async def transcode_sessions(self, request: web.Request) -> web.Response:
        elems = [ET.Element("TranscodeSession", s.attributes()) for s in self.sessions.values()]
        return answer(request, container({}, elems))

    async def delete_session(self, request: web.Request) -> web.Response:
        session = self.sessions.pop(request.match_info["sid"], None)
        if session is None:
            return web.Response(status=404, text="404 Not Found")
        await self.transcoder.stop(session)
        return web.Response(status=200)

    async def reap(self) -> None:
        """Stop sessions nobody asks for any more, as Plex does."""
        while True:
            await asyncio.sleep(5)
            now = time.monotonic()
            for sid, session in list(self.sessions.items()):
                if now - session.last_ping > SESSION_IDLE_S:
                    self.sessions.pop(sid, None)
                    await self.transcoder.stop(session)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        r = app.router
        r.add_get("/identity", self.identity)
        r.add_get("/", self.root)
        r.add_route("*", "/:/prefs", self.preferences)
        r.add_get("/services/browse", self.browse)
        r.add_get("/services/browse/{path}", self.browse)
        r.add_get("/library", self.library_root)
        r.add_route("*", "/library/sections", self.sections)
        r.add_route("*", "/library/sections/", self.sections)
        r.add_route("*", "/library/sections/{section:\\d+}", self.section)
        r.add_get("/library/sections/{section:\\d+}/all", self.section_all)
        r.add_get("/library/sections/{section:\\d+}/refresh", self.refresh)
        r.add_get("/library/metadata/{key:\\d+}", self.metadata)
        r.add_get("/library/metadata/{key:\\d+}/{sub}", self.metadata)
        base = "/video/:/transcode/universal"
        r.add_get(f"{base}/start.m3u8", self.start)
        r.add_get(f"{base}/session/{{sid}}/base/{{name}}", self.session_file)
        r.add_get(f"{base}/ping", self.ping)
        r.add_get(f"{base}/stop", self.stop)
        r.add_get("/transcode/sessions", self.transcode_sessions)
        r.add_delete("/transcode/sessions/{sid}", self.delete_session)
        return app


async def run(listen: str, config: Path) -> None:
    env = dict(os.environ)
    server = Server(env, config)
    for section in server.library.sections():  # Plex scans its libraries at start
        await asyncio.to_thread(server.library.scan, section["id"])
    log(f"Plex Media Server {VERSION} (halab stand-in), machine {server.machine}")
    log(f"TranscoderTempDirectory => {server.prefs.transcode_dir}")
    if server.transcoder.dockermod:
        log(
            f"ClusterPlex PMS dockermod: TRANSCODE_OPERATING_MODE={server.transcoder.mode}, "
            f"ORCHESTRATOR_URL={server.transcoder.orchestrator}"
        )
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    port = int(env.get("PMS_PORT", "32400"))
    await web.TCPSite(runner, listen, port, reuse_address=True).start()
    log(f"listening on {listen}:{port}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    reaper = asyncio.create_task(server.reap())
    await stop.wait()
    reaper.cancel()
    for session in list(server.sessions.values()):
        await server.transcoder.stop(session)
    await runner.cleanup()
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", required=True, help="the address to bind (the pod's)")
    parser.add_argument("--config", default="/config", help="the /config volume")
    args = parser.parse_args(argv)
    asyncio.run(run(args.listen, Path(args.config)))


if __name__ == "__main__":
    main()
