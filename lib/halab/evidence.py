"""Check results, shown as a table in the notebook and saved beside it as evidence.

A notebook records its checks in an `Evidence`, shows them, and ends with
`evidence.finish(ev)`: that writes `<name>.checks.json` into the run directory and
raises CheckFailed when a required check failed, which fails the papermill run.
"""

from __future__ import annotations

import html
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from matplotlib.figure import Figure

from halab.errors import CheckFailed
from halab.explain import explain

Status = Literal["pass", "fail", "warn", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "warn", "skip")
COLOURS = {"pass": "#d4edda", "fail": "#f8d7da", "warn": "#fff3cd", "skip": "#e2e3e5"}
SCHEMA = "halab.checks/v1"


@dataclass
class Check:
    id: str
    title: str
    status: Status
    detail: str = ""
    data: Any = None
    seconds: float = 0.0
    required: bool = True

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.id}: status {self.status!r} is not one of {STATUSES}")


def timed(
    id: str, title: str, fn: Callable[[], Check | tuple[Status, str]], required: bool = True
) -> Check:
    """Run one check function and record how long it took; an exception is a failed check
    whose detail says what went wrong (halab.explain), not a crash."""
    start = time.perf_counter()
    try:
        result = fn()
        if isinstance(result, Check):
            check = result
        else:
            status, detail = result
            check = Check(id, title, status, detail, required=required)
    except Exception as exc:  # a check that raises has failed; say why and go on
        from halab.errors import HalabError

        detail = explain(exc)
        if not isinstance(exc, HalabError | OSError) and not _is_client_error(exc):
            # A bug rather than a cluster's answer: where it happened helps the report.
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            detail += f" at {last[0].filename}:{last[0].lineno}" if last else ""
        check = Check(id, title, "fail", detail, required=required)
    check.seconds = round(time.perf_counter() - start, 6)
    return check


def _is_client_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("kubernetes.", "urllib3."))


@dataclass(frozen=True)
class SavedFigure:
    path: Path

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()


@dataclass
class Evidence:
    name: str
    run_dir: Path
    checks: list[Check] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, *checks: Check) -> list[Check]:
        self.checks.extend(checks)
        return list(checks)

    def run(
        self,
        id: str,
        title: str,
        fn: Callable[[], Check | tuple[Status, str]],
        required: bool = True,
    ) -> Check:
        """Run one check function, timing it, and record it."""
        check = timed(id, title, fn, required)
        self.checks.append(check)
        return check

    def figure(self, fig: Figure, name: str) -> SavedFigure:
        """Save a figure beside the evidence (PNG) so the run's index can show it.

        The result shows the PNG when it is a cell's last expression: figures made with
        matplotlib.figure.Figure (no pyplot, so no global state) have no display of their own.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / f"{self.name}.{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        if path.name not in self.figures:
            self.figures.append(path.name)
        return SavedFigure(path)

    def table(self) -> pd.DataFrame:
        rows = [
            {
                "id": c.id,
                "check": c.title,
                "status": c.status,
                "required": c.required,
                "detail": c.detail,
                "seconds": c.seconds,
            }
            for c in self.checks
        ]
        return pd.DataFrame(
            rows, columns=["id", "check", "status", "required", "detail", "seconds"]
        )

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def failed_required(self) -> list[str]:
        return [c.id for c in self.checks if c.required and c.status == "fail"]

    def _repr_html_(self) -> str:
        return checks_html(self.checks)

    def save(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / f"{self.name}.checks.json"
        doc = {
            "schema": SCHEMA,
            "notebook": self.name,
            "started": self.started,
            "finished": time.time(),
            "counts": self.counts(),
            "passed": not self.failed_required(),
            "figures": self.figures,
            "checks": [asdict(c) for c in self.checks],
        }
        path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        return path


def checks_html(checks: list[Check]) -> str:
    rows = []
    for c in checks:
        req = "" if c.required else " <small>(advisory)</small>"
        rows.append(
            f'<tr style="background:{COLOURS[c.status]}"><td><code>{html.escape(c.id)}</code>'
            f"</td><td>{html.escape(c.title)}{req}</td><td><b>{c.status}</b></td>"
            f'<td style="white-space:pre-wrap">{html.escape(c.detail)}</td>'
            f"<td>{c.seconds:.2f}</td></tr>"
        )
    return (
        '<table class="halab-checks"><thead><tr><th>id</th><th>check</th><th>status</th>'
        "<th>detail</th><th>s</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def open_evidence(name: str, run_dir: str | Path) -> Evidence:
    return Evidence(name=name, run_dir=Path(run_dir))


def finish(ev: Evidence) -> Path:
    """Save the evidence; fail the notebook when a required check failed."""
    path = ev.save()
    counts = ev.counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    print(f"{ev.name}: {summary or 'no checks'} -> {path}")
    failed = ev.failed_required()
    if failed:
        raise CheckFailed(ev.name, failed)
    return path
