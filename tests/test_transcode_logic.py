"""Progress parsing, steady state and the capacity search, on recorded and hand-made data."""

from __future__ import annotations

import pytest

from halab.errors import InputError
from halab.transcode.bench import BenchConfig, cluster_totals
from halab.transcode.capacity import search
from halab.transcode.harness import Probe, StreamMeasure
from halab.transcode.profiles import PROFILES, encoder_arguments
from halab.transcode.progress import ProgressParser, Sample, parse_lines, steady_state

from conftest import ROOT

RECORDED = (ROOT / "tests" / "data" / "progress-libx264.txt").read_text().splitlines()


def recorded_samples(period: float = 0.25) -> list[Sample]:
    """The recorded run (ffmpeg -re, so truly 1.0x) with a block every `period` seconds."""
    stamped, block = [], 0
    for line in RECORDED:
        block += line.startswith("progress=")  # a block is stamped when its last line arrives
        stamped.append((block * period, line))
    return parse_lines(stamped)


def test_recorded_blocks_parse() -> None:
    samples = recorded_samples()
    assert len(samples) == 10
    assert samples[0].frame == 1 and samples[-1].end
    assert samples[4].out_time_s == pytest.approx(0.333333)
    assert samples[4].speed == pytest.approx(0.329)


def test_steady_speed_is_not_ffmpegs_running_average() -> None:
    samples = recorded_samples()
    steady = steady_state(samples[:-1], warmup_s=1.25)  # drop the flush at the end
    assert steady is not None
    # The stream ran at realtime (-re); ffmpeg's average still shows the slow start.
    assert samples[-2].speed < 0.7
    assert steady.speed == pytest.approx(1.07, abs=0.05)
    assert steady.fps == pytest.approx(31, abs=2)


def test_parser_handles_any_chunking_and_na() -> None:
    parser = ProgressParser()
    out = [
        parser.feed(line, 1.0)
        for line in [
            "frame=N/A",
            "out_time_ms=2500000",
            "speed=N/A",
            "",
            "garbage",
            "progress=continue",
        ]
    ]
    sample = out[-1]
    assert sample is not None and sample.frame == 0 and sample.speed == 0.0
    assert sample.out_time_s == 2.5  # out_time_ms is microseconds too (ffmpeg quirk)
    assert out[:-1] == [None] * 5


def _samples(speeds: list[float], period: float = 0.25) -> list[Sample]:
    out, media = [], 0.0
    for i, speed in enumerate(speeds):
        media += speed * period
        out.append(Sample((i + 1) * period, int(media * 30), media, 0.0, 0.0, False))
    return out


def test_a_stall_inside_the_window_is_not_realtime() -> None:
    fast = _samples([1.5] * 40)
    steady = steady_state(fast, warmup_s=2, window_s=6)
    assert steady is not None and steady.realtime
    stalled = _samples([1.5] * 20 + [0.2] * 4 + [1.5] * 16)  # 1 s at 0.2x, mean still > 1
    steady = steady_state(stalled, warmup_s=2, window_s=6)
    assert steady is not None and steady.speed > 1.0 and not steady.realtime


def test_too_few_samples_say_nothing() -> None:
    assert steady_state(_samples([2.0] * 3), warmup_s=5, window_s=5) is None


def _probe(n: int, capacity: int) -> Probe:
    speed = 2.0 if n <= capacity else 0.5
    measures = []
    for i in range(n):
        samples = _samples([speed] * 20)
        measures.append(StreamMeasure(i, steady_state(samples, 1.0, 3.0), samples))
    return Probe(n, measures, cpu_percent=0.0, wall_s=0.0)


@pytest.mark.parametrize("capacity", [0, 1, 2, 3, 5, 7, 8, 9, 13, 16, 40])
@pytest.mark.parametrize("cap", [1, 8, 16])
def test_search_finds_the_capacity(capacity: int, cap: int) -> None:
    asked: list[int] = []

    def probe(n: int) -> Probe:
        asked.append(n)
        return _probe(n, capacity)

    result = search(probe, cap)
    assert result.max_streams == min(capacity, cap)
    assert result.capped == (capacity >= cap)
    assert len(asked) == len(set(asked))  # never the same level twice
    assert len(asked) <= 2 * cap.bit_length() + 1  # far fewer than a sweep of every level


def test_encoder_arguments_and_settings() -> None:
    before, after = encoder_arguments("h264_vaapi", PROFILES["4k-hevc10-to-1080p"], 2160)
    assert "-hwaccel" in before and "scale_vaapi=w=-2:h=1080:format=nv12" in after
    _, after = encoder_arguments("libx264", PROFILES["1080p-hevc-to-720p"], 180)
    assert "scale=-2:180,format=yuv420p" in after  # never upscale a small clip
    with pytest.raises(InputError) as info:
        BenchConfig(profiles=["4k"], encoders=["x264", "libx264"], max_streams=0)
    text = str(info.value)
    assert "unknown profile '4k'" in text and "unknown encoder 'x264'" in text
    assert "max_streams" in text and "libx264, h264_vaapi, h264_qsv, h264_nvenc" in text


def test_cluster_totals_share_and_balance() -> None:
    doc = {
        "workers": [
            {
                "name": "w3",
                "results": [
                    {
                        "profile": "p",
                        "encoder": "e",
                        "status": "measured",
                        "max_realtime_streams": 6,
                    }
                ],
            },
            {
                "name": "unraid",
                "results": [
                    {
                        "profile": "p",
                        "encoder": "e",
                        "status": "measured",
                        "max_realtime_streams": 2,
                    }
                ],
            },
            {"name": "gone", "status": "failed", "results": []},
        ]
    }
    (row,) = cluster_totals(doc)
    assert row["total_streams"] == 8 and row["share"] == {"w3": 0.75, "unraid": 0.25}
    assert row["balance"] == pytest.approx(2 / 6, abs=1e-3)


def test_gpu_facts_from_sysfs_listing() -> None:
    from halab.transcode.runners import parse_gpus

    text = "kernel 6.8.0-45-generic\ngpu card0 0x8086 0x4680 i915\ngpu card1 0x10de 0x2204 nvidia\n"
    facts = parse_gpus(text)
    assert facts["kernel"] == "6.8.0-45-generic"
    assert facts["gpus"] == [
        {"card": "card0", "vendor": "Intel", "pci_id": "8086:4680", "driver": "i915"},
        {"card": "card1", "vendor": "NVIDIA", "pci_id": "10de:2204", "driver": "nvidia"},
    ]
    assert parse_gpus("kernel 6.1.0\n") == {"kernel": "6.1.0", "gpus": []}
