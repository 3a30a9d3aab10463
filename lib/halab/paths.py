"""Where the project is, so notebooks find params/ and outputs/ from any working directory."""

from __future__ import annotations

from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The nearest directory upwards holding params/ and notebooks/; else the cwd."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params").is_dir() and (candidate / "notebooks").is_dir():
            return candidate
    return here


def resolve(path: str | Path) -> Path:
    """A relative path as given, if it exists; else relative to the project root.

    JupyterLab starts kernels in notebooks/, papermill in the project root; the same
    parameter value ("params/cluster.yaml") must work in both.
    """
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return project_root() / p
