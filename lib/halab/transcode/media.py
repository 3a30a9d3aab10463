"""Test clips made with ffmpeg's own sources, cached by content hash; and the user's own files.

A clip is named by the hash of the exact command that makes it, so a cached file is
reused only when it is the clip the command would make, and a changed spec never
picks up a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from halab.errors import InputError, Problem
from halab.transcode.profiles import SAMPLES, SampleSpec
from halab.transcode.runners import TranscodeError, have_local_ffmpeg


def sample_command(spec: SampleSpec, seconds: float, out: Path) -> list[str]:
    pix_fmt = "yuv420p10le" if spec.ten_bit else "yuv420p"
    video = [
        "-c:v",
        spec.codec,
        "-preset",
        "ultrafast",
        "-pix_fmt",
        pix_fmt,
        "-g",
        str(spec.fps * 2),
    ]
    if spec.codec == "libx265":
        video += ["-x265-params", "log-level=error", "-tag:v", "hvc1"]
    return [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        f"{seconds:g}",
        *video,
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        str(out),
    ]


_CLIP = re.compile(
    r"^(?P<name>.+)-(?P<w>\d+)x(?P<h>\d+)-(?P<s>[\d.]+)s-(?P<digest>[0-9a-f]{16})\.mkv$"
)


def clip_name(spec: SampleSpec, seconds: float, digest: str) -> str:
    """A cached clip's file name: what it is, and the hash of the command that made it."""
    return f"{spec.name}-{spec.width}x{spec.height}-{seconds:g}s-{digest}.mkv"


def parse_clip_name(name: str) -> tuple[SampleSpec, float] | None:
    """The clip spec and length a clip_name() stands for; None for any other file."""
    match = _CLIP.match(name)
    spec = SAMPLES.get(match.group("name")) if match else None
    if match is None or spec is None:
        return None
    return spec.scaled(int(match.group("w")), int(match.group("h"))), float(match.group("s"))


def ensure_sample(spec: SampleSpec, seconds: float, cache_dir: Path) -> Path:
    """The clip for `spec`, made once and cached under `cache_dir`."""
    if not have_local_ffmpeg():
        raise TranscodeError(
            "ffmpeg is not installed here; install it with "
            "`apt-get install ffmpeg` to make the test clips"
        )
    key = json.dumps(sample_command(spec, seconds, Path("OUT")))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / clip_name(spec, seconds, digest)
    if path.exists() and path.stat().st_size > 0:
        return path
    partial = path.with_suffix(f".{os.getpid()}.part.mkv")
    done = subprocess.run(
        sample_command(spec, seconds, partial), capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise TranscodeError(f"making the {spec.name} clip failed: {done.stderr.strip()[-500:]}")
    partial.replace(path)  # atomic: a half-written clip is never taken for a cached one
    return path


def probe_media(path: Path) -> dict[str, object]:
    """Codec, size and duration of a user's file; InputError naming the file if unreadable."""
    if not path.is_file():
        raise InputError(
            str(path), [Problem("media", f"no such file: {path}", "give the path of a video file")]
        )
    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,pix_fmt:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        info = json.loads(done.stdout or "{}")
        stream = info["streams"][0]
        return {
            "codec": stream["codec_name"],
            "width": int(stream["width"]),
            "height": int(stream["height"]),
            "pix_fmt": stream.get("pix_fmt", ""),
            "duration_s": float(info.get("format", {}).get("duration", 0) or 0),
        }
    except (ValueError, KeyError, IndexError) as exc:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no video"
        raise InputError(
            str(path),
            [
                Problem(
                    "media",
                    f"{path} is not a readable video: {reason}",
                    "check the file plays; re-copy it if it was cut short",
                )
            ],
        ) from exc
