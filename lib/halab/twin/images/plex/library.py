"""The Plex stand-in's library: sections and the items a scan of their folders finds,
kept in an SQLite database on /config where Plex keeps its own (so the library survives
the pod only if the volume does).

A scan names things as Plex's scanners do for the layouts Plex documents:
`Movies/Title (Year)/Title (Year).mkv`, and `Show/Season 01/Show - S01E02.mkv`. Durations
and codecs come from ffprobe, as Plex's own media analysis reads them from the file.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VIDEO_SUFFIXES = {".mkv", ".mp4", ".m4v", ".avi", ".mov", ".ts", ".webm"}
MOVIE_NAME = re.compile(r"^(?P<title>.+?)\s*\((?P<year>\d{4})\)$")
EPISODE_NAME = re.compile(r"[Ss](?P<season>\d{1,3})[Ee](?P<episode>\d{1,4})")
SEASON_DIR = re.compile(r"^(?:Season|Series)\s*(?P<n>\d+)$", re.IGNORECASE)
# Plex's metadata types (the `type` query parameter of /library/sections/N/all).
TYPES = {"movie": 1, "show": 2, "season": 3, "episode": 4}
SCHEMA = """
CREATE TABLE IF NOT EXISTS library_sections (
    id INTEGER PRIMARY KEY, name TEXT, section_type TEXT, agent TEXT, scanner TEXT,
    language TEXT, uuid TEXT, created_at INTEGER, updated_at INTEGER, scanned_at INTEGER);
CREATE TABLE IF NOT EXISTS section_locations (
    id INTEGER PRIMARY KEY, library_section_id INTEGER, root_path TEXT);
CREATE TABLE IF NOT EXISTS metadata_items (
    id INTEGER PRIMARY KEY, library_section_id INTEGER, parent_id INTEGER,
    metadata_type TEXT, title TEXT, item_index INTEGER, year INTEGER, added_at INTEGER);
CREATE TABLE IF NOT EXISTS media_parts (
    id INTEGER PRIMARY KEY, metadata_item_id INTEGER, file TEXT UNIQUE, size INTEGER,
    duration_ms INTEGER, container TEXT, video_codec TEXT, audio_codec TEXT,
    width INTEGER, height INTEGER, bitrate INTEGER);
"""


@dataclass(frozen=True)
class Probe:
    duration_ms: int
    container: str
    video_codec: str
    audio_codec: str
    width: int
    height: int
    bitrate: int


def probe(path: Path) -> Probe | None:
    """What ffprobe reads of a file; None when it is not a video ffprobe can open."""
    try:
        done = subprocess.run(
            ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    doc = json.loads(done.stdout or "{}")
    streams = doc.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if video is None:
        return None
    audio: dict[str, Any] = next((s for s in streams if s.get("codec_type") == "audio"), {})
    fmt = doc.get("format") or {}
    return Probe(
        duration_ms=int(float(fmt.get("duration") or 0) * 1000),
        container=path.suffix.lstrip(".").lower(),
        video_codec=str(video.get("codec_name", "")),
        audio_codec=str(audio.get("codec_name", "")),
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        bitrate=int(fmt.get("bit_rate") or 0) // 1000,
    )


class Library:
    def __init__(self, database: Path) -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(database, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    # -- sections ----------------------------------------------------------------------

    def add_section(
        self, name: str, kind: str, agent: str, scanner: str, language: str, paths: list[str]
    ) -> int:
        now = int(time.time())
        cur = self.db.execute(
            "INSERT INTO library_sections (name, section_type, agent, scanner, language, uuid,"
            " created_at, updated_at, scanned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (name, kind, agent, scanner, language, str(uuid.uuid4()), now, now),
        )
        section = int(cur.lastrowid or 0)
        for path in paths:
            self.db.execute(
                "INSERT INTO section_locations (library_section_id, root_path) VALUES (?, ?)",
                (section, path),
            )
        self.db.commit()
        return section

    def delete_section(self, section: int) -> bool:
        found = self.section(section) is not None
        items = [r["id"] for r in self._items(section)]
        self.db.executemany(
            "DELETE FROM media_parts WHERE metadata_item_id = ?", [(i,) for i in items]
        )
        for table, column in (
            ("metadata_items", "library_section_id"),
            ("section_locations", "library_section_id"),
            ("library_sections", "id"),
        ):
            self.db.execute(f"DELETE FROM {table} WHERE {column} = ?", (section,))
        self.db.commit()
        return found

    def sections(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM library_sections ORDER BY id")]

    def section(self, section: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM library_sections WHERE id = ?", (section,)).fetchone()
        return dict(row) if row else None

    def locations(self, section: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM section_locations WHERE library_section_id = ? ORDER BY id", (section,)
        )
        return [dict(r) for r in rows]

    # -- scanning ----------------------------------------------------------------------

    def scan(self, section: int) -> int:
        """Add what the section's folders hold and drop what they no longer do; returns
        the number of media files in the section afterwards."""
        info = self.section(section)
        if info is None:
            return 0
        seen: set[str] = set()
        for location in self.locations(section):
            root = Path(location["root_path"])
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
            for file in files:
                seen.add(str(file))
                if self._part_for(str(file)) is None:
                    self._add_file(section, info["section_type"], root, file)
        for part in self._parts(section):
            if part["file"] not in seen:
                self.db.execute("DELETE FROM media_parts WHERE id = ?", (part["id"],))
                self.db.execute(
                    "DELETE FROM metadata_items WHERE id = ?", (part["metadata_item_id"],)
                )
        self._drop_empty_parents(section)
        self.db.execute(
            "UPDATE library_sections SET scanned_at = ?, updated_at = ? WHERE id = ?",
            (int(time.time()), int(time.time()), section),
        )
        self.db.commit()
        return len(self._parts(section))

    def _add_file(self, section: int, kind: str, root: Path, file: Path) -> None:
        found = probe(file)
        if found is None:
            return  # not a video Plex could analyse: skipped, as Plex's scanner skips it
        now = int(time.time())
        if kind == "movie":
            name = file.stem
            m = MOVIE_NAME.match(name)
            title, year = (m["title"], int(m["year"])) if m else (name, None)
            item = self._item(section, None, "movie", title, None, year, now)
        else:
            rel = file.relative_to(root).parts
            show_title = rel[0] if len(rel) > 1 else file.stem
            m = EPISODE_NAME.search(file.stem)
            season_n = int(m["season"]) if m else 1
            if not m and len(rel) > 2 and (sm := SEASON_DIR.match(rel[1])):
                season_n = int(sm["n"])
            episode_n = int(m["episode"]) if m else 1
            show = self._find_or_add(section, None, "show", show_title, None, now)
            season = self._find_or_add(section, show, "season", f"Season {season_n}", season_n, now)
            episode_title = file.stem.split(" - ", 2)[-1] if " - " in file.stem else file.stem
            item = self._item(section, season, "episode", episode_title, episode_n, None, now)
        self.db.execute(
            "INSERT INTO media_parts (metadata_item_id, file, size, duration_ms, container,"
            " video_codec, audio_codec, width, height, bitrate) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                item,
                str(file),
                file.stat().st_size,
                found.duration_ms,
                found.container,
                found.video_codec,
                found.audio_codec,
                found.width,
                found.height,
                found.bitrate,
            ),
        )

    def _item(
        self,
        section: int,
        parent: int | None,
        kind: str,
        title: str,
        index: int | None,
        year: int | None,
        now: int,
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO metadata_items (library_section_id, parent_id, metadata_type, title,"
            " item_index, year, added_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (section, parent, kind, title, index, year, now),
        )
        return int(cur.lastrowid or 0)

    def _find_or_add(
        self, section: int, parent: int | None, kind: str, title: str, index: int | None, now: int
    ) -> int:
        row = self.db.execute(
            "SELECT id FROM metadata_items WHERE library_section_id = ? AND metadata_type = ?"
            " AND title = ? AND parent_id IS ?",
            (section, kind, title, parent),
        ).fetchone()
        return int(row["id"]) if row else self._item(section, parent, kind, title, index, None, now)

    def _drop_empty_parents(self, section: int) -> None:
        for kind in ("season", "show"):
            self.db.execute(
                "DELETE FROM metadata_items WHERE library_section_id = ? AND metadata_type = ?"
                " AND id NOT IN (SELECT parent_id FROM metadata_items WHERE parent_id IS NOT NULL)",
                (section, kind),
            )

    # -- reading -----------------------------------------------------------------------

    def _items(self, section: int) -> list[sqlite3.Row]:
        return list(
            self.db.execute("SELECT * FROM metadata_items WHERE library_section_id = ?", (section,))
        )

    def _parts(self, section: int) -> list[sqlite3.Row]:
        return list(
            self.db.execute(
                "SELECT p.* FROM media_parts p JOIN metadata_items m ON m.id = p.metadata_item_id"
                " WHERE m.library_section_id = ?",
                (section,),
            )
        )

    def _part_for(self, file: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM media_parts WHERE file = ?", (file,)
        ).fetchone()
        return row

    def items(self, section: int, kind: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM metadata_items WHERE library_section_id = ? AND metadata_type = ?"
            " ORDER BY title, item_index, id",
            (section, kind),
        )
        return [dict(r) for r in rows]

    def item(self, key: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM metadata_items WHERE id = ?", (key,)).fetchone()
        return dict(row) if row else None

    def children(self, key: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM metadata_items WHERE parent_id = ? ORDER BY item_index, id", (key,)
        )
        return [dict(r) for r in rows]

    def leaves(self, key: int) -> list[dict[str, Any]]:
        """Every episode below a show (or a season), in order."""
        out: list[dict[str, Any]] = []
        for child in self.children(key):
            out += self.leaves(child["id"]) if child["metadata_type"] == "season" else [child]
        return out

    def part(self, item: int) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM media_parts WHERE metadata_item_id = ? ORDER BY id", (item,)
        ).fetchone()
        return dict(row) if row else None

    def count(self, section: int) -> int:
        return len(self._parts(section))
