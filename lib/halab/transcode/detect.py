"""Which encoders a worker really has: listed by ffmpeg, and a one-frame trial encode works."""

from __future__ import annotations

import re
from dataclasses import dataclass

from halab.transcode.runners import Runner

RENDER_NODE = "/dev/dri/renderD128"

# A one-frame encode, with the frames uploaded to the device where the encoder needs it.
_TRIAL = {
    "libx264": ["-c:v", "libx264"],
    "h264_vaapi": [
        "-vaapi_device",
        RENDER_NODE,
        "-vf",
        "format=nv12,hwupload",
        "-c:v",
        "h264_vaapi",
    ],
    "h264_qsv": [
        "-init_hw_device",
        "qsv=hw",
        "-filter_hw_device",
        "hw",
        "-vf",
        "hwupload=extra_hw_frames=64,format=qsv",
        "-c:v",
        "h264_qsv",
    ],
    "h264_nvenc": ["-c:v", "h264_nvenc"],
}


@dataclass(frozen=True)
class EncoderStatus:
    name: str
    available: bool
    reason: str  # why not, in ffmpeg's words; "" when available


def listed_encoders(runner: Runner) -> set[str]:
    done = runner.run(["ffmpeg", "-hide_banner", "-encoders"], timeout=30)
    names = set()
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return names


def detect(runner: Runner, encoders: list[str]) -> dict[str, EncoderStatus]:
    listed = listed_encoders(runner)
    found: dict[str, EncoderStatus] = {}
    for name in encoders:
        if name not in listed:
            found[name] = EncoderStatus(name, False, "not in this ffmpeg build (ffmpeg -encoders)")
            continue
        argv = [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=256x144:rate=1",
            "-frames:v",
            "1",
            *_TRIAL[name],
            "-f",
            "null",
            "-",
        ]
        done = runner.run(argv, timeout=60)
        if done.returncode == 0:
            found[name] = EncoderStatus(name, True, "")
        else:
            lines = [_clean(line) for line in done.stderr.strip().splitlines() if line.strip()]
            found[name] = EncoderStatus(
                name, False, lines[0] if lines else f"trial encode exited {done.returncode}"
            )
    return found


def _clean(line: str) -> str:
    """Drop ffmpeg's "[Context @ 0x55d...] " prefix: the address changes on every run."""
    return re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*", "", line.strip())
