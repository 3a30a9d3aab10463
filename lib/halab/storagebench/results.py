"""A storage benchmark's result: `halab.storagebench/v1` JSON, a table with each figure's
ratio to the local baseline measured in the same run, and a bar plot beside it.

```
{"schema": "halab.storagebench/v1", "created": "<ISO time>", "cluster": "<name>",
 "node": "<where the Jobs ran>", "fio": {"size": "256M", "runtime_s": 10},
 "baseline": "local",
 "subjects": [{"name": "local", "kind": "emptyDir", "volume": "<what was mounted>",
               "seq_read_mbps": .., "seq_write_mbps": .., "rand_read_iops": ..,
               "rand_write_iops": .., "read_p50_ms": .., "read_p99_ms": ..,
               "write_p50_ms": .., "write_p99_ms": ..}, ...]}
```
MB/s are 10^6 bytes a second; latencies are fio's completion latency percentiles of the
4 KiB random jobs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from halab.storagebench.fio import Figures

SCHEMA = "halab.storagebench/v1"
BASELINE = "local"
COLUMNS = {
    "seq_read_mbps": "seq read MB/s",
    "seq_write_mbps": "seq write MB/s",
    "rand_read_iops": "4k rand read IOPS",
    "rand_write_iops": "4k rand write IOPS",
    "read_p50_ms": "read p50 ms",
    "read_p99_ms": "read p99 ms",
    "write_p50_ms": "write p50 ms",
    "write_p99_ms": "write p99 ms",
}


@dataclass(frozen=True)
class Subject:
    name: str  # local, seaweedfs, nfs
    kind: str  # emptyDir, or the claim's storage
    volume: str  # what was mounted, in words
    figures: Figures


@dataclass
class StorageResult:
    cluster: str
    node: str
    fio: dict[str, Any]
    created: str
    subjects: list[Subject] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "cluster": self.cluster,
            "node": self.node,
            "fio": self.fio,
            "baseline": BASELINE,
            "subjects": [
                {"name": s.name, "kind": s.kind, "volume": s.volume, **asdict(s.figures)}
                for s in self.subjects
            ],
        }

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def table(self) -> pd.DataFrame:
        rows = [
            {"subject": s.name, "volume": s.volume, **{COLUMNS[k]: v for k, v in asdict(
                s.figures).items()}}
            for s in self.subjects
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=["subject", "volume", *COLUMNS.values()]).round(2)

    def ratios(self) -> pd.DataFrame:
        """Each figure over the local baseline's (for latency, above 1 is slower)."""
        base = next((s for s in self.subjects if s.name == BASELINE), None)
        rows = []
        for s in self.subjects:
            if base is None or s is base:
                continue
            mine, theirs = asdict(s.figures), asdict(base.figures)
            rows.append(
                {"subject": s.name, **{
                    COLUMNS[k]: round(mine[k] / theirs[k], 3) if theirs[k] else None
                    for k in COLUMNS
                }}
            )  # fmt: skip
        return pd.DataFrame(rows, columns=["subject", *COLUMNS.values()])

    def lines(self) -> list[str]:
        """The figures and ratios as text, for the CLI and the bench."""
        out = [self.table().to_string(index=False), ""]
        ratios = self.ratios()
        if not ratios.empty:
            out += ["ratio to local (same run, same fio jobs):", ratios.to_string(index=False)]
        return out

    def figure(self) -> Any:
        """Throughput, IOPS and latency side by side, the baseline first."""
        from matplotlib.figure import Figure  # no pyplot: no global state

        groups = [
            ("MB/s (sequential, 1 MiB)", ["seq_read_mbps", "seq_write_mbps"]),
            ("IOPS (random, 4 KiB)", ["rand_read_iops", "rand_write_iops"]),
            ("latency ms (random, 4 KiB)", ["read_p50_ms", "read_p99_ms", "write_p50_ms",
                                           "write_p99_ms"]),
        ]  # fmt: skip
        fig = Figure(figsize=(13, 3.8))
        axes = fig.subplots(1, 3)
        names = [s.name for s in self.subjects]
        for ax, (title, keys) in zip(axes, groups, strict=True):
            width = 0.8 / max(len(names), 1)
            for i, s in enumerate(self.subjects):
                values = [asdict(s.figures)[k] for k in keys]
                xs = [x + i * width for x in range(len(keys))]
                ax.bar(xs, values, width, label=s.name)
            ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(keys))])
            ax.set_xticklabels([COLUMNS[k].replace(" MB/s", "").replace(" IOPS", "")
                                .replace(" ms", "") for k in keys], fontsize=8)  # fmt: skip
            ax.set_title(title, fontsize=10)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"fio on {self.node} ({self.fio.get('size')} file): local is the baseline")
        fig.tight_layout()
        return fig
