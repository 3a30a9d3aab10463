"""The storage benchmark's fio side against the real fio on this machine's disk, and its
result: the JSON schema, the ratios to the baseline, the figure."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from halab.storagebench.fio import FioOutputError, FioSpec, parse
from halab.storagebench.results import StorageResult, Subject

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")


def _fio(tmp_path: Path) -> str:
    spec = FioSpec("4M", 1)
    done = subprocess.run(
        ["sh", "-c", spec.script(str(tmp_path / "work"))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "work").exists()  # the script removes its directory
    return done.stdout


def test_fio_figures_from_a_real_run(tmp_path: Path) -> None:
    figures = parse("fetch http://dl-cdn.alpinelinux.org/...\n" + _fio(tmp_path))
    assert figures.seq_read_mbps > 0 and figures.seq_write_mbps > 0
    assert figures.rand_read_iops > 0 and figures.rand_write_iops > 0
    assert 0 < figures.read_p50_ms <= figures.read_p99_ms


def test_a_log_without_fio_json_says_so() -> None:
    with pytest.raises(FioOutputError, match="no fio JSON"):
        parse("sh: fio: not found\n")


def test_the_result_document_and_ratios(tmp_path: Path) -> None:
    local = parse(_fio(tmp_path))
    slower = type(local)(**{k: v / 4 for k, v in local.__dict__.items()})
    result = StorageResult("lab", "node-a", {"size": "4M", "runtime_s": 1}, "2026-12-02T00:00:00")
    result.subjects = [Subject("local", "emptyDir", "emptyDir", local),
                       Subject("nfs", "nfs", "ns/scratch", slower)]  # fmt: skip
    doc = json.loads(result.save(tmp_path / "r.json").read_text())
    assert doc["schema"] == "halab.storagebench/v1"
    assert {"seq_read_mbps", "rand_write_iops", "write_p99_ms"} <= set(doc["subjects"][1])
    ratios = result.ratios()
    assert list(ratios["subject"]) == ["nfs"]
    assert ratios["seq read MB/s"].iloc[0] == pytest.approx(0.25, abs=0.001)
    assert "ratio to local" in "\n".join(result.lines())
    result.figure().savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0
