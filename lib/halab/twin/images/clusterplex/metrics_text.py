"""Prometheus text as prom-client 15 writes it: HELP and TYPE per family, families apart by
a blank line, counters under their bare names (no `_total`), numbers as JavaScript prints
them, and a labelled family with no series yet as its two comment lines alone."""

from __future__ import annotations

import math
from dataclasses import dataclass


def js_number(value: float) -> str:
    """A number as JavaScript's String() gives it: 3, 0.25, NaN."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    kind: str  # counter or gauge
    # Label value of `worker_name` (or "" for an unlabelled family) -> value.
    samples: dict[str, float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(families: list[Family]) -> str:
    blocks = []
    for family in families:
        lines = [f"# HELP {family.name} {family.help}", f"# TYPE {family.name} {family.kind}"]
        for label, value in family.samples.items():
            labels = f'{{worker_name="{_escape(label)}"}}' if label else ""
            lines.append(f"{family.name}{labels} {js_number(value)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
