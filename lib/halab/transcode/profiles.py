"""What Plex asks a transcoder to do, and how each encoder does it.

A profile is a source kind and a target (height, bitrate); an encoder turns it into
ffmpeg arguments: libx264 on the CPU, h264_vaapi and h264_qsv on Intel (/dev/dri),
h264_nvenc on NVIDIA. Output goes to `-f null`: we measure the transcoder, not a disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from halab.errors import InputError, Problem


@dataclass(frozen=True)
class SampleSpec:
    """A test clip made with ffmpeg's own sources (testsrc2 and a tone): no downloads."""

    name: str
    codec: str  # ffmpeg encoder used to make it
    width: int
    height: int
    ten_bit: bool = False
    fps: int = 30

    def scaled(self, width: int, height: int) -> SampleSpec:
        """The same kind of clip at another size (tests use tiny frames)."""
        return SampleSpec(self.name, self.codec, width, height, self.ten_bit, self.fps)


SAMPLES = {
    "1080p-h264": SampleSpec("1080p-h264", "libx264", 1920, 1080),
    "1080p-hevc": SampleSpec("1080p-hevc", "libx265", 1920, 1080),
    "2160p-hevc10": SampleSpec("2160p-hevc10", "libx265", 3840, 2160, ten_bit=True),
}


@dataclass(frozen=True)
class Profile:
    name: str
    source: str  # a key of SAMPLES
    height: int
    bitrate_kbps: int
    description: str


PROFILES = {
    p.name: p
    for p in (
        Profile(
            "4k-hevc10-to-1080p",
            "2160p-hevc10",
            1080,
            8000,
            "4K HEVC 10-bit -> 1080p H.264 8 Mbit/s",
        ),
        Profile("1080p-hevc-to-720p", "1080p-hevc", 720, 4000, "1080p HEVC -> 720p H.264 4 Mbit/s"),
        Profile(
            "1080p-h264-to-720p", "1080p-h264", 720, 2000, "1080p H.264 -> 720p H.264 2 Mbit/s"
        ),
    )
}


def _scaled_height(profile: Profile, source_height: int) -> int:
    # Never upscale: a tiny test clip keeps its own size, relative to the profile.
    return min(profile.height, source_height)


def encoder_arguments(
    encoder: str, profile: Profile, source_height: int, render_node: str = "/dev/dri/renderD128"
) -> tuple[list[str], list[str]]:
    """(arguments before -i, arguments after -i) for one encoder and profile."""
    height = _scaled_height(profile, source_height)
    rate = [
        "-b:v",
        f"{profile.bitrate_kbps}k",
        "-maxrate",
        f"{profile.bitrate_kbps}k",
        "-bufsize",
        f"{profile.bitrate_kbps * 2}k",
    ]
    if encoder == "libx264":
        return [], [
            "-vf",
            f"scale=-2:{height},format=yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            *rate,
        ]
    if encoder == "h264_vaapi":
        return (
            [
                "-hwaccel",
                "vaapi",
                "-hwaccel_device",
                render_node,
                "-hwaccel_output_format",
                "vaapi",
            ],
            ["-vf", f"scale_vaapi=w=-2:h={height}:format=nv12", "-c:v", "h264_vaapi", *rate],
        )
    if encoder == "h264_qsv":
        return (
            [
                "-init_hw_device",
                f"vaapi=va:{render_node}",
                "-init_hw_device",
                "qsv=qs@va",
                "-hwaccel",
                "qsv",
                "-hwaccel_output_format",
                "qsv",
            ],
            [
                "-vf",
                f"scale_qsv=w=-1:h={height}:format=nv12",
                "-c:v",
                "h264_qsv",
                "-preset",
                "veryfast",
                *rate,
            ],
        )
    if encoder == "h264_nvenc":
        return (
            ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"],
            ["-vf", f"scale_cuda=-2:{height}", "-c:v", "h264_nvenc", "-preset", "p1", *rate],
        )
    raise unknown("encoder", encoder, ENCODERS)


ENCODERS = {
    "libx264": "H.264 on the CPU (x264, veryfast)",
    "h264_vaapi": "Intel GPU through VA-API (/dev/dri)",
    "h264_qsv": "Intel Quick Sync (/dev/dri)",
    "h264_nvenc": "NVIDIA NVENC",
}


def unknown(kind: str, name: str, known: Mapping[str, object]) -> InputError:
    return InputError(
        name, [Problem(kind, f"unknown {kind} {name!r}", f"known {kind}s: {', '.join(known)}")]
    )


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown("profile", name, dict(PROFILES))
    return PROFILES[name]


def check_encoder(name: str) -> str:
    if name not in ENCODERS:
        raise unknown("encoder", name, dict(ENCODERS))
    return name
