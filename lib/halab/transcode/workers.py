"""Turn worker names from the command line or a notebook into runners.

"local" is this machine. "job:NODE" runs each command as a Kubernetes Job pinned to
NODE, through the target's kubeconfig. Any other name is a node or host of the
inventory, reached over SSH at the address the target maps it to.
"""

from __future__ import annotations

from halab.errors import InputError, Problem
from halab.hosts import SshHost
from halab.inventory import Inventory
from halab.target import Target
from halab.transcode.runners import LocalRunner, Runner, SshRunner

# An image with ffmpeg for Job workers. The twin runs plain OS images (debian, ubuntu)
# as real processes with this machine's /usr, so on the twin pass --job-image debian:12.
DEFAULT_JOB_IMAGE = "lscr.io/linuxserver/ffmpeg:latest"


def runners_for(
    names: list[str],
    inventory: Inventory | None,
    target: Target | None,
    job_image: str = DEFAULT_JOB_IMAGE,
) -> list[Runner]:
    runners: list[Runner] = []
    problems: list[Problem] = []
    for name in names:
        if name == "local":
            runners.append(LocalRunner())
            continue
        if inventory is None or target is None:
            problems.append(
                Problem(
                    "workers",
                    f"worker {name!r} needs an inventory and a target to be reached",
                    "pass --target (and --inventory), or use 'local'",
                )
            )
            continue
        if name.startswith("job:"):
            from halab.kube import api_client
            from halab.transcode.jobs import KubeJobRunner

            pinned = name.split(":", 1)[1]
            if pinned not in {n.name for n in inventory.nodes}:
                problems.append(
                    Problem(
                        "workers",
                        f"no node {pinned!r} for {name!r}",
                        f"one of: {', '.join('job:' + n.name for n in inventory.nodes)}",
                    )
                )
                continue
            runners.append(KubeJobRunner(api_client(target), inventory, pinned, job_image))
            continue
        address = None
        for node in inventory.nodes:
            if node.name == name:
                address = node.address
        for host in inventory.hosts:
            if host.name == name:
                address = host.address
        if address is None:
            known = [n.name for n in inventory.nodes] + [h.name for h in inventory.hosts]
            problems.append(
                Problem(
                    "workers",
                    f"no node or host {name!r} in the inventory",
                    f"use local or one of: {', '.join(known)}",
                )
            )
            continue
        mapped = str(target.addresses.map(address))
        runners.append(SshRunner(SshHost(name, mapped, target.ssh)))
    if problems:
        raise InputError(", ".join(names), problems)
    return runners
