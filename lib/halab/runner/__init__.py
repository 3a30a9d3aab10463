"""Run notebooks headlessly with papermill into a run directory, and index the evidence."""

from halab.runner.execute import NotebookRun, RunResult, run_notebooks
from halab.runner.phases import available, parse_phases

__all__ = ["NotebookRun", "RunResult", "available", "parse_phases", "run_notebooks"]
