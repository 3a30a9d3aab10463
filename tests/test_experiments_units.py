"""Experiments without a cluster: the plan's tests built from any inventory, bad
experiment files refused by field, the planner's expectation, the timeline read from
samples, predicted against observed, and the journal's rules."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from halab.errors import InputError
from halab.experiments.expect import (
    START_ALLOWANCE_S,
    ControllerLease,
    outlook,
    tolerance_s,
)
from halab.experiments.journal import Journal, JournalError
from halab.experiments.model import (
    Experiment,
    Fault,
    check_subjects,
    experiment_from,
    load_experiments,
    phase5_tests,
)
from halab.experiments.probes import Repeated, Sample
from halab.experiments.timeline import (
    comparison,
    findings,
    lane_events,
    pod_events,
    running_again,
    segments,
    swimlane,
)
from halab.exports_file import parse, without_client
from halab.inventory import Inventory, load_inventory
from halab.target import load_target

from helpers import write_yaml
from twinlab import OTHER_SHAPE, ROOT, TUNED, tuned_inventory

PLAN = ROOT / "params" / "cluster.yaml"


@pytest.fixture(scope="module")
def plan() -> Inventory:
    return load_inventory(PLAN)


def test_the_plans_tests_come_from_the_inventory(plan: Inventory) -> None:
    test1, test2, test3 = phase5_tests(plan)
    # The plan's Sonarr prefers role=primary: w1.
    assert test1.fault == Fault("drain", "k3s-w1") and test1.follow == ("sonarr",)
    assert test1.return_home
    assert test2.fault == Fault("stop-volume-server", "k3s-w1")
    assert test3.fault == Fault("cut-nfs", "k3s-w1")
    other = load_inventory(OTHER_SHAPE)
    o1, o2, o3 = phase5_tests(other)
    assert o3.fault == Fault("cut-nfs", "cyclops")
    # tvdb-sync may run on tier=apps nodes only: cyclops.
    assert o1.fault == Fault("drain", "cyclops") and o1.follow == ("tvdb-sync",)
    assert o2.fault.kind == "stop-volume-server"
    assert o2.fault.subject in {n.name for n in other.seaweed_volume_servers}


def test_a_bad_experiment_is_refused_by_field(plan: Inventory, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"experiments\[0\]\.fault"):
        experiment_from(
            {"id": "x", "title": "t", "fault": {"kind": "melt"}}, "f.yaml", "experiments[0]"
        )
    with pytest.raises(InputError, match=r"unknown field.*colour"):
        experiment_from(
            {"id": "x", "title": "t", "fault": {"kind": "drain", "subject": "a"}, "colour": 1},
            "f.yaml",
            "e",
        )
    path = write_yaml(
        tmp_path / "mine.yaml",
        {
            "experiments": [
                {"id": "w9", "title": "drain w9", "fault": {"kind": "drain", "subject": "k3s-w9"}}
            ]
        },
    )
    with pytest.raises(InputError) as caught:
        load_experiments(path, plan)
    text = str(caught.value)
    assert "experiments[0].fault.subject" in text and "'k3s-w9' is no node" in text
    assert "k3s-w1" in text  # the fix: the nodes there are
    with pytest.raises(InputError, match="runs no SeaweedFS volume server"):
        other = load_inventory(OTHER_SHAPE)
        check_subjects(Experiment("v", "v", "", Fault("stop-volume-server", "eos")), other)


def test_the_planner_expects_for_this_inventory(plan: Inventory, tmp_path: Path) -> None:
    test1, test2, _ = phase5_tests(plan)
    drained = outlook(plan, test1, {"sonarr": "k3s-w1"})
    (sonarr,) = drained.apps
    # Only a preference for role=primary: any node it fits may take it (finding
    # workload-fallback), not just the plan's w2.
    assert sonarr.moves and sonarr.next_nodes == ("k3s-cp1", "k3s-cp2", "k3s-w2")
    assert sonarr.predicted_s == 0.0
    assert drained.api_up and drained.down_nodes == ("k3s-w1",)
    # Where it does not run on the drained node, it stays.
    assert not outlook(plan, test1, {"sonarr": "k3s-w2"}).apps[0].moves
    stopped = outlook(plan, test2, {"sonarr": "k3s-w1"})
    assert stopped.seaweed_readable and not stopped.apps[0].moves
    # A host powered off: grace + toleration + the RWO force detach, from the inventory.
    tuned = load_inventory(tuned_inventory(tmp_path / "tuned.yaml"))
    off = Experiment("s1", "proxmox off", "", Fault("power-off", "proxmox"), follow=("sonarr",))
    (moved,) = outlook(tuned, off, {"sonarr": "k3s-w1"}).apps
    want = (
        TUNED["node_monitor_grace_period_s"]
        + TUNED["default_unreachable_toleration_s"]
        + TUNED["force_detach_s"]
    )
    assert moved.predicted_s == want and "k3s-w2" in moved.next_nodes
    # The controller manager leading on a node that goes: nothing is marked NotReady until
    # another server has taken its lease; leading elsewhere, nothing is added.
    (late,) = outlook(tuned, off, {"sonarr": "k3s-w1"}, lease=ControllerLease("k3s-cp1", 15)).apps
    assert late.predicted_s == want + 15 and "lease on k3s-cp1" in late.why, late
    (kept,) = outlook(tuned, off, {"sonarr": "k3s-w1"}, lease=ControllerLease("k3s-cp2", 15)).apps
    assert kept.predicted_s == want
    # The shipped inventory's defaults: 50 s grace from 1.32, 300 s, 6 min detach.
    (slow,) = outlook(plan, off, {"sonarr": "k3s-w1"}).apps
    assert slow.predicted_s == 50 + 300 + 360
    # The NFS server's host off, with the media apps on its node (where a first scenario
    # left them): they are evicted, but a replacement cannot mount the media until the
    # host is back, so no time is predicted; the orchestrator, without media, moves.
    nfs_off = Experiment(
        "s2", "unraid off", "", Fault("power-off", "unraid"),
        follow=("plex", "sonarr", "clusterplex-orchestrator"),
    )  # fmt: skip
    on_w2 = {a: "k3s-w2" for a in nfs_off.follow}
    seen = {a.app: a for a in outlook(tuned, nfs_off, on_w2).apps}
    for app in ("plex", "sonarr"):
        assert seen[app].moves and seen[app].predicted_s is None, seen[app]
        assert "served from unraid, which is off" in seen[app].why
    assert seen["clusterplex-orchestrator"].predicted_s is not None


def test_two_hosts_off_at_once_is_the_plans_read_only_claim(plan: Inventory) -> None:
    """The plan's "any 2 hosts down: no quorum, read-only mode" as one experiment: both
    powered off (each undo journalled), every node of both gone, the API lost by the
    planner, so nothing is expected to move and the outage does not abort it."""
    from halab.experiments.expect import hosts_down
    from halab.experiments.model import host_scenario
    from halab.phases import failover

    pair = host_scenario(plan, ["proxmox", "pi"])
    assert pair.id == "host-proxmox-pi" and pair.fault.subjects == ("proxmox", "pi")
    assert pair.fault.text.startswith("power proxmox and pi off hard")
    assert pair.fault.undo_text == "power proxmox and pi on"
    check_subjects(pair, plan)
    seen = outlook(plan, pair, {"sonarr": "k3s-w1"})
    assert set(seen.down_nodes) == {n.name for h in ("proxmox", "pi") for n in plan.nodes_on(h)}
    assert not seen.api_up and hosts_down(plan, pair) == {"proxmox", "pi"}
    assert all(a.predicted_s is None and "API is lost" in a.why for a in seen.apps if a.moves)
    assert pair.max_api_down_s == pair.observe_s + 60
    (single,) = [e for e in failover.host_scenarios(plan) if e.id == "host-pi"]
    assert single.max_api_down_s == 180  # one host: the API must stay, an outage aborts
    # Only power-off takes several machines; each must exist; none twice.
    with pytest.raises(InputError, match="drain takes one node"):
        check_subjects(Experiment("d", "d", "", Fault("drain", "k3s-w1+k3s-w2")), plan)
    with pytest.raises(InputError, match="'mars' is no host or node"):
        check_subjects(Experiment("p", "p", "", Fault("power-off", "proxmox+mars")), plan)
    with pytest.raises(InputError, match="named twice"):
        check_subjects(Experiment("p", "p", "", Fault("power-off", "pi+pi")), plan)


def test_the_failover_notebook_takes_a_pair_of_hosts(plan: Inventory, tmp_path: Path) -> None:
    from halab.context import Context
    from halab.phases import failover

    ctx = Context(plan, PLAN, None, tmp_path, False)
    (pair,) = failover.experiments(ctx, ["unraid+pi"])
    assert pair.fault == Fault("power-off", "unraid+pi")
    assert [e.id for e in failover.experiments(ctx, ["pi", "proxmox+pi"])] == [
        "host-pi",
        "host-proxmox-pi",
    ]
    with pytest.raises(InputError, match="no scenario for proxmox\\+mars"):
        failover.experiments(ctx, ["proxmox+mars"])


def test_the_planner_counts_only_the_masters_running_now() -> None:
    """The other shape before its phase 6 runs one of its three masters (cyclops): draining
    cyclops then leaves SeaweedFS without a leader, which the copies alone do not show."""
    other = load_inventory(OTHER_SHAPE)
    test1 = Experiment("t", "t", "", Fault("drain", "cyclops"))
    assert outlook(other, test1, {}).seaweed_readable  # every master joined: 2 of 3 left
    early = {n.name for n in other.nodes_present(5)}
    seen = outlook(other, test1, {}, early)
    assert not seen.seaweed_readable
    assert seen.seaweed_text.startswith("no master leader: 0 of the 1 masters running now")
    # A node without a master takes no leader with it.
    amber = Experiment("a", "a", "", Fault("drain", "worker-amber"))
    assert outlook(other, amber, {}, early).seaweed_readable


def _pods(*pods: tuple[str, str, str, bool, bool]) -> dict[str, object]:
    return {
        "pods": [
            {"name": n, "uid": u, "node": node, "phase": "Running", "ready": r, "deleting": d}
            for n, u, node, r, d in pods
        ]
    }


def test_the_timeline_is_read_from_the_samples() -> None:
    t0 = 100.0
    lane = "pod sonarr"
    samples = [
        Sample(t0 - 1, lane, True, "", _pods(("s-a", "a", "w1", True, False))),
        Sample(t0 + 1, lane, False, "", _pods(("s-a", "a", "w1", False, True))),
        Sample(t0 + 2, lane, False, "",
               _pods(("s-a", "a", "w1", False, True), ("s-b", "b", "", False, False))),
        Sample(t0 + 3, lane, False, "", _pods(("s-b", "b", "w2", False, False))),
        Sample(t0 + 6, lane, True, "", _pods(("s-b", "b", "w2", True, False))),
        Sample(t0 - 1, "node w1", True, "Ready", {"taints": []}),
        Sample(t0 + 1, "node w1", False,
               "Ready=True, cordoned (node.kubernetes.io/unschedulable:NoSchedule)",
               {"taints": ["node.kubernetes.io/unschedulable:NoSchedule"]}),
        Sample(t0 + 1, "API via VIP", True, "v1.32"),
    ]  # fmt: skip
    events = [e.what for e in pod_events(samples, t0, "sonarr")]
    assert events == [
        "s-a Terminating on w1",
        "s-b created, Pending",
        "s-a gone from w1",
        "s-b scheduled on w2",
        "sonarr Running and Ready on w2",
    ]
    assert running_again(samples, t0, "sonarr", {"w1"}) == (6.0, "w2")
    node = [e.what for e in lane_events(samples, t0)]
    assert "taint unschedulable:NoSchedule on w1" in node and "w1 Ready=True, cordoned" in node


def test_predicted_against_observed(plan: Inventory) -> None:
    test1 = phase5_tests(plan)[0]
    seen = outlook(plan, test1, {"sonarr": "k3s-w1"})
    fine = comparison(seen, {"sonarr": (8.0, "k3s-w2")})
    assert list(fine["verdict"]) == ["as predicted"] and not findings(fine)
    assert fine.attrs["tolerance"].startswith("observed within predicted")
    late = comparison(seen, {"sonarr": (START_ALLOWANCE_S + 5, "k3s-w2")})
    assert "off the prediction: a finding" in late["verdict"][0]
    elsewhere = comparison(seen, {"sonarr": (5.0, "k3s-cp3")})
    assert "ran on k3s-cp3, not where predicted" in findings(elsewhere)[0]
    never = comparison(seen, {})
    assert findings(never) == ["sonarr: not seen running again: a finding"]
    assert tolerance_s(710) == START_ALLOWANCE_S + 0.25 * 710


def test_the_journal_refuses_a_second_start_until_restored(tmp_path: Path) -> None:
    target_file = write_yaml(tmp_path / "target.yaml", {"kind": "cluster", "kubeconfig": "k"})
    journal = Journal.for_target(load_target(target_file))
    assert journal.path == tmp_path / "target.journal.json"
    journal.begin("test1", "drain k3s-w1", PLAN)
    journal.will({"do": "uncordon", "node": "k3s-w1"})
    doc = json.loads(journal.path.read_text())
    assert doc["undo"] == [{"do": "uncordon", "node": "k3s-w1"}] and doc["experiment"] == "test1"
    with pytest.raises(JournalError, match=r"uncordon k3s-w1.*halab restore --target"):
        journal.refuse_if_pending()
    with pytest.raises(JournalError, match="undo still due"):
        journal.close()
    journal.done({"do": "uncordon", "node": "k3s-w1"})
    journal.close()
    assert not journal.path.exists()
    journal.refuse_if_pending()


def test_a_node_is_cut_from_the_exports_and_the_others_kept() -> None:
    text = (
        "# rendered\n"
        "/mnt/user/media 192.168.1.0/24(ro,sync,no_subtree_check)\n"
        '"/mnt/user/my share" 192.168.1.41(rw) 10.0.0.0/8(ro)\n'
        "/mnt/user/other 10.0.0.0/8(rw)\n"
    )
    cut, paths = without_client(text, "192.168.1.41", ["192.168.1.11", "192.168.1.42"])
    assert paths == ["/mnt/user/media", "/mnt/user/my share"]
    exports = parse(cut)
    assert set(exports["/mnt/user/media"]) == {"192.168.1.11", "192.168.1.42"}
    assert exports["/mnt/user/media"]["192.168.1.11"] == {"ro", "sync", "no_subtree_check"}
    # The host's own entry goes (it let in no one else); the other subnet's stays.
    assert set(exports["/mnt/user/my share"]) == {"10.0.0.0/8"}
    assert "/mnt/user/other 10.0.0.0/8(rw)" in cut and cut.startswith("# rendered")
    # No export lets it in: nothing to cut.
    assert without_client("/x 10.0.0.0/8(rw)\n", "192.168.1.41", [])[1] == []


def test_the_shipped_example_experiments_load(plan: Inventory) -> None:
    (mine,) = load_experiments(ROOT / "params" / "experiments.example.yaml", plan)
    assert mine.fault == Fault("power-off", "k3s-w2") and mine.running_only
    assert mine.follow == ("sonarr",)


def test_a_lane_is_drawn_as_runs_of_one_state() -> None:
    lane = "API via VIP"
    states = [True] * 4 + [False] * 3 + [True] * 2
    samples = [Sample(10.0 + 0.5 * i, lane, ok, "") for i, ok in enumerate(states)]
    samples.append(Sample(30.0, lane, True, ""))  # after 15 s unseen: a grey gap between
    runs = segments(samples, 10.0)
    assert runs[False] == [(2.0, 1.5)]
    assert runs[True][:2] == [(0.0, 2.0), (3.5, 0.5 + 3.0)]
    assert runs[True][2] == (20.0, 0.5)
    figure = swimlane(samples, 10.0, [], "t")  # one call per colour, however many samples
    assert len(figure.axes[0].collections) == 3


def test_a_slow_question_is_asked_back_to_back_and_sampled_each_period() -> None:
    """A ClusterPlex job takes longer than a sampling period: Repeated asks it in a
    thread of its own and each sample says how the last one ended, or that the one in
    flight is late."""
    release = threading.Event()
    answers = iter([("ok", 0.0), ("boom", 0.0), ("hang", 0.0)])
    asked: list[str] = []

    def question() -> str:
        what, _ = next(answers, ("ok", 0.0))
        asked.append(what)
        if what == "boom":
            raise RuntimeError("the job failed (no worker)")
        if what == "hang":
            release.wait(30)  # a job whose worker is gone: no answer until released
        return f"job {len(asked)} done"

    probe = Repeated("ClusterPlex job", question, late_s=4.0, every=0.1)
    (first,) = probe()  # waits for the first answer: the lane is known from the first round
    assert first.ok and first.detail == "job 1 done"
    seen: list[Sample] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any("no answer yet" in s.detail for s in seen):
        seen += probe()
        time.sleep(0.1)
    failed = [s for s in seen if not s.ok and "no worker" in s.detail]
    late = [s for s in seen if not s.ok and "no answer yet" in s.detail]
    assert failed and late, seen
    assert seen.index(failed[0]) < seen.index(late[0])  # in the order they happened
    assert asked == ["ok", "boom", "hang"]  # one at a time: none asked while one hangs
    probe.stop()
    release.set()
    for _ in range(50):  # the one in flight ends; nothing is asked after it
        if probe._thread is not None and not probe._thread.is_alive():
            break
        time.sleep(0.1)
    assert probe._thread is not None and not probe._thread.is_alive()
    assert asked == ["ok", "boom", "hang"]


def test_a_refused_question_is_not_asked_in_a_tight_loop() -> None:
    calls: list[float] = []

    def refused() -> str:
        calls.append(time.monotonic())
        raise ConnectionRefusedError("refused")

    probe = Repeated("ClusterPlex job", refused, late_s=5.0, every=0.2)
    (sample,) = probe()
    assert not sample.ok and "refused" in sample.detail
    time.sleep(1.0)
    probe.stop()
    # Spinning would make thousands of calls a second; one a period is a handful.
    assert 2 <= len(calls) <= 10, len(calls)


def test_a_slow_answer_is_not_late_once_it_has_come() -> None:
    """Lateness counts only while a question is in flight: between an answer that took
    longer than `late_s` and the next question, the lane says how the last one ended."""

    def slow() -> str:
        time.sleep(1.5)
        return "a test job done in 1.5 s"

    probe = Repeated("ClusterPlex job", slow, late_s=1.0, every=5.0)
    (first,) = probe()  # its first answer is late: said so
    assert not first.ok and "no answer yet" in first.detail, first
    assert probe._answered.wait(5)
    (after,) = probe()  # answered; the next question is seconds away
    probe.stop()
    assert after.ok and after.detail == "a test job done in 1.5 s", after


def test_the_test_jobs_are_judged_against_the_workers_the_planner_leaves(
    plan: Inventory,
) -> None:
    """Scenario 3's "transcoding unaffected": with no worker and no orchestrator lost every
    job must be done; where something went, done again by the undo; with no worker left,
    failing is what the planner said. A worker that never ran is not counted as left."""
    from halab.experiments.model import host_scenario
    from halab.experiments.runner import Event, Outcome
    from halab.phases import failover

    pi = host_scenario(plan, ["pi"])

    def outcome(jobs: list[bool], active_before: int, not_running: tuple[str, ...] = ()) -> Any:
        out = Outcome(pi, origin=100.0, not_running=not_running)
        out.outlook = outlook(plan, pi, {})
        out.events = [Event(20.0, "experiment", "fault undone")]
        out.samples = [
            Sample(99.0, "orchestrator", True, "", {"workers_active": active_before}),
            Sample(110.0, "orchestrator", True, "", {"workers_active": active_before}),
        ]
        out.samples += [
            Sample(101.0 + i, "ClusterPlex job", ok, "a test job done" if ok else "failed")
            for i, ok in enumerate(jobs)
        ]
        return {c.id.removeprefix("host-pi-"): c for c in failover.verdicts(out, "orch")}

    both = ("clusterplex-worker", "clusterplex-worker-unraid")
    assert outlook(plan, pi, {}).gpu_workers == both
    fine = outcome([True] * 5, active_before=2)["transcoding"]
    assert fine.status == "pass" and not fine.required, fine
    hiccup = outcome([True, False, True], active_before=2)["transcoding"]
    assert hiccup.status == "fail" and "yet jobs failed" in hiccup.detail, hiccup
    # The plan's k8s worker never ran (no node offers its GPU resource): one left, not two.
    one = outcome([True] * 3, active_before=1, not_running=("clusterplex-worker",))
    assert one["transcoding"].status == "pass", one
    assert "leaves clusterplex-worker-unraid" in one["transcoding"].detail
    assert "clusterplex-worker did not run before" in one["gpu-workers"].detail
