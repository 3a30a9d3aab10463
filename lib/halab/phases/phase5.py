"""Phase 5, HA validation: the plan's failover and failback tests run as experiments
(halab.experiments), each timed, set beside the planner and always undone.

Plan "Phase 5: HA Validation (Failover/Failback Testing)": Test 1 drains the node the test
workload runs on (the plan's w1), sees it move with its config intact and SeaweedFS still
readable, then uncordons the node and brings the workload back. Test 2 stops that node's
SeaweedFS volume server, reads the data from the other copies, starts it again and sees
the copies back. The nodes, apps and volume servers come from the inventory.
Test 3 cuts that node off the NFS server (the server's /etc/exports rewritten without it
over SSH, `exportfs -ra`): the app's media unavailable while the others still read it,
then the file put back and the media available again.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from halab.context import Context
from halab.evidence import Check, Status
from halab.experiments import report
from halab.experiments.model import Experiment, load_experiments, phase5_tests, test_apps
from halab.experiments.probes import (
    FileSet,
    ProbeFn,
    Sample,
    nfs_read_probe,
    one,
    read_any,
    seaweed_read_probe,
    seaweed_write_probe,
    write_file_set,
)
from halab.experiments.runner import DataCheck, Outcome, Runner, Say, will_disrupt
from halab.explain import explain
from halab.inventory.model import App
from halab.kube import wait_for
from halab.phases import phase3, phase4
from halab.phases.seaweed_data import copies_table
from halab.seaweed import SeaweedError, SeaweedFS, service_name

PHASE = 5


def experiments(ctx: Context, extra: str | Path = "") -> list[Experiment]:
    """The plan's tests for this inventory, then a user's own from a YAML file's
    `experiments:` list (same fields as Experiment; checked against the inventory)."""
    found = phase5_tests(ctx.inventory)
    if extra:
        from halab.paths import resolve

        found += load_experiments(resolve(extra), ctx.inventory)
    return found


def scope(ctx: Context, chosen: list[Experiment] | None = None) -> pd.DataFrame:
    rows = [
        {
            "experiment": e.id,
            "title": e.title,
            "fault": e.fault.text,
            "undone by": e.fault.undo_text,
            "follows": ", ".join(e.follow) or "-",
            "then": "the apps brought back" if e.return_home else "-",
        }
        for e in (experiments(ctx) if chosen is None else chosen)
    ]
    return pd.DataFrame(
        rows, columns=["experiment", "title", "fault", "undone by", "follows", "then"]
    )


def sonarr_probes(
    ctx: Context, api: Any, exp: Experiment, media: bool = False
) -> tuple[list[ProbeFn], list[DataCheck]]:
    """For each followed Sonarr: its API probed through its Service, and its series (a
    test series added first) compared before and after, from its own API and database;
    with `media`, each NFS mount browsed as its UI's path picker does."""
    probes: list[ProbeFn] = []
    checks: list[DataCheck] = []
    for name in exp.follow:
        app = ctx.inventory.app(name)
        if phase4.is_sonarr(app):
            sonarr, sw, directory = phase4.sonarr_for(ctx, api, app, timeout=2.0)
            probes.append(one(f"{name} API", partial(_sonarr_answers, sonarr)))
            checks.append(_series_check(ctx, api, app, sonarr, sw, directory))
            for vol in [v for v in app.volumes if v.kind == "nfs"] if media else []:
                probes.append(media_probe(sonarr, app.name, vol.mount_path))
    return probes, checks


def media_lane(app: str, mount: str) -> str:
    return f"{app} media {mount}"


def media_probe(sonarr: Any, app: str, mount: str) -> ProbeFn:
    """A media mount as Sonarr's UI shows it: its path picker's folders (Sonarr shows an
    unreachable folder as empty, not as an error) and, where it is a root folder, whether
    Sonarr calls it accessible. Fine while it shows what it showed at the start; the facts
    say which of the two could show a loss at all."""
    baseline = len(sonarr.browse(mount).get("directories") or [])
    lane = media_lane(app, mount)

    def probe() -> list[Sample]:
        at = time.monotonic()
        try:
            shown = len(sonarr.browse(mount).get("directories") or [])
            roots = {r.path.rstrip("/"): r for r in sonarr.root_folders()}
        except Exception as exc:
            return [Sample(at, lane, False, explain(exc)[:200], {"baseline": baseline})]
        root = roots.get(mount.rstrip("/"))
        facts = {"baseline": baseline, "root": root is not None}
        if root is not None and not root.accessible:
            return [Sample(at, lane, False, f"root folder {mount} not accessible", facts)]
        if baseline and not shown:
            said = f"{mount} shows nothing (it showed {baseline} folders)"
            return [Sample(at, lane, False, said, facts)]
        said = f"{mount}: {shown} folders" + (", root folder accessible" if root else "")
        return [Sample(at, lane, True, said, facts)]

    return probe


def _sonarr_answers(sonarr: Any) -> str:
    doc = sonarr.status()
    return f"{doc.get('appName')} {doc.get('version')} answers"


def _series_check(
    ctx: Context, api: Any, app: App, sonarr: Any, sw: SeaweedFS, directory: str
) -> DataCheck:
    added: list[int] = []

    def capture() -> Any:
        tvdb, title = phase4.TEST_SERIES
        if not any(s.get("tvdbId") == tvdb for s in sonarr.series()):
            media = [v.mount_path for v in app.volumes if v.kind == "nfs"] or ["/tv"]
            root = next((r.path for r in sonarr.root_folders()), media[0])
            added.append(int(sonarr.add_series(tvdb, title, root)["id"]))

        def has_it() -> dict[int, str] | None:
            db = phase4.series_in_database(sw, directory)
            return db if tvdb in db else None

        stored = wait_for(
            has_it,
            30,
            "the test series in Sonarr's database",
        )
        return stored

    def compare(before: Any) -> tuple[Status, str]:
        # The pod may be a new one now: reach Sonarr afresh.
        fresh, sw2, directory2 = phase4.sonarr_for(ctx, api, app)
        try:
            listed = {int(s["tvdbId"]): str(s["title"]) for s in fresh.series()}
            stored = phase4.series_in_database(sw2, directory2)
            lost = {k: v for k, v in before.items() if k not in listed or k not in stored}
            if lost:
                return "fail", "series lost: " + ", ".join(f"{v} ({k})" for k, v in lost.items())
            return "pass", (
                f"all {len(before)} series there, through its API and in {directory2}/"
                f"{phase4.SONARR_DB}: " + ", ".join(sorted(before.values()))
            )
        finally:
            for series_id in added:
                fresh.delete_series(series_id)
            added.clear()

    def cleanup() -> None:
        for series_id in added:
            sonarr.delete_series(series_id)
        added.clear()

    title = f"{app.name}'s config intact (its series, through its API and its database)"
    return DataCheck(f"{app.name}-config", title, capture, compare, cleanup)


def files_check(sw: SeaweedFS, files: FileSet) -> DataCheck:
    def compare(_: Any) -> tuple[Status, str]:
        bad = []
        for path, want in sorted(files.sums.items()):
            try:
                got = hashlib.sha256(read_any(sw, path, sw.filers)).hexdigest()
            except Exception as exc:
                bad.append(f"{path}: {exc}")
                continue
            if got != want:
                bad.append(f"{path}: another checksum ({got[:12]})")
        with contextlib.suppress(SeaweedError):  # the verdict is the checksums
            sw.delete(files.directory)
        if bad:
            return "fail", "; ".join(bad)
        return "pass", f"{len(files.sums)} probe files read back with their checksums"

    def cleanup() -> None:
        sw.delete(files.directory)

    return DataCheck(
        "seaweedfs-files", "SeaweedFS probe files intact", lambda: None, compare, cleanup
    )


def _copies(sw: SeaweedFS) -> dict[int, set[str]]:
    """Volume id -> the nodes holding a copy (phase 2's table of copies)."""
    table = copies_table(sw)
    return {
        int(v): set(str(nodes).split(", "))
        for v, nodes in zip(table["volume"], table["nodes"], strict=True)
    }


def _copies_check(sw: SeaweedFS, node: str) -> DataCheck:
    """Test 2's "verify replication resumes": the copies the master lists, before and
    after the server's restart. SeaweedFS does not re-replicate by itself: what is missing
    is named with what `volume.fix.replication` would do."""

    def capture() -> Any:
        return _copies(sw)

    def compare(before: Any) -> tuple[Status, str]:
        def same() -> dict[int, set[str]] | None:
            now = _copies(sw)
            missing = {v: nodes - now.get(v, set()) for v, nodes in before.items()}
            return None if any(missing.values()) else now

        try:
            wait_for(same, 60, "every copy listed again")
        except Exception:
            now = _copies(sw)
            under = sorted(v for v, nodes in before.items() if nodes - now.get(v, set()))
            return "fail", (
                f"under-replicated after the restart: volumes {', '.join(map(str, under))} "
                "lack their copies; SeaweedFS does not repair this by itself: run "
                "`volume.fix.replication` in weed shell"
            )
        held = sum(1 for nodes in before.values() if node in nodes)
        return "pass", (
            f"all {len(before)} volumes have their copies back where they were "
            f"({held} of them on {node}); nothing to repair"
        )

    return DataCheck("replication", "Replication resumes (the copies back where they were)",
                     capture, compare)  # fmt: skip


def rehearse(ctx: Context, api: Any, exp: Experiment, say: Say = print) -> Outcome:
    """One phase 5 experiment with its probes and data checks."""
    if not will_disrupt(ctx, api):
        return Runner(ctx, api, say=say).run(exp)  # it says why it does not start
    sw = SeaweedFS(api, ctx.inventory, timeout=2.0)
    files = write_file_set(sw, exp.id)
    probes = [seaweed_read_probe(sw, files), seaweed_write_probe(sw, files)]
    data = [files_check(sw, files)]
    cut = exp.fault.kind == "cut-nfs"
    more_probes, more_data = sonarr_probes(ctx, api, exp, media=cut)
    probes += more_probes
    data += more_data
    if exp.fault.kind == "stop-volume-server":
        data.append(_copies_check(SeaweedFS(api, ctx.inventory), exp.fault.subject))
    if cut:
        probes += _nfs_lanes(ctx, exp.fault.subject)
    leader = leader_node(sw)
    outcome = Runner(ctx, api, probes, data, say=say).run(exp)
    note_leader(outcome, leader)
    if cut and outcome.samples:
        outcome.checks += outcome.stamp(cut_verdicts(ctx, outcome))
    return outcome


def leader_node(sw: SeaweedFS) -> str:
    """The node whose master leads now ("" when no master says)."""
    try:
        service = sw.leader()
    except Exception:  # a courtesy beside the verdict, which stands without it
        return ""
    nodes = sw.inventory.nodes
    return next((n.name for n in nodes if service_name("master", n.name) == service), "")


def note_leader(outcome: Outcome, leader: str) -> None:
    """Beside the read verdict: the fault took the masters' leader, so lookups wait for a
    new one (SeaweedFS takes some seconds to elect it and to load the topology). Which
    master leads is SeaweedFS's choice, not the planner's."""
    if outcome.outlook is None or not leader or leader not in outcome.outlook.down_nodes:
        return
    for check in outcome.checks:
        if check.id == f"{outcome.experiment.id}-seaweedfs-readable":
            check.detail += (
                f"; the masters' leader was on {leader}: reads wait while another is elected"
            )


def _nfs_lanes(ctx: Context, node: str) -> list[ProbeFn]:
    """The first export read as a client from the cut node and from one other node."""
    assert ctx.target is not None
    endpoint, nfs = phase3.endpoint(ctx), ctx.inventory.storage.nfs
    if endpoint is None or nfs is None or not nfs.exports:
        return []
    export = nfs.exports[0].path
    other = next((n for n in ctx.inventory.nodes if n.name != node), None)
    lanes = [node] + ([other.name] if other else [])
    return [
        nfs_read_probe(
            endpoint,
            export,
            str(ctx.target.addresses.map(ctx.inventory.node(name).address)),
            f"NFS from {name}",
        )
        for name in lanes
    ]


def cut_verdicts(ctx: Context, outcome: Outcome) -> list[Check]:
    """Test 3's lines: the cut seen by the node (and not by another), the app's media shown
    unavailable while it lasts, and available again once the exports are back."""
    exp = outcome.experiment
    node = exp.fault.subject
    found = []
    cut_lane = outcome.during(f"NFS from {node}")
    refused = [s for s in cut_lane if not s.ok]
    found.append(
        Check(f"{exp.id}-cut-seen", f"The NFS server refuses {node}",
              "pass" if refused else "fail",
              f"{len(refused)} of {len(cut_lane)} reads from {node} refused"
              + (f" ({refused[-1].detail})" if refused else ": the cut did not take"))
    )  # fmt: skip
    for lane in {s.lane for s in outcome.samples if s.lane.startswith("NFS from ")} - {
        f"NFS from {node}"
    }:
        seen = outcome.during(lane)
        bad = [s for s in seen if not s.ok]
        found.append(
            Check(f"{exp.id}-others-unaffected", f"Other nodes keep the NFS media ({lane})",
                  "fail" if bad else "pass",
                  f"{len(seen) - len(bad)} of {len(seen)} reads fine"
                  + (f"; {bad[-1].detail}" if bad else ""))
        )  # fmt: skip
    for app in exp.follow:
        for vol in [v for v in ctx.inventory.app(app).volumes if v.kind == "nfs"]:
            lane = media_lane(app, vol.mount_path)
            during, after = outcome.during(lane), outcome.after(lane)
            down = [s for s in during if not s.ok]
            first = next((s for s in outcome.samples if s.lane == lane), None)
            if (
                first is not None
                and not down
                and not first.facts.get("baseline")
                and not (first.facts.get("root"))
            ):
                found.append(
                    Check(f"{exp.id}-media-unavailable-{app}-{vol.name}",
                          f"{app} shows {vol.mount_path} unavailable while {node} is cut off",
                          "skip", f"{vol.mount_path} is empty and no root folder: Sonarr's UI "
                          "has nothing to show missing", required=False)
                )  # fmt: skip
                continue
            found.append(
                Check(f"{exp.id}-media-unavailable-{app}-{vol.name}",
                      f"{app} shows {vol.mount_path} unavailable while {node} is cut off",
                      "pass" if down else "fail",
                      (f"its path picker failed: {down[-1].detail}" if down
                       else f"{app} still browsed {vol.mount_path} ({len(during)} samples)"))
            )  # fmt: skip
            back = bool(after) and after[-1].ok
            found.append(
                Check(f"{exp.id}-media-back-{app}-{vol.name}",
                      f"{app} reaches {vol.mount_path} again once the exports are back",
                      "pass" if back else "fail",
                      after[-1].detail if after else "no sample after the undo")
            )  # fmt: skip
    return found


def checks(ctx: Context, outcomes: list[Outcome]) -> list[Check]:
    found = [c for o in outcomes for c in o.checks]
    if not test_apps(ctx.inventory):
        found.append(
            Check("test-workload", "A test workload to follow", "warn",
                  "no app keeps state on SeaweedFS: nothing moves to be followed", required=False)
        )  # fmt: skip
    return found


def expectations(ctx: Context, api: Any, chosen: list[Experiment] | None = None) -> pd.DataFrame:
    return report.expectations(ctx, api, experiments(ctx) if chosen is None else chosen)


def keep(ctx: Context, outcome: Outcome) -> list[Path]:
    return report.keep(ctx, "phase5", outcome)
