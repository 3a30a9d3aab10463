"""Shared fixtures. The network guard is on for every test and every process tests start."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before halab is imported, so this process and every child (notebook kernels) is fenced.
os.environ["HALAB_NET_GUARD"] = "loopback"

from clusterplex_peers import HOST, WORKER_HOST, Program, free_port
from halab import netguard
from halab.inventory.yaml_source import read_yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "params" / "cluster.yaml"

netguard.install()


@pytest.fixture(autouse=True)
def _network_guard() -> Iterator[None]:
    """Fail the test loudly if it tried to leave 127.0.0.0/8, even if the code caught it."""
    netguard.refused.clear()
    yield
    if netguard.refused:
        attempts = ", ".join(repr(a) for a in netguard.refused)
        netguard.refused.clear()
        pytest.fail(f"test tried to connect outside 127.0.0.0/8: {attempts}")


@pytest.fixture(scope="session")
def plan_data() -> dict[str, Any]:
    """params/cluster.yaml as plain data (tests deep-copy and break it)."""
    data: dict[str, Any] = read_yaml(CLUSTER_YAML).data
    return data


@pytest.fixture
def data(plan_data: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(plan_data)


@pytest.fixture(scope="session")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One twin for the session, shared by tests that do not fail hosts; always stopped."""
    from halab.twin import supervisor

    from twinlab import start

    directory = tmp_path_factory.mktemp("twin")
    try:
        lab = start(directory)
        yield lab
    finally:
        supervisor.down(directory / "twin")


# ClusterPlex's stand-ins (or the real programs, see clusterplex_peers) on loopback.


@pytest.fixture
def start_orchestrator(tmp_path: Path) -> Iterator[Callable[..., tuple[Any, str]]]:
    started: list[Any] = []

    def start(strategy: str = "LOAD_RANK") -> tuple[Any, str]:
        port = free_port(HOST)
        env = {"LISTENING_PORT": str(port), "WORKER_SELECTION_STRATEGY": strategy}
        program = Program("orchestrator", HOST, env, tmp_path / f"orchestrator-{port}.log")
        started.append(program)
        program.wait_line("Server listening on port")
        return program, f"http://{HOST}:{port}"

    yield start
    for program in started:
        program.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    started: list[Any] = []

    def start(url: str, hostname: str, **env: str) -> Any:
        port = free_port(WORKER_HOST)
        settings = {
            "ORCHESTRATOR_URL": url,
            "HOSTNAME": hostname,
            "LISTENING_PORT": str(port),
            "STAT_CPU_INTERVAL": "500",
            **env,
        }
        program = Program("worker", WORKER_HOST, settings, tmp_path / f"worker-{hostname}.log")
        started.append(program)
        return program

    yield start
    for program in started:
        program.stop()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """SeaweedFS shared by the modules that need it goes once the last of them is done."""
    from seaweed_storage import SHARED

    if SHARED.due(nextitem):
        SHARED.release()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing twin test carries the twin's state and its hosts' recent log lines, so a
    CI failure can be understood from its report alone."""
    report = yield
    lab = getattr(item, "funcargs", {}).get("twin") or getattr(item, "funcargs", {}).get("lab")
    if report.failed and lab is not None:
        from twinlab import diagnostics

        report.sections.append(("twin at failure", diagnostics(lab)))
    return report
