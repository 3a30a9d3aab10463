"""A twin for tests: started from the shipped inventory with tuned failure timings (grace
and tolerations of a few seconds), reached only through its kubeconfig, always stopped."""

from __future__ import annotations

import copy
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from halab.inventory.yaml_source import read_yaml
from halab.kube import ClusterError, wait_for
from halab.twin import supervisor

from helpers import write_yaml

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
TUNED = {
    "node_monitor_grace_period_s": 4,
    "default_not_ready_toleration_s": 3,
    "default_unreachable_toleration_s": 3,
    "kube_vip": {"lease_duration_s": 2, "renew_deadline_s": 1, "retry_period_s": 1},
}
T = TypeVar("T")


def tuned_inventory(path: Path) -> Path:
    data: dict[str, Any] = copy.deepcopy(read_yaml(ROOT / "params" / "cluster.yaml").data)
    data["cluster"]["timing"] = copy.deepcopy(TUNED)
    return write_yaml(path, data)


@dataclass
class TwinLab:
    dir: Path
    inventory: Path

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}"
            )
        return done

    def api(self) -> Any:
        from kubernetes import client, config

        conf = client.Configuration()
        config.load_kube_config(str(self.kubeconfig), client_configuration=conf)
        return client.ApiClient(conf)

    def namespace(self) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        return name

    def fail(self, host: str) -> None:
        supervisor.fail(self.dir, host)

    def recover(self, host: str) -> None:
        supervisor.recover(self.dir, host)


def start(directory: Path) -> TwinLab:
    directory.mkdir(parents=True, exist_ok=True)
    inventory = tuned_inventory(directory / "cluster.yaml")
    supervisor.up(inventory, directory / "twin", timeout=120)
    return TwinLab(directory / "twin", inventory)


def eventually(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll until check() returns something truthy; fail the test naming what never happened."""
    try:
        return wait_for(check, timeout, what, every)
    except ClusterError as exc:
        raise AssertionError(str(exc)) from None
