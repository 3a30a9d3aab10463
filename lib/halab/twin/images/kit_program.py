"""A stand-in written in Python as a pod's process: this kit's interpreter, its packages
and its source bound read-only into the sandbox at the paths they have here."""

from __future__ import annotations

import sys
from pathlib import Path


def kit_program(module: str) -> tuple[list[str], dict[str, Path], dict[str, str]]:
    """argv, read-only binds and environment that run `python -m module` in a sandbox."""
    import halab

    source = Path(halab.__file__).resolve().parents[1]
    # The venv, the interpreter it was made from (pyenv's, a build of its own...) and the
    # kit's source, each where it is here.
    places = {Path(sys.prefix), Path(sys.base_prefix).resolve(), source}
    binds = {str(place): place for place in places}
    env = {"HALAB_NET_GUARD": "loopback", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return [sys.executable, "-m", module], binds, env
