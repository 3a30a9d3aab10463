"""A small media library for the twin's media export, made with ffmpeg's own sources
(halab.transcode.media), laid out as Plex names things: `Movies/Title (Year)/Title
(Year).mkv` and `TV Shows/Show/Season 01/Show - S01E01.mkv`. H.264 and HEVC, so later
phases have something to scan, play and transcode. Seeded once per twin directory onto
the NFS host's disk, at the media export's path; `seconds` and `height` make it bigger.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from halab.transcode.media import ensure_sample
from halab.transcode.profiles import SAMPLES

# (path inside the library, sample kind)
LIBRARY = [
    ("Movies/Test Pattern (2024)/Test Pattern (2024).mkv", "1080p-h264"),
    ("Movies/Colour Bars (2023)/Colour Bars (2023).mkv", "1080p-hevc"),
    ("TV Shows/Signal Check/Season 01/Signal Check - S01E01.mkv", "1080p-h264"),
    ("TV Shows/Signal Check/Season 01/Signal Check - S01E02.mkv", "1080p-hevc"),
]


def seed(
    library: Path, cache: Path, manifest: Path, seconds: float = 2.0, height: int = 180
) -> dict[str, str]:
    """Make the library under `library` (once: `manifest`, kept off the export, says it is
    there), return path -> sha256 of every clip."""
    wanted = {"seconds": seconds, "height": height, "files": [p for p, _ in LIBRARY]}
    if manifest.exists():
        doc = json.loads(manifest.read_text())
        if {k: doc.get(k) for k in wanted} == wanted:
            return dict(doc["sha256"])
    width = (height * 16 // 9) // 2 * 2
    sums = {}
    for rel, kind in LIBRARY:
        clip = ensure_sample(SAMPLES[kind].scaled(width, height), seconds, cache)
        out = library / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, out)
        sums[rel] = hashlib.sha256(out.read_bytes()).hexdigest()
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({**wanted, "sha256": sums}, indent=2) + "\n")
    return sums
