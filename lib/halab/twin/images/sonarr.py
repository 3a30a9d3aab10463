"""A stand-in for linuxserver/sonarr (Sonarr v4) in the twin: its HTTP API, the /api/v3
routes a check and the plan's "configure, add a test series" use, with the state where
the real one keeps it: config.xml (the API key) and a SQLite database in /config. So what
was configured survives a restart or a reschedule only if the /config volume does.

What it does not do, and says so: no indexers, no download clients and no internet, so a
series lookup fails as the real one's does offline ("Unable to communicate with SkyHook"),
and a series added by hand keeps the title it was given.

Run: python -m halab.twin.images.sonarr --listen ADDRESS [--config /config]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import secrets
import sqlite3
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from aiohttp import web

VERSION = "4.0.0.0"
RUNS = "stand-in: Sonarr v4's HTTP API (/api/v3) on SQLite in /config; no indexers, no internet"


def is_sonarr(image: str) -> bool:
    """linuxserver/sonarr, hotio's, or Sonarr's own image, by name."""
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == "sonarr"


DEFAULT_PORT = 8989
# linuxserver's images run the app as this user (PUID/PGID pick its ids).
USER = "abc"
QUALITY_PROFILES = ["Any", "SD", "HD-720p", "HD-1080p", "Ultra-HD", "HD - 720p/1080p"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS RootFolders (Id INTEGER PRIMARY KEY, Path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS QualityProfiles (Id INTEGER PRIMARY KEY, Name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS Series (
    Id INTEGER PRIMARY KEY, TvdbId INTEGER NOT NULL UNIQUE, Title TEXT NOT NULL,
    TitleSlug TEXT NOT NULL, Path TEXT NOT NULL, QualityProfileId INTEGER NOT NULL,
    Monitored INTEGER NOT NULL, SeasonFolder INTEGER NOT NULL, SeriesType TEXT NOT NULL,
    Added TEXT NOT NULL
);
"""


def log(level: str, component: str, message: str) -> None:
    """A line as Sonarr prints to its console: `[Info] Bootstrap: ...`."""
    print(f"[{level}] {component}: {message}", flush=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ValidationFailed(Exception):
    def __init__(self, prop: str, message: str, attempted: Any) -> None:
        super().__init__(message)
        self.prop, self.message, self.attempted = prop, message, attempted

    def response(self) -> web.Response:
        log(
            "Warn",
            "SonarrErrorPipeline",
            f"Invalid request Validation failed: \n -- {self.prop}: {self.message}",
        )
        body = [
            {
                "propertyName": self.prop,
                "errorMessage": self.message,
                "attemptedValue": self.attempted,
                "severity": "error",
            }
        ]
        return web.json_response(body, status=400)


def read_config(config_dir: Path) -> dict[str, str]:
    """config.xml, written with a new API key on first start as the real one does.
    SONARR__AUTH__APIKEY and SONARR__SERVER__PORT override it, as Sonarr v4's settings
    from the environment do."""
    path = config_dir / "config.xml"
    if not path.exists():
        root = ET.Element("Config")
        for tag, value in (
            ("BindAddress", "*"),
            ("Port", str(DEFAULT_PORT)),
            ("UrlBase", ""),
            ("ApiKey", secrets.token_hex(16)),
            ("AuthenticationMethod", "External"),
            ("Branch", "main"),
            ("LogLevel", "info"),
            ("InstanceName", "Sonarr"),
            ("UpdateMechanism", "Docker"),
        ):
            ET.SubElement(root, tag).text = value
        path.write_bytes(ET.tostring(root))
    found = {child.tag: child.text or "" for child in ET.parse(path).getroot()}
    for tag, variable in (("ApiKey", "SONARR__AUTH__APIKEY"), ("Port", "SONARR__SERVER__PORT")):
        if override := os.environ.get(variable):
            found[tag] = override
    return found


class Sonarr:
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.config = read_config(config_dir)
        self.started = _now()
        self.db_path = config_dir / "sonarr.db"
        log("Info", "MigrationController", f"*** Migrating data source={self.db_path} ***")
        self.db = sqlite3.connect(self.db_path)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)
        if not self.db.execute("SELECT 1 FROM QualityProfiles").fetchone():
            self.db.executemany(
                "INSERT INTO QualityProfiles (Id, Name) VALUES (?, ?)",
                list(enumerate(QUALITY_PROFILES, start=1)),
            )
        self.db.commit()

    # -- the API ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        v3 = "/api/v3"
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/", self._index)
        app.router.add_get(f"{v3}/system/status", self._status)
        app.router.add_get(f"{v3}/health", self._health)
        app.router.add_get(f"{v3}/qualityprofile", self._profiles)
        app.router.add_get(f"{v3}/rootfolder", self._root_folders)
        app.router.add_post(f"{v3}/rootfolder", self._add_root_folder)
        app.router.add_delete(f"{v3}/rootfolder/{{id:\\d+}}", self._delete_root_folder)
        app.router.add_get(f"{v3}/series", self._series)
        app.router.add_get(f"{v3}/series/lookup", self._lookup)
        app.router.add_get(f"{v3}/series/{{id:\\d+}}", self._one_series)
        app.router.add_post(f"{v3}/series", self._add_series)
        app.router.add_delete(f"{v3}/series/{{id:\\d+}}", self._delete_series)
        app.router.add_get(f"{v3}/filesystem", self._filesystem)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            given = request.headers.get("X-Api-Key") or request.query.get("apikey")
            if not given or not secrets.compare_digest(given, self.config["ApiKey"]):
                return web.Response(status=401)
        try:
            response: web.StreamResponse = await handler(request)
        except ValidationFailed as failed:
            return failed.response()
        return response

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "OK"})

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>Sonarr</title>", content_type="text/html")

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "appName": "Sonarr",
                "instanceName": self.config.get("InstanceName", "Sonarr"),
                "version": VERSION,
                "startupPath": "/app/sonarr/bin",
                "appData": str(self.config_dir),
                "osName": "ubuntu",
                "isDocker": True,
                "isLinux": True,
                "branch": self.config.get("Branch", "main"),
                "authentication": self.config.get("AuthenticationMethod", "none").lower(),
                "databaseType": "sqLite",
                "urlBase": self.config.get("UrlBase", ""),
                "startTime": self.started,
                "packageUpdateMechanism": "docker",
                "packageAuthor": "halab twin stand-in (not the real Sonarr)",
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        issues = [
            {
                "source": "RootFolderCheck",
                "type": "error",
                "message": f"Missing root folder: {row['Path']}",
            }
            for row in self.db.execute("SELECT Path FROM RootFolders")
            if not Path(row["Path"]).is_dir()
        ]
        issues.append(
            {
                "source": "IndexerRssCheck",
                "type": "warning",
                "message": "No indexers available with RSS sync enabled, Sonarr will not grab "
                "new releases automatically",
            }
        )
        return web.json_response(issues)

    async def _profiles(self, request: web.Request) -> web.Response:
        rows = self.db.execute("SELECT Id, Name FROM QualityProfiles ORDER BY Id")
        return web.json_response([{"id": r["Id"], "name": r["Name"]} for r in rows])

    def _root_folder(self, row: sqlite3.Row) -> dict[str, Any]:
        path = Path(row["Path"])
        used = {Path(r["Path"]) for r in self.db.execute("SELECT Path FROM Series")}
        unmapped = []
        free = 0
        if accessible := path.is_dir():
            with contextlib.suppress(OSError):
                stats = os.statvfs(path)
                free = stats.f_bavail * stats.f_frsize
            for sub in sorted(path.iterdir()):
                if sub.is_dir() and sub not in used and not sub.name.startswith("."):
                    unmapped.append({"name": sub.name, "path": str(sub), "relativePath": sub.name})
        return {
            "id": row["Id"],
            "path": row["Path"],
            "accessible": accessible,
            "freeSpace": free,
            "unmappedFolders": unmapped,
        }

    async def _root_folders(self, request: web.Request) -> web.Response:
        rows = self.db.execute("SELECT Id, Path FROM RootFolders ORDER BY Id").fetchall()
        return web.json_response([self._root_folder(r) for r in rows])

    async def _add_root_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        path = str(body.get("path") or "").rstrip("/")
        shown = f"{path}/"
        if not path:
            raise ValidationFailed("Path", "'Path' must not be empty.", body.get("path"))
        if not path.startswith("/"):
            raise ValidationFailed("Path", "Invalid Path", body.get("path"))
        if self.db.execute("SELECT 1 FROM RootFolders WHERE Path = ?", (path,)).fetchone():
            raise ValidationFailed("Path", "Path is already configured as a root folder", path)
        if not Path(path).is_dir():
            raise ValidationFailed("Path", "Path does not exist", path)
        if not _writable(Path(path)):
            raise ValidationFailed(
                "Path", f"Folder '{shown}' is not writable by user '{USER}'", path
            )
        cursor = self.db.execute("INSERT INTO RootFolders (Path) VALUES (?)", (path,))
        self.db.commit()
        row = self.db.execute(
            "SELECT Id, Path FROM RootFolders WHERE Id = ?", (cursor.lastrowid,)
        ).fetchone()
        return web.json_response(self._root_folder(row), status=201)

    async def _delete_root_folder(self, request: web.Request) -> web.Response:
        self.db.execute("DELETE FROM RootFolders WHERE Id = ?", (int(request.match_info["id"]),))
        self.db.commit()
        return web.json_response({})

    def _series_doc(self, row: sqlite3.Row) -> dict[str, Any]:
        path = Path(row["Path"])
        return {
            "id": row["Id"],
            "tvdbId": row["TvdbId"],
            "title": row["Title"],
            "titleSlug": row["TitleSlug"],
            "path": row["Path"],
            "rootFolderPath": str(path.parent),
            "qualityProfileId": row["QualityProfileId"],
            "monitored": bool(row["Monitored"]),
            "seasonFolder": bool(row["SeasonFolder"]),
            "seriesType": row["SeriesType"],
            "added": row["Added"],
            "seasons": [],
            "statistics": {"seasonCount": 0, "episodeFileCount": 0, "sizeOnDisk": 0},
        }

    async def _series(self, request: web.Request) -> web.Response:
        query, args = "SELECT * FROM Series", tuple[int, ...]()
        if tvdb := request.query.get("tvdbId"):
            query, args = query + " WHERE TvdbId = ?", (int(tvdb),)
        rows = self.db.execute(query + " ORDER BY Id", args).fetchall()
        return web.json_response([self._series_doc(r) for r in rows])

    async def _one_series(self, request: web.Request) -> web.Response:
        row = self.db.execute(
            "SELECT * FROM Series WHERE Id = ?", (int(request.match_info["id"]),)
        ).fetchone()
        if row is None:
            return web.json_response({"message": "NotFound"}, status=404)
        return web.json_response(self._series_doc(row))

    async def _lookup(self, request: web.Request) -> web.Response:
        term = request.query.get("term", "")
        message = (
            f"Search for '{term}' failed. Unable to communicate with SkyHook. "
            "(the twin has no internet)"
        )
        log("Warn", "SkyHookProxy", message)
        return web.json_response({"message": message}, status=503)

    async def _add_series(self, request: web.Request) -> web.Response:
        body = await request.json()
        tvdb = int(body.get("tvdbId") or 0)
        title = str(body.get("title") or "").strip()
        if tvdb <= 0:
            raise ValidationFailed("TvdbId", "'Tvdb Id' must be greater than '0'.", tvdb)
        if not title:
            raise ValidationFailed("Title", "'Title' must not be empty.", title)
        profile = int(body.get("qualityProfileId") or 0)
        if not self.db.execute("SELECT 1 FROM QualityProfiles WHERE Id = ?", (profile,)).fetchone():
            raise ValidationFailed("QualityProfileId", "Quality Profile does not exist", profile)
        if self.db.execute("SELECT 1 FROM Series WHERE TvdbId = ?", (tvdb,)).fetchone():
            raise ValidationFailed("TvdbId", "This series has already been added", tvdb)
        root = str(body.get("rootFolderPath") or "").rstrip("/")
        path = str(body.get("path") or "").rstrip("/") or (root and f"{root}/{_folder(title)}")
        if not path:
            raise ValidationFailed("Path", "'Path' must not be empty.", body.get("path"))
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        cursor = self.db.execute(
            "INSERT INTO Series (TvdbId, Title, TitleSlug, Path, QualityProfileId, Monitored,"
            " SeasonFolder, SeriesType, Added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tvdb,
                title,
                slug,
                path,
                profile,
                int(bool(body.get("monitored", True))),
                int(bool(body.get("seasonFolder", True))),
                str(body.get("seriesType") or "standard"),
                _now(),
            ),
        )
        self.db.commit()
        log("Info", "AddSeriesService", f"Adding Series [{title}] Path: [{path}]")
        # The real one now refreshes the series from SkyHook; offline, that fails.
        log(
            "Error",
            "RefreshSeriesService",
            f"Couldn't refresh info for [{tvdb}][{title}]: Unable to communicate with SkyHook",
        )
        row = self.db.execute("SELECT * FROM Series WHERE Id = ?", (cursor.lastrowid,)).fetchone()
        return web.json_response(self._series_doc(row), status=201)

    async def _delete_series(self, request: web.Request) -> web.Response:
        self.db.execute("DELETE FROM Series WHERE Id = ?", (int(request.match_info["id"]),))
        self.db.commit()
        return web.json_response({})

    async def _filesystem(self, request: web.Request) -> web.Response:
        """The folder browser of the UI's path pickers."""
        raw = request.query.get("path", "")
        include_files = request.query.get("includeFiles", "false").lower() == "true"
        if not raw:
            dirs = [{"type": "folder", "name": "/", "path": "/"}]
            return web.json_response({"directories": dirs, "files": []})
        path = Path(raw)
        directories, files = [], []
        # A folder gone or unreachable (an NFS export lost) shows empty, as in the real UI.
        with contextlib.suppress(OSError):
            for entry in sorted(path.iterdir()):
                if entry.is_dir():
                    directories.append({"type": "folder", "name": entry.name, "path": f"{entry}/"})
                elif include_files:
                    files.append(
                        {
                            "type": "file",
                            "name": entry.name,
                            "path": str(entry),
                            "size": entry.stat().st_size,
                        }
                    )
        parent = f"{path.parent}/" if path != path.parent else None
        return web.json_response({"parent": parent, "directories": directories, "files": files})


def _writable(folder: Path) -> bool:
    # As the real one checks: by writing a file and removing it.
    probe = folder / "sonarr_write_test.txt"
    try:
        probe.write_text("test")
        probe.unlink()
    except OSError:
        return False
    return True


def _folder(title: str) -> str:
    return re.sub(r'[<>:"/\\|?*]', "", title).strip()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m halab.twin.images.sonarr")
    parser.add_argument("--listen", required=True, help="the address to bind (the pod's)")
    parser.add_argument("--config", default="/config", help="the app's data folder")
    args = parser.parse_args()
    config_dir = Path(args.config)
    log("Info", "Bootstrap", f"Starting Sonarr - /app/sonarr/bin/Sonarr - Version {VERSION}")
    log("Info", "Bootstrap", "halab twin stand-in: the API on SQLite; no indexers, no internet")
    if not config_dir.is_dir():
        log("Fatal", "ConsoleApp", f"The data folder {config_dir} does not exist")
        sys.exit(1)
    log("Info", "AppFolderInfo", f"Data directory is being overridden to [{config_dir}]")
    sonarr = Sonarr(config_dir)
    port = int(sonarr.config.get("Port") or DEFAULT_PORT)
    log("Info", "Microsoft.Hosting.Lifetime", f"Now listening on: http://[::]:{port}")
    web.run_app(sonarr.app(), host=args.listen, port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
