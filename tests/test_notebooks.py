"""The notebooks: committed clean, and executed headlessly through papermill and the runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from halab.inventory.yaml_source import read_yaml
from halab.runner import parse_phases, run_notebooks

from conftest import CLUSTER_YAML, ROOT
from helpers import papermill, write_yaml

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs_and_with_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "run_dir" in tagged[0].source and "inventory" in tagged[0].source
    assert code[-1].source.strip().startswith("evidence.finish(")
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.notebook
def test_halab_run_plan_and_phase0(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "halab.cli", "run", "--phases", "plan,0", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[1/2] plan: passed" in out.stderr and "[2/2] phase0: passed" in out.stderr
    (run_dir,) = list(tmp_path.iterdir())
    for name in ("plan", "phase0"):
        assert (run_dir / f"{name}.ipynb").exists() and (run_dir / f"{name}.html").exists()
        executed = nbformat.read(run_dir / f"{name}.ipynb", as_version=4)
        assert executed.metadata.papermill.parameters["run_dir"] == str(run_dir)
    plan_checks = json.loads((run_dir / "plan.checks.json").read_text())
    statuses = {c["id"]: c["status"] for c in plan_checks["checks"]}
    assert statuses["api-survives-any-host"] == "pass"
    assert any(
        k.startswith("finding-gpu-resource-name") and v == "fail" for k, v in statuses.items()
    )
    assert set(plan_checks["figures"]) == {
        "plan.topology.png",
        "plan.capacity.png",
        "plan.failures.png",
    }
    index = (run_dir / "index.html").read_text()
    assert 'href="plan.html"' in index and 'src="plan.topology.png"' in index
    assert "#f8d7da" in index  # failed (advisory) checks are coloured


@pytest.mark.notebook
def test_papermill_by_hand(tmp_path: Path) -> None:
    out = papermill(
        "notebooks/plan.ipynb",
        tmp_path / "out.ipynb",
        "-p",
        "inventory",
        "params/cluster.yaml",
        "-p",
        "run_dir",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "plan.checks.json").exists()


@pytest.mark.notebook
def test_required_check_failure_fails_the_plan_notebook(tmp_path: Path) -> None:
    # Move k3s-cp2 onto the Proxmox host: losing Proxmox now loses etcd quorum.
    data = read_yaml(CLUSTER_YAML).data
    data["nodes"][3]["host"] = "proxmox"
    inventory = write_yaml(tmp_path / "two-on-proxmox.yaml", data)
    result = run_notebooks(
        ["plan", "phase0"],
        notebook_dir=ROOT / "notebooks",
        inventory=inventory,
        run_dir=tmp_path / "run",
        cwd=ROOT,
        progress=lambda _: None,
    )
    assert [n.status for n in result.notebooks] == ["failed", "not run"]
    assert "CheckFailed" in result.notebooks[0].error
    assert "api-survives-any-host" in result.notebooks[0].error
    checks = {c["id"]: c for c in result.notebooks[0].checks["checks"]}
    assert "lost with proxmox down" in checks["api-survives-any-host"]["detail"]


def _tiny_notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("inventory = ''\nrun_dir = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


_EVIDENCE = (
    "from halab import evidence\nfrom halab.evidence import Check\n"
    "ev = evidence.open_evidence('{name}', run_dir)\n"
)


@pytest.mark.notebook
def test_runner_stops_at_first_failure_unless_told(tmp_path: Path) -> None:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _tiny_notebook(
        nbs / "plan.ipynb",
        _EVIDENCE.format(name="plan") + "ev.add(Check('x', 'X', 'fail'))\nevidence.finish(ev)",
    )
    _tiny_notebook(
        nbs / "phase0.ipynb",
        _EVIDENCE.format(name="phase0") + "ev.add(Check('y', 'Y', 'pass'))\nevidence.finish(ev)",
    )
    names = parse_phases("plan,0", nbs)
    stopped = run_notebooks(
        names,
        notebook_dir=nbs,
        inventory=CLUSTER_YAML,
        run_dir=tmp_path / "a",
        progress=lambda _: None,
    )
    assert [n.status for n in stopped.notebooks] == ["failed", "not run"]
    going = run_notebooks(
        names,
        notebook_dir=nbs,
        inventory=CLUSTER_YAML,
        run_dir=tmp_path / "b",
        keep_going=True,
        progress=lambda _: None,
    )
    assert [n.status for n in going.notebooks] == ["failed", "passed"]
    assert "not run" in (tmp_path / "a" / "index.html").read_text()


@pytest.mark.notebook
def test_a_secret_in_the_evidence_fails_the_run_and_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_NotARealTokenButLongEnough")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _tiny_notebook(
        nbs / "phase0.ipynb",
        _EVIDENCE.format(name="phase0") + "import os\nprint('oops', os.environ['GITHUB_TOKEN'])\n"
        "evidence.finish(ev)",
    )
    result = run_notebooks(
        ["phase0"],
        notebook_dir=nbs,
        inventory=CLUSTER_YAML,
        run_dir=tmp_path / "run",
        progress=lambda _: None,
    )
    (run,) = result.notebooks
    assert run.status == "failed" and run.leaked == ["GITHUB_TOKEN"]
    for f in (tmp_path / "run").iterdir():
        assert "ghp_NotARealTokenButLongEnough" not in f.read_text(errors="ignore"), f


@pytest.mark.notebook
def test_kernels_started_by_tests_inherit_the_network_guard(tmp_path: Path) -> None:
    assert os.environ["HALAB_NET_GUARD"] == "loopback"
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('192.168.1.11', 22), 1)\n"
        "    ev.add(Check('guard', 'guarded', 'fail', 'connected!'))\n"
        "except OSError as exc:\n"
        "    ev.add(Check('guard', 'guarded', 'pass', type(exc).__name__))\n"
        "evidence.finish(ev)"
    )
    _tiny_notebook(nbs / "phase0.ipynb", _EVIDENCE.format(name="phase0") + probe)
    result = run_notebooks(
        ["phase0"],
        notebook_dir=nbs,
        inventory=CLUSTER_YAML,
        run_dir=tmp_path / "run",
        progress=lambda _: None,
    )
    (check,) = result.notebooks[0].checks["checks"]
    assert check["status"] == "pass" and check["detail"] == "NetworkGuardError"
