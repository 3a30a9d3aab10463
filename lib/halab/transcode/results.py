"""Benchmark results on disk: the versioned JSON document, its tables, CSV export.

Schema "halab.bench/v1" (one JSON object):
- schema, kit_version, started / finished (Unix seconds), mode ("one-by-one" | "together")
- config: profiles, encoders, warmup_s, window_s, max_streams, clip_seconds, clip_size
- workers[]: name, status ("ok" | "failed"), reason, machine (host, arch, cores, cpu_model,
  dri, kernel, gpus [{card, vendor, pci_id, driver}], ffmpeg; job workers add image and
  gpu_resource), encoders {name: {available, reason}}, results[]:
  - profile, encoder, status ("measured" | "skipped"), reason, max_realtime_streams,
    capped (the cap was reached, the worker may hold more), probes[]:
    - streams, ok, cpu_percent, wall_s, per_stream[]: index, realtime, error, fps,
      speed, min_speed (slowest 1 s stretch), frames, samples [[t_s, frame, media_s], ...]
- cluster[]: profile, encoder, total_streams, per_worker {name: n}, share {name: 0..1}, balance
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from halab.errors import InputError, Problem
from halab.transcode.bench import SCHEMA


def load_result(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            str(p), [Problem("", f"no such file: {p}", "give a result written by `halab bench`")]
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            str(p), [Problem("", f"not JSON: {exc}", "give a result written by `halab bench`")]
        ) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(
            str(p),
            [
                Problem(
                    "schema",
                    f"expected {SCHEMA!r}, found {found!r}",
                    "give a result written by `halab bench`",
                )
            ],
        )
    return doc


def summary_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per worker x profile x encoder: the answer, and how one stream did."""
    rows = []
    for w in doc["workers"]:
        if w["status"] != "ok":
            rows.append(
                {
                    "worker": w["name"],
                    "profile": "",
                    "encoder": "",
                    "status": "failed",
                    "max_realtime_streams": None,
                    "reason": w["reason"],
                }
            )
            continue
        for r in w["results"]:
            single = next((p for p in r.get("probes", []) if p["streams"] == 1), None)
            one = single["per_stream"][0] if single and single["per_stream"] else {}
            rows.append(
                {
                    "worker": w["name"],
                    "profile": r["profile"],
                    "encoder": r["encoder"],
                    "status": r["status"],
                    "max_realtime_streams": r["max_realtime_streams"],
                    "capped": r.get("capped", False),
                    "single_stream_fps": one.get("fps"),
                    "single_stream_speed": one.get("speed"),
                    "reason": r.get("reason", ""),
                }
            )
    return pd.DataFrame(rows)


def streams_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per stream of every probe: what the plots are made of."""
    rows = []
    for w in doc["workers"]:
        for r in w.get("results", []):
            for p in r.get("probes", []):
                for s in p["per_stream"]:
                    rows.append(
                        {
                            "worker": w["name"],
                            "profile": r["profile"],
                            "encoder": r["encoder"],
                            "concurrency": p["streams"],
                            "probe_ok": p["ok"],
                            "cpu_percent": p["cpu_percent"],
                            "stream": s["index"],
                            "fps": s["fps"],
                            "speed": s["speed"],
                            "min_speed": s["min_speed"],
                            "realtime": s["realtime"],
                            "error": s["error"],
                        }
                    )
    columns = [
        "worker",
        "profile",
        "encoder",
        "concurrency",
        "probe_ok",
        "cpu_percent",
        "stream",
        "fps",
        "speed",
        "min_speed",
        "realtime",
        "error",
    ]
    return pd.DataFrame(rows, columns=columns)


def export_csv(doc: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = [directory / "summary.csv", directory / "streams.csv"]
    summary_frame(doc).to_csv(out[0], index=False)
    streams_frame(doc).to_csv(out[1], index=False)
    return out
