"""Execute notebooks with papermill, one after another, into outputs/runs/<id>/."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbconvert import HTMLExporter

from halab.inventory import load_inventory
from halab.runner.index import write_index
from halab.runner.kernel import IpcKernelManager
from halab.secrets import redact_file, secret_values
from halab.target import load_target


@dataclass
class NotebookRun:
    name: str
    status: str  # "passed" | "failed" | "not run"
    seconds: float = 0.0
    error: str = ""
    checks: dict[str, Any] = field(default_factory=dict)  # the checks.json document
    leaked: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    run_dir: Path
    notebooks: list[NotebookRun]

    @property
    def ok(self) -> bool:
        return all(n.status == "passed" for n in self.notebooks)


Progress = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def new_run_dir(root: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / stamp
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def run_notebooks(
    names: list[str],
    *,
    notebook_dir: Path,
    inventory: Path,
    target: Path | None = None,
    run_dir: Path,
    keep_going: bool = False,
    cwd: Path | None = None,
    cell_timeout: int = 1800,
    progress: Progress = _stderr,
    allow_disruption: bool = False,
) -> RunResult:
    """Run `names` in order; stop at the first failure unless `keep_going`."""
    inv = load_inventory(inventory)  # bad input fails here, before any kernel starts
    env_names = [ref.env for ref in inv.secrets.values()]
    if target is not None:
        env_names += list(load_target(target).secrets.values())
    secrets = secret_values(env_names)
    run_dir.mkdir(parents=True, exist_ok=True)
    results: list[NotebookRun] = []
    stopped = False
    for i, name in enumerate(names, 1):
        if stopped:
            results.append(NotebookRun(name, "not run", error="an earlier notebook failed"))
            continue
        progress(f"[{i}/{len(names)}] {name}: running ...")
        result = _run_one(
            name, notebook_dir, inventory, target, run_dir, cwd, cell_timeout, allow_disruption
        )
        for path in run_dir.glob(f"{name}.*"):
            result.leaked += [n for n in redact_file(path, secrets) if n not in result.leaked]
        if result.leaked:
            result.status = "failed"
            result.error = (
                f"secret value(s) of {', '.join(result.leaked)} found in the evidence; redacted"
            )
        summary = summarize(result.checks.get("checks", []))
        progress(
            f"[{i}/{len(names)}] {name}: {result.status} in {result.seconds:.1f} s "
            f"({summary})" + (f"\n    {result.error}" if result.error else "")
        )
        results.append(result)
        if result.status != "passed" and not keep_going:
            stopped = True
    outcome = RunResult(run_dir, results)
    index = write_index(run_dir, [_index_row(r) for r in results])
    progress(f"evidence: {index}")
    return outcome


def summarize(checks: list[dict[str, Any]]) -> str:
    """'2 pass, 6 fail (advisory), 9 warn': an advisory failure does not fail a notebook."""
    counts: dict[str, int] = {}
    for check in checks:
        status = check["status"]
        if status == "fail" and not check.get("required", True):
            status = "fail (advisory)"
        counts[status] = counts.get(status, 0) + 1
    order = ["pass", "fail", "fail (advisory)", "warn", "skip"]
    return ", ".join(f"{counts[s]} {s}" for s in order if s in counts) or "no checks recorded"


def _run_one(
    name: str,
    notebook_dir: Path,
    inventory: Path,
    target: Path | None,
    run_dir: Path,
    cwd: Path | None,
    cell_timeout: int,
    allow_disruption: bool = False,
) -> NotebookRun:
    source = notebook_dir / f"{name}.ipynb"
    output = run_dir / f"{name}.ipynb"
    offered: dict[str, Any] = {
        "inventory": str(inventory),
        "run_dir": str(run_dir),
        "target": str(target) if target else "",
        "allow_disruption": allow_disruption,
    }
    declared = papermill.inspect_notebook(str(source))
    parameters = {k: v for k, v in offered.items() if k in declared}
    start = time.perf_counter()
    status, error = "passed", ""
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            kernel_manager_class=IpcKernelManager,
            progress_bar=False,
            cwd=str(cwd) if cwd else None,
            execution_timeout=cell_timeout,
        )
    except papermill.PapermillExecutionError as exc:
        status, error = "failed", f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # timeouts and dead kernels come from nbclient, not papermill
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    checks_path = run_dir / f"{name}.checks.json"
    checks: dict[str, Any] = {}
    if checks_path.exists():
        checks = json.loads(checks_path.read_text(encoding="utf-8"))
    elif status == "passed":
        status, error = "failed", "the notebook recorded no evidence (no evidence.finish())"
    if output.exists():
        _export_html(output)
    return NotebookRun(name, status, seconds, error, checks)


def _export_html(notebook: Path) -> None:
    node = nbformat.read(str(notebook), as_version=4)  # type: ignore[no-untyped-call]
    exporter = HTMLExporter(template_name="lab")  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(node)
    notebook.with_suffix(".html").write_text(body, encoding="utf-8")


def _index_row(r: NotebookRun) -> dict[str, Any]:
    return {
        "name": r.name,
        "status": r.status,
        "seconds": r.seconds,
        "error": r.error,
        "checks": r.checks.get("checks", []),
        "figures": r.checks.get("figures", []),
    }
