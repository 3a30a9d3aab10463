"""The plan's failure scenarios, run: each physical host powered off hard in turn (its plug
pulled, through the target's power commands), everything the rollout deployed watched
while it is down, the host powered on again, and the planner's failure matrix and
failover times set beside what happened.

Plan "Failure Scenarios & Recovery": Scenario 1 (the Proxmox host), 2 (Unraid) and 3 (the
Pi), each with its validation lines: etcd quorum, the API through the VIP, which
workloads move where, which GPU workers are left, whether SeaweedFS data stays
readable, media offline with the NFS server. The hosts, apps and workers are the
inventory's. The plan's "any 2 hosts down" ("no quorum, read-only mode") runs when asked
for by a pair of hosts (`hosts: ["proxmox+pi"]`): the API is read as well as reached,
and whether it stays readable is set against the plan's claim.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from halab.clusterplex import Orchestrator
from halab.context import Context
from halab.evidence import Check, Status
from halab.experiments import report
from halab.experiments.expect import Outlook, hosts_down
from halab.experiments.model import SEVERAL, Experiment, host_scenario, host_scenarios
from halab.experiments.probes import (
    FileSet,
    ProbeFn,
    Repeated,
    Sample,
    api_read_probe,
    nfs_read_probe,
    one,
    seaweed_read_probe,
    seaweed_write_probe,
    write_file_set,
)
from halab.experiments.runner import DataCheck, Outcome, Runner, Say, followed_now, will_disrupt
from halab.inventory.model import App
from halab.phases import phase3, phase4, phase5, phase8
from halab.phases.plex_transcodes import plex_url
from halab.phases.seaweed_data import copies_table
from halab.plan.analysis import Analysis
from halab.plan.quorum import api_available
from halab.plex import identity
from halab.seaweed import SeaweedFS

NAME = "failover"


def experiments(ctx: Context, hosts: list[str] | None = None) -> list[Experiment]:
    """The scenarios for this inventory; `hosts` keeps those of the hosts named, and a
    pair joined by "+" ("proxmox+pi") powers both off at once."""
    found = host_scenarios(ctx.inventory)
    if not hosts:
        return found
    known = {e.fault.subject for e in found}
    chosen, unknown = [], []
    for name in hosts:
        parts = name.split(SEVERAL)
        if len(parts) > 1 and all(p in known for p in parts) and len(set(parts)) == len(parts):
            chosen.append(host_scenario(ctx.inventory, parts))
        elif name in known:
            chosen += [e for e in found if e.fault.subject == name]
        else:
            unknown.append(name)
    if unknown:
        from halab.errors import InputError, Problem

        raise InputError(
            "hosts",
            [Problem("hosts", f"no scenario for {', '.join(unknown)}",
                     f"hosts with a scenario: {', '.join(sorted(known))}; two at once: "
                     f"{SEVERAL.join(sorted(known)[:2])}")],
        )  # fmt: skip
    return chosen


def scope(ctx: Context, chosen: list[Experiment]) -> pd.DataFrame:
    from halab.power import Power

    rows = []
    for exp in chosen:
        power = Power(ctx.inventory, ctx.target) if ctx.target else None
        how = "; ".join(power.how(n) for n in exp.fault.subjects) if power else "-"
        rows.append(
            {
                "scenario": exp.id,
                "title": exp.title,
                "power off": how,
                "watched up to s": exp.abort_after_s,
                "follows": ", ".join(exp.follow),
            }
        )
    return pd.DataFrame(rows)


def expectations(ctx: Context, api: Any, chosen: list[Experiment]) -> pd.DataFrame:
    return report.expectations(ctx, api, chosen)


def _survivor_address(ctx: Context, hosts: tuple[str, ...]) -> str | None:
    """A node's address (as the target reaches it) on another host, for NFS reads."""
    assert ctx.target is not None
    for node in ctx.inventory.nodes:
        if node.host not in hosts and node.name not in hosts:
            return str(ctx.target.addresses.map(node.address))
    return None


def _probes(ctx: Context, api: Any, exp: Experiment) -> tuple[list[ProbeFn], list[DataCheck]]:
    """Everything the rollout deployed that answers: SeaweedFS (probe files), each Plex's
    identity at its LoadBalancer address, the orchestrator's metrics, Sonarr's API, and
    the media through NFS from a node on another host."""
    sw = SeaweedFS(api, ctx.inventory, timeout=2.0)
    files = write_file_set(sw, exp.id)
    probes = [seaweed_read_probe(sw, files), seaweed_write_probe(sw, files)]
    data = [phase5.files_check(sw, files), _stranded_check(ctx, api, exp, files)]
    running = followed_now(api, ctx, exp)
    for app in phase8.apps(ctx, "plex"):
        if app.name in running and (url := plex_url(api, app)):
            probes.append(one(f"{app.name} identity", partial(_plex_answers, url)))
    orchestrator = next(iter(phase8.apps(ctx, "orchestrator")), None)
    url = phase8.orchestrator_url(ctx, api) if orchestrator is not None else None
    if orchestrator is not None and orchestrator.name in running and url:
        probes += [_orchestrator_probe(url), _job_probe(url)]
    sonarr = replace(exp, follow=tuple(a for a in exp.follow if a in running))
    more_probes, more_data = phase5.sonarr_probes(ctx, api, sonarr)
    probes += more_probes
    data += more_data
    endpoint = phase3.endpoint(ctx)
    nfs = ctx.inventory.storage.nfs
    source = _survivor_address(ctx, exp.fault.subjects)
    if not api_available(ctx.inventory, hosts_down(ctx.inventory, exp))[0]:
        probes.append(api_read_probe(api))
    if endpoint is not None and nfs is not None and nfs.exports and source:
        export = nfs.exports[0].path
        probes.append(nfs_read_probe(endpoint, export, source, "NFS media"))
    return probes, data


def _stranded_check(ctx: Context, api: Any, exp: Experiment, files: FileSet) -> DataCheck:
    """The volumes that had every copy on the host: unreadable while it is down. Which
    they were, and what of the probe files and the apps' config lived there, from the
    master's copies and the filer's chunk lists before the fault."""
    off = set(exp.fault.subjects)
    host = " and ".join(exp.fault.subjects)
    sw = SeaweedFS(api, ctx.inventory)

    def capture() -> Any:
        table = copies_table(sw)
        stranded = {
            int(v)
            for v, hosts in zip(table["volume"], table["hosts"], strict=True)
            if set(str(hosts).split(", ")) <= off
        }
        held: dict[str, set[int]] = {}
        for path in sorted(files.sums):
            held[path.rsplit("/", 1)[-1]] = {int(f.split(",", 1)[0]) for f in sw.chunks(path)}
        for app in [ctx.inventory.app(a) for a in exp.follow]:
            found = phase4.config_volume(api, app) if _on_seaweed(app) else None
            if found is not None:
                top = found[1]
                for path, volumes in _walk(sw, top):
                    held[f"{app.name}:{path.removeprefix(top + '/')}"] = volumes
        return stranded, held

    def compare(before: Any) -> tuple[Status, str]:
        stranded, held = before
        if not stranded:
            return "pass", f"no volume had every copy on {host}"
        hit = sorted(name for name, volumes in held.items() if volumes & stranded)
        shared = not Analysis(ctx.inventory).current.distinct_hosts
        detail = (
            f"volumes {', '.join(map(str, sorted(stranded)))} had every copy on {host}: "
            f"unreadable while it was down; in them: {', '.join(hit) or 'none of ours'}"
        )
        if shared:
            detail += " (the planner says this layout lets copies share a host)"
        return ("warn" if shared else "fail"), detail

    def blocks(captured: Any) -> dict[str, str]:
        """The followed apps whose config lives in a volume with every copy on the host."""
        stranded, held = captured
        found: dict[str, str] = {}
        for name, volumes in held.items():
            app, sep, path = name.partition(":")
            if sep and volumes & stranded and app not in found:
                where = ", ".join(map(str, sorted(volumes & stranded)))
                found[app] = f"its {path} is in volume {where}, every copy of which is on {host}"
        return found

    return DataCheck(
        "stranded", f"Volumes with every copy on {host}", capture, compare, blocks=blocks
    )


def _on_seaweed(app: App) -> bool:
    return any(v.kind == "seaweedfs" for v in app.volumes)


def _walk(sw: SeaweedFS, top: str, depth: int = 6, limit: int = 400) -> list[tuple[str, set[int]]]:
    """Every file under `top` on the filer with the volumes its chunks are in (a name
    with no chunks is taken for a directory and walked; bounded, as config trees are)."""
    found: list[tuple[str, set[int]]] = []
    todo = [(top, 0)]
    while todo and len(found) < limit:
        here, level = todo.pop()
        for name in sw.ls(here):
            path = f"{here}/{name}"
            chunks = sw.chunks(path)
            if chunks:
                found.append((path, {int(c.split(",", 1)[0]) for c in chunks}))
            elif level < depth:
                todo.append((path, level + 1))
    return found


def _plex_answers(url: str) -> str:
    doc = identity(url, timeout=1.5)
    return f"Plex {doc.get('version', '?')} answers"


def _orchestrator_probe(url: str) -> ProbeFn:
    orchestrator = Orchestrator(url, timeout=1.5)
    lane = "orchestrator"

    def probe() -> list[Sample]:
        import time

        try:
            metrics = orchestrator.metrics()
        except Exception as exc:
            return [Sample(time.monotonic(), lane, False, str(exc)[:200])]
        active = metrics.workers_active
        return [
            Sample(time.monotonic(), lane, True, f"{active} workers active",
                   {"workers_active": active})
        ]  # fmt: skip

    return probe


# A test job keeps its worker 5 s and waits up to 2 s for the orchestrator's dispatch tick:
# one not back after 10 s is late, and after 12 s it is given up for a fresh one (a worker or
# orchestrator lost without a word is noticed only when Socket.IO's ping times out, up to
# 45 s: the question is when a new playback would transcode again, not when that one ends).
JOB_LATE_S = 10.0
JOB_TIMEOUT_S = 12.0


def _job_probe(url: str) -> Repeated:
    """A synthetic job as Plex's shim posts one (the worker's test payload), back to back:
    transcoding works when a job comes back done. Coarser than the other lanes: a sample
    says how the last job ended, and a job takes about 6 s."""
    orchestrator = Orchestrator(url, timeout=1.5)

    def job() -> str:
        got = orchestrator.post_job(timeout=JOB_TIMEOUT_S)
        if not got.result:
            raise RuntimeError(
                f"the job failed after {got.seconds:.1f} s (no worker, or its worker was lost)"
            )
        return f"a test job done in {got.seconds:.1f} s"

    return Repeated("ClusterPlex job", job, late_s=JOB_LATE_S)


def rehearse(ctx: Context, api: Any, exp: Experiment, say: Say = print) -> Outcome:
    if not will_disrupt(ctx, api):
        return Runner(ctx, api, say=say).run(exp)  # it says why it does not start
    probes, data = _probes(ctx, api, exp)
    leader = phase5.leader_node(SeaweedFS(api, ctx.inventory, timeout=2.0))
    outcome = Runner(ctx, api, probes, data, say=say).run(exp)
    phase5.note_leader(outcome, leader)
    if outcome.outlook is not None and outcome.samples:
        orchestrator = next((a.name for a in phase8.apps(ctx, "orchestrator")), None)
        outcome.checks += outcome.stamp(verdicts(outcome, orchestrator))
    return outcome


def _longest_gap(samples: list[Sample]) -> float:
    longest, since = 0.0, None
    for s in sorted(samples, key=lambda s: s.at):
        if not s.ok and since is None:
            since = s.at
        elif s.ok and since is not None:
            longest, since = max(longest, s.at - since), None
    if since is not None and samples:
        longest = max(longest, samples[-1].at - since)
    return round(longest, 1)


def verdicts(outcome: Outcome, orchestrator: str | None = None) -> list[Check]:
    """The scenario's validation lines beyond where each app went: the API through the
    VIP, the GPU workers left, the test jobs, the media, each beside what the planner
    said (`orchestrator`: the app whose move interrupts the jobs)."""
    seen: Outlook | None = outcome.outlook
    assert seen is not None
    cid = outcome.experiment.id
    found = []
    api = outcome.during("API via VIP")
    if api:
        gap = _longest_gap(api)
        back = api[-1].ok
        status: Status
        if seen.api_up:
            status = "pass" if back else "fail"
            detail = f"answered through the VIP; longest outage {gap:.1f} s" + (
                "" if back else "; not answering when the host came back"
            )
        else:
            status = "pass" if not back else "warn"
            detail = f"down as the planner says (etcd has no quorum); longest outage {gap:.1f} s"
        found.append(Check(f"{cid}-api", "The API through the VIP", status, detail))
    reads = outcome.during("API read")
    if reads and not seen.api_up:
        found.append(_read_only_claim(cid, reads))
    workers = [s for s in outcome.during("orchestrator") if s.ok]
    left = _workers_left(outcome, seen)
    if workers:
        active = int(workers[-1].facts.get("workers_active", -1))
        status = "pass" if active == len(left) else "warn"
        detail = (
            f"the orchestrator counts {active} workers active at the end; the planner "
            f"leaves {len(left)}: {', '.join(left) or 'none'}"
        )
        if idle := [w for w in seen.gpu_workers if w not in left]:
            detail += f" (of its {len(seen.gpu_workers)}, {', '.join(idle)} did not run before)"
        found.append(
            Check(f"{cid}-gpu-workers", "Transcode workers left", status, detail, required=False)
        )
    jobs = outcome.during("ClusterPlex job")
    if jobs:
        moved = any(a.moves for a in seen.apps if a.app == orchestrator)
        found.append(_transcoding(outcome, jobs, left, moved))
    media = outcome.during("NFS media")
    if media:
        up = media[-1].ok
        status = "pass" if up == seen.nfs_up else "fail"
        said = "media readable" if up else f"media offline ({media[-1].detail})"
        plan = "up" if seen.nfs_up else "offline with its host (the plan accepts it)"
        found.append(
            Check(f"{cid}-media", "Media over NFS", status, f"{said}; the planner: {plan}")
        )
    return found


def _workers_left(outcome: Outcome, seen: Outlook) -> list[str]:
    """The planner's workers left that were running before the fault (one that never ran,
    as the plan's k8s worker asking for a GPU resource no node offers, cannot be left)."""
    return [w for w in seen.gpu_workers if w not in outcome.not_running]


def _transcoding(
    outcome: Outcome, jobs: list[Sample], left: list[str], orchestrator_moved: bool
) -> Check:
    """The synthetic jobs during the fault against the planner's workers left: untouched
    where neither a worker nor the orchestrator went (the plan's "transcoding
    unaffected"), done again on a worker left by the undo, or failing where none is left."""
    cid = outcome.experiment.id
    before = [
        int(s.facts.get("workers_active", 0))
        for s in outcome.samples
        if s.lane == "orchestrator" and s.ok and s.at < outcome.origin
    ]
    lost = orchestrator_moved or (bool(before) and before[-1] > len(left))
    failed = [s for s in jobs if not s.ok]
    gap = _longest_gap(jobs)
    said = (
        f"{len(jobs) - len(failed)} of {len(jobs)} samples fine, longest outage {gap:.1f} s; "
        f"at the undo: {jobs[-1].detail}; the planner leaves {', '.join(left) or 'none'}"
    )
    status: Status
    if not left:
        status = "pass" if not jobs[-1].ok else "warn"
        if jobs[-1].ok:
            said += "; done, though the planner leaves no worker"
    elif not lost:
        status = "pass" if not failed else "fail"
        if failed:
            said += "; neither a worker nor the orchestrator went, yet jobs failed"
    else:
        status = "pass" if jobs[-1].ok else "warn"
        if not jobs[-1].ok:
            said += "; not done again before the fault was undone"
    title = "Transcoding (a test job through the orchestrator)"
    return Check(f"{cid}-transcoding", title, status, said, required=False)


def _read_only_claim(cid: str, reads: list[Sample]) -> Check:
    """The plan's "any 2 hosts down: no quorum, read-only mode" against the reads made
    while the hosts were off (advisory: the plan's words, not the cluster's health)."""
    answered = sum(1 for s in reads if s.ok)
    title = 'The plan\'s "read-only mode" with two hosts down'
    if reads[-1].ok:
        detail = f"reads answered to the end: {answered} of {len(reads)}, as the plan says"
        return Check(f"{cid}-read-only", title, "pass", detail, required=False)
    last = reads[-1].detail
    return Check(
        f"{cid}-read-only",
        title,
        "fail",
        f"not read-only but gone: {answered} of {len(reads)} reads answered, none at the end "
        f"({last}); etcd without quorum serves no read and kube-vip releases the VIP "
        "(finding: the planner says the API is lost, not read-only)",
        required=False,
    )


def keep(ctx: Context, outcome: Outcome) -> list[Path]:
    return report.keep(ctx, NAME, outcome)


def checks(outcomes: list[Outcome]) -> list[Check]:
    found = [c for o in outcomes for c in o.checks]
    return found or [Check("scenarios", "Failure scenarios", "skip", "no scenario chosen")]
