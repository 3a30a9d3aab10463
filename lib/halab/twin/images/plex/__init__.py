"""Plex Media Server in the twin: a stand-in for linuxserver/plex that answers Plex's HTTP
API as python-plexapi reads it, keeps its state on /config, and, with ClusterPlex's PMS
dockermod in DOCKER_MODS, sends its transcodes to the orchestrator as the mod's shim does
(server.py, library.py, transcode.py)."""

from __future__ import annotations

from halab.twin.images.clusterplex import WORKER_MOD, role_of

PLEX_IMAGE = "plex"
PMS_MOD = "clusterplex_dockermod"
RUNS = (
    "stand-in: Plex Media Server (its HTTP API, library scan, universal transcoder); "
    "this machine's ffmpeg in place of Plex Transcoder"
)
RUNS_WITH_MOD = RUNS + "; ClusterPlex PMS dockermod (job poster, Socket.IO v4)"


def has_pms_mod(env: dict[str, str]) -> bool:
    mods = env.get("DOCKER_MODS", "").split("|")
    return any(m.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == PMS_MOD for m in mods)


def is_plex(image: str, env: dict[str, str]) -> bool:
    """linuxserver/plex (or plexinc/pms-docker) that is not a ClusterPlex worker: the worker
    dockermod makes the same image a worker instead."""
    name = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    if name not in (PLEX_IMAGE, "pms-docker"):
        return False
    return role_of(image, env) is None and WORKER_MOD not in env.get("DOCKER_MODS", "")
