"""The twin's GPU device nodes: there, with no driver behind them."""

from __future__ import annotations

import os
from pathlib import Path

DRM_MAJOR = 226  # the kernel's DRM character devices


def device_nodes(dri: Path) -> Path:
    """card0 and renderD128 as DRM character devices under `dri`: present, as the plugin
    and the plan's checks look for them, but with no driver behind them, so opening one
    fails (ENXIO) exactly as on a machine without the GPU."""
    dri.mkdir(parents=True, exist_ok=True)
    for name, minor in (("card0", 0), ("renderD128", 128)):
        path = dri / name
        if path.exists():
            continue
        try:
            os.mknod(path, 0o660 | 0o020000, os.makedev(DRM_MAJOR, minor))
        except PermissionError:
            path.touch()  # not root: a plain file, which opens but is no device
    return dri
