"""One experiment from steady state to steady state.

In order: where the followed apps run and what the planner expects; what must survive
captured (data checks); the probes started and the steady state seen; the journal begun
and the fault made; the outcome awaited (every app that must move running again, or an
observation window) unless an abort condition comes first; the fault undone in a
`finally` (Ctrl-C, a kernel interrupt and SIGTERM included, with a second Ctrl-C held
off while the undo runs); the apps brought home where the experiment says so; the steady
state awaited again; the data compared. Every probe sample is kept in the outcome.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from halab.context import Context
from halab.evidence import Check, Status
from halab.experiments import faults
from halab.experiments.expect import ControllerLease, Outlook, outlook
from halab.experiments.journal import Journal, JournalError, action_text
from halab.experiments.model import Experiment, check_subjects
from halab.experiments.probes import (
    ProbeFn,
    Sample,
    Watch,
    api_probe,
    attachment_probe,
    nodes_probe,
    pods_probe,
)
from halab.experiments.timeline import (
    Event,
    comparison,
    events_frame,
    findings,
    lane_events,
    pod_events,
    running_again,
    swimlane,
)
from halab.explain import explain

Say = Callable[[str], None]
STEADY_WITHIN_S = 90.0


@dataclass
class DataCheck:
    """Something that must survive the experiment: captured before the fault, compared
    after the steady state is back (`compare` gets what `capture` returned)."""

    name: str
    title: str
    capture: Callable[[], Any]
    compare: Callable[[Any], tuple[Status, str]]
    # What capture left behind (a test series, probe files), taken away when the
    # experiment stops before its compare (which cleans up after itself).
    cleanup: Callable[[], None] = lambda: None
    # From what capture returned: the apps that cannot run again while the fault holds,
    # with why (their data is all on what goes). They are not waited for.
    blocks: Callable[[Any], dict[str, str]] = lambda _: {}


@dataclass
class Outcome:
    experiment: Experiment
    checks: list[Check] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    outlook: Outlook | None = None
    origin: float = 0.0
    done: list[str] = field(default_factory=list)  # what was changed and undone, in order
    seconds: float = 0.0  # the whole experiment, steady state to steady state
    waiting: dict[str, str] = field(default_factory=dict)  # app -> what held it back
    blocked: dict[str, str] = field(default_factory=dict)  # app -> why it cannot move
    not_running: tuple[str, ...] = ()  # followed apps with no Ready pod at the start
    _comparison: pd.DataFrame | None = field(default=None, repr=False)

    def stamp(self, checks: list[Check]) -> list[Check]:
        """A check that is not itself a time carries how long the experiment ran."""
        for check in checks:
            check.seconds = check.seconds or self.seconds
        return checks

    @property
    def timeline(self) -> pd.DataFrame:
        return events_frame(self.events)

    @property
    def comparison(self) -> pd.DataFrame:
        """Predicted against observed, made once the run is over (the samples are final)."""
        if self.outlook is None:
            return pd.DataFrame()
        if self._comparison is None:
            self._comparison = comparison(self.outlook, self.observed())
        return self._comparison

    def observed(self) -> dict[str, tuple[float | None, str]]:
        """Where and when each app the planner moves ran again while the fault held: one
        that started only once the fault was undone did not move as predicted."""
        if self.outlook is None:
            return {}
        gone = set(self.outlook.down_nodes)
        end = self.origin + self._undone_at()
        held = [s for s in self.samples if s.at <= end]
        return {
            a.app: running_again(held, self.origin, a.app, gone)
            for a in self.outlook.apps
            if a.moves
        }

    def _undone_at(self) -> float:
        return next(
            (e.at for e in self.events if e.lane == "experiment" and e.what == "fault undone"),
            float("inf"),
        )

    def during(self, lane: str) -> list[Sample]:
        """The lane's samples from the fault to its undo."""
        end = self._undone_at()
        return [s for s in self.samples if s.lane == lane and 0 <= s.at - self.origin <= end]

    def after(self, lane: str) -> list[Sample]:
        """The lane's samples once the fault was undone."""
        end = self._undone_at()
        return [s for s in self.samples if s.lane == lane and s.at - self.origin > end]

    def figure(self) -> Figure:
        return swimlane(self.samples, self.origin, self.events, self.experiment.title)

    def samples_frame(self) -> pd.DataFrame:
        rows = [
            {
                "seconds": round(s.at - self.origin, 3),
                "lane": s.lane,
                "ok": s.ok,
                "detail": s.detail,
            }
            for s in sorted(self.samples, key=lambda s: s.at)
        ]
        return pd.DataFrame(rows, columns=["seconds", "lane", "ok", "detail"])


def will_disrupt(ctx: Context, api: Any) -> bool:
    """Whether Runner.run would make a fault now (a target, permission, no journal left
    by an interrupted run); else it only says why not, and callers need prepare nothing."""
    if api is None or ctx.target is None or not ctx.allow_disruption:
        return False
    return Journal.for_target(ctx.target).read() is None


def plan_text(ctx: Context, exp: Experiment) -> str:
    """What the experiment will do, said before it does it."""
    assert ctx.target is not None
    lines = [
        f"{exp.title}",
        f"  fault: {exp.fault.text}",
        f"  undone by: {exp.fault.undo_text} (journal: {Journal.for_target(ctx.target).path})",
        f"  follows: {', '.join(exp.follow) or 'no app'}",
        f"  aborted after {exp.abort_after_s:.0f} s, or when the API is down for "
        f"{exp.max_api_down_s:.0f} s",
    ]
    if exp.fault.kind == "power-off":
        from halab.power import Power

        power = Power(ctx.inventory, ctx.target)
        lines += [f"  power: {power.how(name)}" for name in exp.fault.subjects]
    if exp.return_home:
        lines.append("  then: the followed apps' pods deleted so they return to their nodes")
    return "\n".join(lines)


def followed_now(api: Any, ctx: Context, exp: Experiment) -> dict[str, str]:
    """The node each followed app's Ready pod runs on."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    found = {}
    for name in exp.follow:
        app = ctx.inventory.app(name)
        pods = core.list_namespaced_pod(
            app.namespace, label_selector=f"app.kubernetes.io/name={name}"
        ).items
        for pod in pods:
            ready = any(
                c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
            )
            if ready and pod.metadata.deletion_timestamp is None:
                found[name] = pod.spec.node_name
    return found


def controller_lease(api: Any) -> ControllerLease | None:
    """Where kube-controller-manager leads now, from its Lease (holder `<node>_<uuid>` in
    k3s); None where it cannot be read (an older cluster, no permission)."""
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            "kube-controller-manager", "kube-system", _request_timeout=5
        )
    except (client.ApiException, HTTPError):  # the prediction leaves the takeover out
        return None
    holder = str(lease.spec.holder_identity or "")
    if not holder:
        return None
    return ControllerLease(holder.split("_", 1)[0], float(lease.spec.lease_duration_seconds or 15))


def nodes_now(api: Any) -> set[str]:
    """The nodes the cluster has registered (a rollout may not have joined them all)."""
    from kubernetes import client

    return {n.metadata.name for n in client.CoreV1Api(api).list_node().items}


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like SIGINT (a kernel being stopped), so the
    `finally` that undoes the fault runs; only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def _held_off() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while the undo runs: half an undo is the worst outcome."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if got:
            raise KeyboardInterrupt(f"signal {got[0]} (held while the fault was undone)")


class Runner:
    def __init__(
        self,
        ctx: Context,
        api: Any,
        probes: list[ProbeFn] | None = None,
        data: list[DataCheck] | None = None,
        say: Say = print,
        every: float = 0.5,
    ) -> None:
        self.ctx = ctx
        self.api = api
        self.extra = probes or []
        self.data = data or []
        self.say = say
        self.every = every

    def probes(self, exp: Experiment) -> list[ProbeFn]:
        inv = self.ctx.inventory
        found = [api_probe(self.api), nodes_probe(self.api, [n.name for n in inv.nodes])]
        found += [pods_probe(self.api, a, inv.app(a).namespace) for a in exp.follow]
        found += [
            attachment_probe(self.api, a, inv.app(a).namespace)
            for a in exp.follow
            if any(v.kind == "seaweedfs" and v.access == "RWO" for v in inv.app(a).volumes)
        ]
        return found + self.extra

    def run(self, exp: Experiment) -> Outcome:
        out = Outcome(exp)
        cid = exp.id
        if self.ctx.target is None:
            out.checks.append(Check(cid, exp.title, "skip", "no target"))
            return out
        check_subjects(exp, self.ctx.inventory)
        if not self.ctx.allow_disruption:
            why = f"disruption not allowed: run with allow_disruption=True to {exp.fault.text}"
            out.checks.append(Check(cid, exp.title, "skip", why))
            return out
        journal = Journal.for_target(self.ctx.target)
        try:
            journal.refuse_if_pending()
        except JournalError as exc:
            out.checks.append(Check(cid, exp.title, "fail", f"not started: {exc}"))
            return out
        self.say(plan_text(self.ctx, exp))
        before = followed_now(self.api, self.ctx, exp)
        if not_running := [a for a in exp.follow if a not in before]:
            if not exp.running_only:
                out.checks.append(
                    Check(f"{cid}-steady-before", "Steady state before the fault", "fail",
                          "not disrupted: not running: " + ", ".join(not_running))
                )  # fmt: skip
                return out
            out.checks.append(
                Check(f"{cid}-not-followed", "Apps not running at the start", "warn",
                      "not followed (no Ready pod before the fault): " + ", ".join(not_running),
                      required=False)
            )  # fmt: skip
            exp = replace(exp, follow=tuple(a for a in exp.follow if a in before))
            out.experiment = exp
            out.not_running = tuple(not_running)
        out.outlook = outlook(
            self.ctx.inventory, exp, before, nodes_now(self.api), controller_lease(self.api)
        )
        captured: dict[str, Any] = {}
        for dc in self.data:
            try:
                captured[dc.name] = dc.capture()
                out.blocked.update(dc.blocks(captured[dc.name]))
            except Exception as exc:  # nothing disrupted yet: say so and stop here
                out.checks.append(
                    Check(f"{cid}-steady-before", "Steady state before the fault", "fail",
                          f"not disrupted: {dc.title}: could not be captured: {explain(exc)}")
                )  # fmt: skip
                for done in self.data:
                    with contextlib.suppress(Exception):
                        done.cleanup()
                return out
        started = time.monotonic()
        watch = Watch(self.probes(exp), self.every).start()
        try:
            self._run(exp, out, watch, journal, captured, before)
        finally:
            watch.stop()
            out.samples = list(watch.samples)
            out.events = sorted(
                [
                    *out.events,
                    *lane_events(out.samples, out.origin),
                    *(e for a in exp.follow for e in pod_events(out.samples, out.origin, a)),
                ],
                key=lambda e: e.at,
            )
        self._compare(out)
        out.seconds = round(time.monotonic() - started, 3)
        out.stamp(out.checks)
        return out

    def _mark(self, out: Outcome, what: str) -> None:
        at = round(time.monotonic() - out.origin, 2)
        out.events.append(Event(at, "experiment", what))
        self.say(f"[{at:6.1f} s] {what}")

    def _steady(self, watch: Watch, since: float, lanes_expected: int) -> list[str]:
        """Lanes not fine in their latest sample since `since` (all fine: [])."""
        latest = {lane: s for lane, s in watch.latest().items() if s.at >= since}
        if len(latest) < lanes_expected:
            return ["not every probe has answered yet"]
        return [f"{lane}: {s.detail}" for lane, s in latest.items() if not s.ok]

    def _wait_steady(self, watch: Watch, lanes: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        mark = time.monotonic()
        while True:
            time.sleep(self.every)
            bad = self._steady(watch, mark, lanes)
            if not bad or time.monotonic() > deadline:
                return bad

    def _run(
        self,
        exp: Experiment,
        out: Outcome,
        watch: Watch,
        journal: Journal,
        captured: dict[str, Any],
        before: dict[str, str],
    ) -> None:
        assert self.ctx.target is not None and out.outlook is not None
        cid = exp.id
        # Every probe's first round gives the lanes the steady state must cover (a probe's
        # own timeout bounds the wait).
        watch.wait_first_round(STEADY_WITHIN_S)
        lanes = len(watch.latest()) or 1
        bad = self._wait_steady(watch, lanes, STEADY_WITHIN_S)
        out.origin = time.monotonic()
        if bad:
            out.checks.append(
                Check(f"{cid}-steady-before", "Steady state before the fault", "fail",
                      "not disrupted, the cluster is not in its steady state: " + "; ".join(bad))
            )  # fmt: skip
            for dc in self.data:
                with contextlib.suppress(Exception):  # best effort: nothing was disrupted
                    dc.cleanup()
            return
        out.checks.append(
            Check(f"{cid}-steady-before", "Steady state before the fault", "pass",
                  f"{lanes} probe lanes fine; followed apps on "
                  + (", ".join(f"{a} {n}" for a, n in before.items()) or "-"))
        )  # fmt: skip
        journal.begin(exp.id, exp.fault.text, self.ctx.inventory_path)
        interrupted: BaseException | None = None
        fault_end = 0.0
        try:
            with _interrupts_raise():
                self._mark(out, "fault injected")
                done = faults.inject(
                    exp.fault, self.api, self.ctx.inventory, self.ctx.target, journal, self.say
                )
                out.done.append(done)
                self._mark(out, done)
                verdict = self._await_outcome(exp, out, watch)
                self._mark(out, verdict)
        except KeyboardInterrupt as exc:
            interrupted = exc
            self._mark(out, "interrupted: undoing the fault")
        except Exception as exc:  # the fault or the wait failed: the undo still runs
            out.checks.append(Check(f"{cid}-fault", exp.fault.text, "fail", explain(exc)))
        finally:
            fault_end = time.monotonic()
            with _held_off():
                self._undo(out, journal)
        out.samples = list(watch.samples)  # what the outcome checks read
        out.checks += self._outcome_checks(exp, out, watch, fault_end)
        if interrupted is not None:
            out.checks.append(Check(f"{cid}-interrupted", "Interrupted", "fail", str(interrupted)))
            bad = self._wait_steady(watch, lanes, exp.settle_s)
            self._restored_check(out, bad)
            raise interrupted
        if exp.return_home:
            out.checks += self._return_home(exp, out, before)
        bad = self._wait_steady(watch, lanes, exp.settle_s)
        self._restored_check(out, bad)
        for dc in self.data:
            status, detail = _guarded(partial(dc.compare, captured[dc.name]))
            out.checks.append(Check(f"{cid}-data-{dc.name}", dc.title, status, detail))
        self._mark(out, "data verified")

    def _undo(self, out: Outcome, journal: Journal) -> None:
        assert self.ctx.target is not None
        doc = journal.read() or {"undo": []}
        for action in reversed(doc["undo"]):
            try:
                said = faults.undo(action, self.api, self.ctx.inventory, self.ctx.target)
            except Exception as exc:  # left in the journal for `halab restore`
                out.checks.append(
                    Check(f"{out.experiment.id}-undo", "The fault undone", "fail",
                          f"{action_text(action)}: {explain(exc)}; `halab restore` retries it")
                )  # fmt: skip
                continue
            journal.done(action)
            out.done.append(said)
        with contextlib.suppress(JournalError):
            journal.close()
            self._mark(out, "fault undone")

    def _restored_check(self, out: Outcome, bad: list[str]) -> None:
        cid = out.experiment.id
        if bad:
            # What each app still down waits on (a volume, an image, a crash), as it is now.
            held = [
                why.removeprefix("; ")
                for app in out.experiment.follow
                if any(b.startswith(f"pod {app}:") for b in bad)
                and (why := _why_waiting(self.api, app, self.ctx.inventory.app(app).namespace))
            ]
            out.checks.append(
                Check(f"{cid}-restored", "The fault undone and the steady state back", "fail",
                      "not back within the settle time: " + "; ".join(bad + held))
            )  # fmt: skip
            return
        self._mark(out, "steady state back")
        at = next(e.at for e in reversed(out.events) if e.what == "steady state back")
        out.checks.append(
            Check(f"{cid}-restored", "The fault undone and the steady state back", "pass",
                  "; ".join(out.done[1:]) + f"; every probe fine again {at:.1f} s after the fault")
        )  # fmt: skip

    def _await_outcome(self, exp: Experiment, out: Outcome, watch: Watch) -> str:
        """Until every app the planner moves is running again away from the lost nodes,
        or for OBSERVE_S when nothing moves; an abort condition raises."""
        assert out.outlook is not None
        # An app that cannot start while the fault holds is not waited for: its check
        # says why, and the fault is undone sooner.
        movers = [
            a
            for a in out.outlook.apps
            if a.moves and a.predicted_s is not None and a.app not in out.blocked
        ]
        gone = set(out.outlook.down_nodes)
        deadline = out.origin + exp.abort_after_s
        api_down_since: float | None = None
        observe_until = time.monotonic() + exp.observe_s
        while True:
            time.sleep(self.every)
            now = time.monotonic()
            api = watch.latest().get("API via VIP")
            if api is not None and not api.ok:
                api_down_since = api_down_since or now
                if now - api_down_since > exp.max_api_down_s:
                    raise AbortError(f"aborted: the API has been down {now - api_down_since:.0f} s")
            else:
                api_down_since = None
            samples = watch.since(out.origin)
            pending = [
                a.app for a in movers if running_again(samples, out.origin, a.app, gone)[0] is None
            ]
            if not pending and (movers or now >= observe_until):
                return "outcome seen" if movers else f"watched {exp.observe_s:.0f} s"
            if now > deadline:
                late = ", ".join(pending)
                # What each waits on, while the fault still holds.
                for name in pending:
                    ns = self.ctx.inventory.app(name).namespace
                    out.waiting[name] = _why_waiting(self.api, name, ns)
                raise AbortError(f"aborted after {exp.abort_after_s:.0f} s: not running: {late}")

    def _outcome_checks(
        self, exp: Experiment, out: Outcome, watch: Watch, fault_end: float
    ) -> list[Check]:
        assert out.outlook is not None
        found: list[Check] = []
        window = [s for s in watch.samples if out.origin <= s.at <= fault_end]
        observed = out.observed()
        for app in out.outlook.apps:
            lane = [s for s in window if s.lane == f"pod {app.app}"]
            if app.moves:
                seen_s, seen_on = observed.get(app.app, (None, ""))
                title = f"{app.app} moves off {app.before}"
                if app.predicted_s is None:
                    status: Status = "pass" if seen_s is None else "warn"
                    detail = (f"not replaced during the fault, as the planner says ({app.why})"
                              if seen_s is None else f"replaced on {seen_on} after {seen_s:.1f} s, "
                              f"which the planner does not expect ({app.why})")  # fmt: skip
                elif seen_s is None and app.app in out.blocked:
                    status = "fail"
                    detail = f"cannot run again while the fault holds: {out.blocked[app.app]}"
                elif seen_s is None:
                    status, detail = "fail", "not running again before the fault was undone"
                    detail += out.waiting.get(app.app, "")
                elif app.next_nodes and seen_on not in app.next_nodes:
                    status = "fail"
                    detail = f"Running on {seen_on} after {seen_s:.1f} s; the planner said " + (
                        " or ".join(app.next_nodes)
                    )
                else:
                    status, detail = "pass", f"Running on {seen_on} after {seen_s:.1f} s"
                    if len(app.next_nodes) > 1:
                        detail += f" (the planner allowed {' or '.join(app.next_nodes)})"
                found.append(
                    Check(f"{exp.id}-moved-{app.app}", title, status, detail, seconds=seen_s or 0.0)
                )
            else:
                down = sum(1 for s in lane if not s.ok)
                status = "pass" if down == 0 else "warn"
                detail = (
                    f"kept running on {app.before} ({len(lane)} samples)"
                    if down == 0
                    else f"{down} of {len(lane)} samples without a Ready pod"
                )
                found.append(
                    Check(
                        f"{exp.id}-unaffected-{app.app}", f"{app.app} keeps running", status, detail
                    )
                )
        for name, cid, required in (("SeaweedFS read", "seaweedfs-readable", True),
                                    ("SeaweedFS write", "seaweedfs-writable", False)):  # fmt: skip
            got = [s for s in window if s.lane == name]
            if not got:
                continue
            failed = [s for s in got if not s.ok]
            predicted = out.outlook.seaweed_readable if cid.endswith("readable") else True
            if not failed:
                status, detail = "pass", f"{len(got)} samples, every one fine"
            else:
                last = failed[-1]
                status = "fail" if predicted and required else "warn"
                detail = (
                    f"{len(failed)} of {len(got)} samples failed (last at "
                    f"{last.at - out.origin:.1f} s: {last.detail})"
                )
                if not got[-1].ok:
                    detail += "; still failing when the fault was undone"
                elif required:
                    status = "warn"  # back before the undo: a gap, not a loss
            found.append(
                Check(f"{exp.id}-{cid}", f"{name} while the fault lasts", status,
                      detail + f" (planner: {out.outlook.seaweed_text})" if required else detail,
                      required=required)
            )  # fmt: skip
        return found

    def _return_home(self, exp: Experiment, out: Outcome, before: dict[str, str]) -> list[Check]:
        """The plan's "delete the pod to force reschedule back": each followed app that
        moved gets its pod deleted and must come back to the node it left."""
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        found = []
        for app in exp.follow:
            home = before.get(app)
            if not home:
                continue
            namespace = self.ctx.inventory.app(app).namespace
            title = f"{app} returns to {home}"
            selector = f"app.kubernetes.io/name={app}"
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
            if all(p.spec.node_name == home for p in pods):
                found.append(Check(f"{exp.id}-returned-{app}", title, "pass", f"still on {home}"))
                continue
            old = {p.metadata.uid for p in pods}
            for pod in pods:
                core.delete_namespaced_pod(pod.metadata.name, namespace)
            self._mark(out, f"{app}'s pod deleted to bring it home")
            start = time.monotonic()
            deadline = start + exp.settle_s
            status: Status = "fail"
            detail = f"not Running again within {exp.settle_s:.0f} s"
            while time.monotonic() < deadline:
                fresh = [
                    p
                    for p in core.list_namespaced_pod(namespace, label_selector=selector).items
                    if p.metadata.uid not in old and p.metadata.deletion_timestamp is None
                ]
                ready = [
                    p
                    for p in fresh
                    if any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                    )
                ]
                if ready:
                    where = ready[0].spec.node_name
                    status = "pass" if where == home else "fail"
                    detail = f"Running on {where} after {time.monotonic() - start:.1f} s"
                    self._mark(out, f"{app} Running on {where}")
                    break
                time.sleep(self.every)
            found.append(Check(f"{exp.id}-returned-{app}", title, status, detail))
        return found

    def _compare(self, out: Outcome) -> None:
        frame = out.comparison
        if frame.empty:
            return
        found = findings(frame)
        out.checks.append(
            Check(f"{out.experiment.id}-planner", "Observed against the planner's prediction",
                  "warn" if found else "pass",
                  "; ".join(found) or f"every workload as predicted ({frame.attrs['tolerance']})",
                  data=frame.to_dict(orient="records"), required=False)
        )  # fmt: skip


def _why_waiting(api: Any, app: str, namespace: str) -> str:
    """What the app's newest pod waits on: its last warning event, else its containers'
    waiting reasons (so a pod stuck on a volume says so)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    try:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/name={app}"
        ).items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        if not live:
            return "; no pod of it left"
        pod = max(live, key=lambda p: p.metadata.creation_timestamp)
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
        ).items
        warnings = sorted(
            (e for e in events if e.type == "Warning"),
            key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
        )
        states = [
            f"{c.name} {c.state.waiting.reason}"
            for c in (pod.status.init_container_statuses or [])
            + (pod.status.container_statuses or [])
            if c.state and c.state.waiting
        ]
        said = f"; {pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase}" + (
            f" ({', '.join(states)})" if states else ""
        )
        if warnings:
            # The newest, with the state beside it: an early warning (a Multi-Attach before
            # the force detach) may have been overtaken by what holds the pod now.
            last = warnings[-1]
            said += f"; its last warning: {last.reason}: {last.message}"
        return said
    except Exception:  # the reason is a courtesy; the verdict stands without it
        return ""


class AbortError(Exception):
    """An abort condition: the fault is undone at once."""


def _guarded(fn: Callable[[], tuple[Status, str]]) -> tuple[Status, str]:
    try:
        return fn()
    except Exception as exc:
        return "fail", explain(exc)


def restore(ctx: Context, api: Any, say: Say = print) -> list[str]:
    """`halab restore`: carry out what an interrupted experiment's journal still holds."""
    assert ctx.target is not None
    journal = Journal.for_target(ctx.target)
    doc = journal.read()
    if doc is None:
        return []
    done = []
    say(f"undoing what experiment {doc.get('experiment')!r} left ({doc.get('started')})")
    for action in reversed(doc["undo"]):
        said = faults.undo(action, api, ctx.inventory, ctx.target)
        journal.done(action)
        say(f"  {said}")
        done.append(said)
    journal.close()
    return done
