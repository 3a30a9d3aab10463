"""One self-contained HTML file of a benchmark (plots embedded) that a user can post."""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from halab.transcode.charts import capacity_bars, fps_distribution, speed_vs_concurrency
from halab.transcode.community import SOURCE, community_rows
from halab.transcode.results import summary_frame

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:90%}th{background:#f0f0f0}img{max-width:100%;margin:.5em 0}
.note{color:#555;font-size:90%}"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", escape=True, border=0)


def community_frame(profiles: list[str] | None = None) -> pd.DataFrame:
    rows = [r.__dict__ for r in community_rows()]
    frame = pd.DataFrame(rows)
    if profiles:
        frame = frame[frame.profile.isin(profiles)]
    return frame.assign(source=SOURCE)


def render_report(doc: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(doc["started"], tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    machines = pd.DataFrame(
        [
            {
                "worker": w["name"],
                "status": w["status"],
                **{
                    k: (", ".join(v) if isinstance(v, list) else v)
                    for k, v in w.get("machine", {}).items()
                },
                "reason": w.get("reason", ""),
            }
            for w in doc["workers"]
        ]
    )
    encoders = pd.DataFrame(
        [
            {"worker": w["name"], "encoder": name, **info}
            for w in doc["workers"]
            for name, info in w.get("encoders", {}).items()
        ]
    )
    summary = summary_frame(doc)
    profiles = sorted({p for p in summary.get("profile", []) if p})
    community = community_frame(profiles)
    cfg = doc["config"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>halab transcode benchmark"
        f"</title><style>{_STYLE}</style></head><body>",
        "<h1>Transcode benchmark</h1>",
        f"<p>{html.escape(when)} · halab {html.escape(str(doc.get('kit_version')))} · "
        f"{html.escape(doc.get('mode', ''))} · window {cfg['window_s']} s after "
        f"{cfg['warmup_s']} s warm-up · cap {cfg['max_streams']} streams</p>",
        "<p class='note'>A stream counts as realtime when its steady speed over the window, "
        "and over every 1 s stretch of it, is at least 1.0x. Speeds come from differences "
        "between ffmpeg progress samples, not from ffmpeg's running averages.</p>",
        "<h2>Result</h2>",
        _table(summary),
    ]
    if doc.get("cluster"):
        cluster = pd.DataFrame(
            [
                {
                    **{k: v for k, v in c.items() if k not in ("per_worker", "share")},
                    "per_worker": ", ".join(f"{w}: {n}" for w, n in c["per_worker"].items()),
                    "share": ", ".join(f"{w}: {s:.0%}" for w, s in c["share"].items()),
                }
                for c in doc["cluster"]
            ]
        )
        parts += ["<h2>Cluster total</h2>", _table(cluster)]
    parts += [
        "<h2>Speed per stream against concurrency</h2>",
        _png(speed_vs_concurrency(doc)),
        "<h2>fps per stream</h2>",
        _png(fps_distribution(doc)),
        "<h2>Capacity, beside community numbers</h2>",
        _png(capacity_bars(doc, community)),
        f"<p class='note'>{html.escape(SOURCE)}</p>",
        _table(community),
        "<h2>Workers</h2>",
        _table(machines),
        "<h2>Encoders</h2>",
        _table(encoders),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(doc: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(doc), encoding="utf-8")
    return out


def compare_frame(docs: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """Several results side by side, then the community rows, labelled as such."""
    frames = []
    for label, doc in docs:
        s = summary_frame(doc)
        s = s[s.status == "measured"]
        frames.append(
            s.assign(result=label)[
                [
                    "result",
                    "worker",
                    "profile",
                    "encoder",
                    "max_realtime_streams",
                    "single_stream_speed",
                ]
            ]
        )
    profiles = sorted({p for f in frames for p in f.profile})
    community = community_frame(profiles)
    frames.append(
        pd.DataFrame(
            {
                "result": "community",
                "worker": community.gpu + " (" + community.cpu + ")",
                "profile": community.profile,
                "encoder": "h264_qsv (their test)",
                "max_realtime_streams": community.max_streams,
                "single_stream_speed": community.single_speed,
            }
        )
    )
    return pd.concat(frames, ignore_index=True)


def compare_chart(table: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(max(6, 0.9 * len(table)), 4))
    ax = fig.add_subplot(1, 1, 1)
    colours = ["#9e9e9e" if r == "community" else "#1565c0" for r in table.result]
    ax.bar(range(len(table)), table.max_realtime_streams.astype(float).fillna(0), color=colours)
    ax.set_xticks(
        range(len(table)),
        [f"{r.result}\n{r.worker}\n{r.profile}" for r in table.itertuples()],
        fontsize=6,
        rotation=90,
    )
    ax.set_ylabel("max concurrent realtime streams")
    ax.set_title("Results compared (grey: community, a different test)")
    fig.tight_layout()
    return fig


def render_compare(docs: list[tuple[str, dict[str, Any]]]) -> str:
    table = compare_frame(docs)
    return "\n".join(
        [
            f"<!doctype html><html><head><meta charset='utf-8'><title>halab benchmark comparison"
            f"</title><style>{_STYLE}</style></head><body><h1>Benchmark comparison</h1>",
            _table(table),
            _png(compare_chart(table)),
            f"<p class='note'>{html.escape(SOURCE)}</p></body></html>",
        ]
    )
