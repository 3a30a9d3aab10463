"""environment.yml lists what pyproject.toml lists, so conda users get the same kit."""

from __future__ import annotations

import re
import tomllib

from ruamel.yaml import YAML

from conftest import ROOT

# conda-forge names the Kubernetes client and the Prometheus client differently.
CONDA_NAMES = {
    "kubernetes": "python-kubernetes",
    "types-pyyaml": "types-pyyaml",
    "prometheus-client": "prometheus_client",
}


def _split(spec: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec.strip())
    assert match, spec
    return match.group(1).lower(), match.group(2).replace(" ", "")


def test_environment_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(
        _split(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]
    )
    wanted = {CONDA_NAMES.get(name, name): spec for name, spec in wanted.items()}
    env = YAML(typ="safe").load((ROOT / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str))
    conda.pop("python"), conda.pop("pip")
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda.update(_split(d) for d in pip_section if not d.startswith("-"))
    assert conda == wanted
