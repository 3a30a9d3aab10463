"""An experiment interrupted mid-fault is undone and the cluster returns to its steady
state; one killed outright leaves its journal, which refuses the next experiment until
`halab restore` undoes it. On the session's twin, with a drain (the fault that needs no
storage): the journal's mechanics are the same for every fault."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from kubernetes import client

from halab.context import open_context
from halab.experiments.journal import Journal
from halab.experiments.model import Experiment, Fault
from halab.experiments.runner import Runner, controller_lease
from halab.inventory import load_inventory

from twinlab import ROOT, TwinLab, eventually

pytestmark = [pytest.mark.twin]

SCRIPT = textwrap.dedent(
    """
    import sys
    from halab.context import open_context
    from halab.experiments.model import Experiment, Fault
    from halab.experiments.runner import Runner
    from halab.kube import api_client

    inventory, target, node, run_dir = sys.argv[1:5]
    ctx = open_context(inventory, target, run_dir=run_dir, allow_disruption=True)
    exp = Experiment("drill", f"drain {node}, to be interrupted", "", Fault("drain", node),
                     abort_after_s=120)
    Runner(ctx, api_client(ctx.target), say=lambda s: print(s, flush=True)).run(exp)
    print("ran to the end", flush=True)
    """
)


def _worker(lab: TwinLab) -> str:
    inv = load_inventory(lab.inventory)
    return next(n.name for n in inv.nodes if not n.is_server)


def _start(lab: TwinLab, node: str, run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(lab.inventory), str(lab.dir / "target.yaml"), node,
         str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _read_until(proc: subprocess.Popen[str], word: str, timeout: float = 120) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        if word in line:
            return seen
    proc.kill()
    raise AssertionError(f"never printed {word!r}:\n" + "\n".join(seen))


def _cordoned(lab: TwinLab, node: str) -> bool:
    return bool(client.CoreV1Api(lab.api()).read_node(node).spec.unschedulable)


def _steady(lab: TwinLab) -> bool:
    nodes = client.CoreV1Api(lab.api()).list_node().items
    return all(
        not n.spec.unschedulable
        and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        for n in nodes
    )


def test_an_interrupted_experiment_is_undone(twin: TwinLab, tmp_path: Path) -> None:
    node = _worker(twin)
    proc = _start(twin, node, tmp_path)
    _read_until(proc, f"cordoned {node}")
    assert _cordoned(twin, node)
    journal = twin.dir / "target.journal.json"
    assert journal.exists()  # written before the node was touched
    proc.send_signal(signal.SIGINT)  # a kernel interrupt, mid-fault
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "ran to the end" not in out, out
    assert "interrupted: undoing the fault" in out and "fault undone" in out, out
    assert not journal.exists()
    assert not _cordoned(twin, node)
    eventually(lambda: _steady(twin), 60, "every node Ready and schedulable")


def test_a_killed_experiment_waits_for_restore(twin: TwinLab, tmp_path: Path) -> None:
    node = _worker(twin)
    proc = _start(twin, node, tmp_path)
    _read_until(proc, f"cordoned {node}")
    os.kill(proc.pid, signal.SIGKILL)  # no finally runs
    proc.communicate(timeout=30)
    target = twin.dir / "target.yaml"
    journal = Journal(twin.dir / "target.journal.json")
    try:
        assert journal.read() is not None and _cordoned(twin, node)
        # The next experiment will not start on a cluster left half-changed.
        ctx = open_context(twin.inventory, target, run_dir=tmp_path, allow_disruption=True)
        other = Experiment("next", "another drain", "", Fault("drain", node))
        (refused,) = Runner(ctx, twin.api(), say=lambda _: None).run(other).checks
        assert refused.status == "fail" and "halab restore" in refused.detail, refused
        assert f"uncordon {node}" in refused.detail
    finally:
        done = subprocess.run(
            [sys.executable, "-m", "halab.cli", "restore", "--inventory", str(twin.inventory),
             "--target", str(target)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"uncordoned {node}" in done.stdout and "removed" in done.stdout, done.stdout
    assert journal.read() is None and not _cordoned(twin, node)
    again = subprocess.run(
        [sys.executable, "-m", "halab.cli", "restore", "--inventory", str(twin.inventory),
         "--target", str(target)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0 and "nothing to restore" in again.stdout
    eventually(lambda: _steady(twin), 60, "every node Ready and schedulable")


def test_two_hosts_off_lose_the_api_not_to_read_only_and_come_back(
    twin: TwinLab, tmp_path: Path
) -> None:
    """The plan's "any 2 hosts down: no quorum, read-only mode": two of the three
    control-plane hosts powered off at once. The planner says the API is lost; the reads
    made while they are off say whether it stayed readable, against the plan's claim;
    both hosts come back and the cluster is steady again."""
    from halab.experiments.expect import hosts_down
    from halab.experiments.model import host_scenario
    from halab.experiments.probes import api_read_probe
    from halab.phases import failover

    inv = load_inventory(twin.inventory)
    servers = [n for n in inv.nodes if n.is_server]
    # Two hosts, each with a server: those with the fewest nodes, the quickest to boot.
    pair = sorted({n.host for n in servers}, key=lambda h: (len(inv.nodes_on(h)), h))[:2]
    # Watched for a few seconds of the outage, not the scenario's full eviction time: with
    # the API gone nothing can move anyway.
    exp = replace(host_scenario(inv, pair), observe_s=6.0)
    ctx = open_context(twin.inventory, twin.dir / "target.yaml", run_dir=tmp_path,
                       allow_disruption=True)  # fmt: skip
    assert hosts_down(inv, exp) == set(pair)
    runner = Runner(ctx, twin.api(), [api_read_probe(twin.api())], say=lambda _: None)
    outcome = runner.run(exp)
    checks = {c.id: c for c in outcome.checks}
    cid = exp.id
    assert outcome.outlook is not None and not outcome.outlook.api_up
    assert checks[f"{cid}-restored"].status == "pass", checks
    assert f"{cid}-fault" not in checks, checks  # the outage did not abort it
    verdicts = {c.id: c for c in failover.verdicts(outcome)}
    api = verdicts[f"{cid}-api"]
    assert api.status == "pass" and "down as the planner says" in api.detail, api
    claim = verdicts[f"{cid}-read-only"]
    # Without quorum the twin's etcd answers no read, as etcd does: the claim fails
    # (advisory: it is the plan's word, not the cluster's health).
    assert claim.status == "fail" and not claim.required, claim
    assert "not read-only but gone" in claim.detail, claim
    assert not (twin.dir / "target.journal.json").exists()
    eventually(lambda: _steady(twin), 60, "every node Ready and schedulable")


def test_the_controller_managers_lease_names_a_server(twin: TwinLab) -> None:
    """Where the controller manager leads, read as the planner reads it at home."""
    inv = load_inventory(twin.inventory)
    lease = controller_lease(twin.api())
    assert lease is not None
    assert lease.node in {n.name for n in inv.nodes if n.is_server}, lease
    assert lease.duration_s == 15  # k3s passes no --leader-elect-lease-duration
