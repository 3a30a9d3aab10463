"""Community reference numbers, to put a result beside: labelled, never mixed with ours.

Source: ironicbadger/quicksync_calc results (snapshot 2025-12-14, medians per GPU group as
collected in reference/notebooks-and-benchmarks.md §4.3). Their test is a same-resolution
QSV re-encode at global_quality 18, which is harsher than Plex's downscaling profiles, so
the numbers orient; they are not the same test.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = (
    "community: quicksync_calc (same-resolution QSV re-encode, global_quality 18; "
    "not the same test as halab's profiles)"
)


@dataclass(frozen=True)
class CommunityRow:
    gpu: str
    cpu: str
    profile: str  # the halab profile closest to their test
    their_test: str
    max_streams: int | None  # concurrent streams >= 1.0x; None where they have no data
    single_speed: float | None


_ROWS = [
    ("UHD 630", "i5-8500T / i7-8700", 7, 2, 0, 6.6, 2.65, 0.57),
    ("UHD 770", "i5-13600K", 8, 2, 0, 7.5, 2.9, 0.84),
    ("UHD 770", "i5-14500", 10, 3, 1, 7.5, 2.9, 0.84),
    ("N100", "N100", None, None, None, None, 1.65, 0.54),
]
_TESTS = [
    ("1080p-h264-to-720p", "h264 1080p"),
    ("1080p-hevc-to-720p", "HEVC 8-bit 1080p"),
    ("4k-hevc10-to-1080p", "HEVC 10-bit 4K"),
]


def community_rows() -> list[CommunityRow]:
    rows = []
    for gpu, cpu, *values in _ROWS:
        streams, speeds = values[:3], values[3:]
        for (profile, test), n, speed in zip(_TESTS, streams, speeds, strict=True):
            rows.append(
                CommunityRow(
                    str(gpu),
                    str(cpu),
                    profile,
                    test,
                    None if n is None else int(n),
                    None if speed is None else float(speed),
                )
            )
    return rows
