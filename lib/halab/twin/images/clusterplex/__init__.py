"""ClusterPlex in the twin: stand-ins for the orchestrator and the worker dockermod that
speak the real Socket.IO protocol, run as their pods' processes (or compose services).

They are Python programs of this kit, run in the pod's sandbox with the kit's own
interpreter and packages bound in read-only. The worker has no Plex Transcoder to run
(Plex's binary is not on this machine): it runs this machine's ffmpeg in its place, and
its /dev/dri (where the GPU plugin gave one) has no driver behind it, so VA-API fails as it
does on a machine without the driver.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from halab.twin.images.kit_program import kit_program

Role = Literal["orchestrator", "worker"]
ORCHESTRATOR_IMAGE = "clusterplex_orchestrator"
WORKER_MOD = "clusterplex_worker_dockermod"
RUNS: dict[Role, str] = {
    "orchestrator": "stand-in: ClusterPlex orchestrator (Socket.IO v4, python-socketio)",
    "worker": (
        "stand-in: ClusterPlex worker (Socket.IO v4, python-socketio); this machine's ffmpeg "
        "in place of Plex Transcoder, no GPU driver"
    ),
}


def role_of(image: str, env: dict[str, str]) -> Role | None:
    """The orchestrator's own image, or any image with the worker dockermod in DOCKER_MODS
    (linuxserver/plex is how the chart and the plan run workers)."""
    name = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    if name == ORCHESTRATOR_IMAGE:
        return "orchestrator"
    mods = env.get("DOCKER_MODS", "")
    if any(m.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == WORKER_MOD for m in mods.split("|")):
        return "worker"
    return None


def stand_in(role: Role) -> tuple[list[str], dict[str, Path], dict[str, str]]:
    """argv, read-only binds and environment for the stand-in."""
    argv, binds, env = kit_program(f"halab.twin.images.clusterplex.{role}")
    if role == "worker" and (ffmpeg := shutil.which("ffmpeg")):
        argv += ["--default-transcoder", ffmpeg]
    return argv, binds, env
