"""Evidence: checks recorded, saved beside the notebook, and a failed required check fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halab import evidence
from halab.errors import CheckFailed
from halab.evidence import Check
from halab.secrets import leaks_in_text, redact_file, secret_values


def test_finish_saves_and_passes(tmp_path: Path) -> None:
    ev = evidence.open_evidence("demo", tmp_path)
    ev.add(Check("a", "A", "pass"), Check("b", "B", "warn", required=False))
    path = evidence.finish(ev)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "halab.checks/v1" and doc["passed"] is True
    assert doc["counts"] == {"pass": 1, "fail": 0, "warn": 1, "skip": 0}


def test_a_failed_required_check_fails_the_notebook(tmp_path: Path) -> None:
    ev = evidence.open_evidence("demo", tmp_path)
    ev.add(Check("ok", "fine", "pass"), Check("bad", "broken", "fail"))
    with pytest.raises(CheckFailed, match="demo: 1 required check"):
        evidence.finish(ev)
    assert json.loads((tmp_path / "demo.checks.json").read_text())["passed"] is False


def test_an_advisory_failure_does_not(tmp_path: Path) -> None:
    ev = evidence.open_evidence("demo", tmp_path)
    ev.add(Check("finding", "plan is wrong here", "fail", required=False))
    evidence.finish(ev)


def test_run_turns_an_exception_into_a_failed_check(tmp_path: Path) -> None:
    ev = evidence.open_evidence("demo", tmp_path)

    def broken() -> Check:
        raise RuntimeError("no route")

    check = ev.run("probe", "Probe", broken)
    assert check.status == "fail" and "RuntimeError: no route" in check.detail
    assert ev.run("t", "tuple", lambda: ("warn", "meh")).status == "warn"


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        Check("x", "X", "maybe")  # type: ignore[arg-type]


def test_html_table_colours_by_status(tmp_path: Path) -> None:
    ev = evidence.open_evidence("demo", tmp_path)
    ev.add(Check("x", "<b>X</b>", "fail"))
    html = ev._repr_html_()
    assert "#f8d7da" in html and "&lt;b&gt;X&lt;/b&gt;" in html


def test_secret_scan_and_redaction(tmp_path: Path) -> None:
    values = secret_values(
        ["K3S_TOKEN", "SHORT", "UNSET"], {"K3S_TOKEN": "K10abcdef::server:s3cr3t", "SHORT": "abc"}
    )
    assert values == {"K3S_TOKEN": "K10abcdef::server:s3cr3t"}
    f = tmp_path / "nb.ipynb"
    f.write_text('{"text": "token is K10abcdef::server:s3cr3t"}')
    assert leaks_in_text(f.read_text(), values) == ["K3S_TOKEN"]
    assert redact_file(f, values) == ["K3S_TOKEN"]
    assert "s3cr3t" not in f.read_text() and "«redacted»(K3S_TOKEN)" in f.read_text()
