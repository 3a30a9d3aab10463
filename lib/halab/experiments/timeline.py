"""From samples to a story: the events of an experiment (fault injected, node NotReady
seen, taint added, pod Terminating, replacement scheduled and Running, service answering
again, fault undone, steady state back), the swimlane figure, and the planner's
prediction set beside what was observed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from halab.experiments.expect import TOLERANCE_TEXT, Outlook, tolerance_s
from halab.experiments.probes import Sample


@dataclass(frozen=True)
class Event:
    at: float  # seconds since the fault was injected
    lane: str
    what: str


def lane_events(samples: list[Sample], origin: float) -> list[Event]:
    """A lane's changes of state after the fault: down, back; for nodes, NotReady and
    each taint as it first appears."""
    out: list[Event] = []
    last: dict[str, bool] = {}
    taints_seen: dict[str, set[str]] = {}
    attached_to: dict[str, tuple[Any, Any, bool]] = {}
    for s in sorted(samples, key=lambda s: s.at):
        t = round(s.at - origin, 2)
        before = last.get(s.lane)
        last[s.lane] = s.ok
        if s.lane.startswith("node "):
            node = s.lane.removeprefix("node ")
            seen = taints_seen.setdefault(s.lane, set())
            for taint in s.facts.get("taints", []):
                if taint not in seen:
                    seen.add(taint)
                    if t >= 0:
                        out.append(Event(t, s.lane, f"taint {taint.split('/')[-1]} on {node}"))
            if before is True and not s.ok and t >= 0:
                out.append(Event(t, s.lane, f"{node} {s.detail.split(' (')[0]}"))
            elif before is False and s.ok and t >= 0:
                out.append(Event(t, s.lane, f"{node} Ready again"))
            continue
        if s.lane.startswith("pod "):
            continue  # pod_events tells their story
        if s.lane.startswith("volume "):
            where = (s.facts.get("claim"), s.facts.get("node"), s.ok)
            if where != attached_to.get(s.lane) and t >= 0:
                state = "attached to" if s.ok else "detaching from or attaching to"
                out.append(Event(t, s.lane, f"{s.facts.get('claim')} {state} {where[1]}"))
            attached_to[s.lane] = where
            continue
        if before is True and not s.ok and t >= 0:
            out.append(Event(t, s.lane, f"{s.lane} failing"))
        elif before is False and s.ok and t >= 0:
            out.append(Event(t, s.lane, f"{s.lane} answering again"))
    return out


def pod_events(samples: list[Sample], origin: float, app: str) -> list[Event]:
    """The pods of one app after the fault: each pod seen Terminating, each new pod
    created, scheduled and Ready. What was there before the fault is the baseline."""
    lane = f"pod {app}"
    out: list[Event] = []
    known: set[str] = set()
    deleting: set[str] = set()
    scheduled: set[str] = set()
    ready: set[str] = set()
    previous: dict[str, dict[str, Any]] = {}
    for s in sorted((s for s in samples if s.lane == lane), key=lambda s: s.at):
        t = round(s.at - origin, 2)
        pods = {p["uid"]: p for p in s.facts.get("pods", [])}
        if t >= 0:
            # Deleted between two samples: seen gone rather than Terminating.
            out += [
                Event(t, lane, f"{p['name']} gone from {p['node'] or '-'}")
                for uid, p in previous.items()
                if uid not in pods
            ]
        previous = pods
        for pod in pods.values():
            uid, node, name = pod["uid"], pod["node"], pod["name"]
            fresh = uid not in known
            known.add(uid)
            events = []
            if fresh and not node:
                events.append(f"{name} created, Pending")
            if pod["deleting"] and uid not in deleting:
                deleting.add(uid)
                events.append(f"{name} Terminating on {node or '-'}")
            if node and uid not in scheduled:
                scheduled.add(uid)
                events.append(f"{name} scheduled on {node}")
            if pod["ready"] and not pod["deleting"] and uid not in ready:
                ready.add(uid)
                events.append(f"{app} Running and Ready on {node}")
            if t >= 0:
                out += [Event(t, lane, what) for what in events]
    return out


def running_again(
    samples: list[Sample], origin: float, app: str, away_from: set[str]
) -> tuple[float | None, str]:
    """When a pod of `app` not on `away_from` was first Ready after the fault (seconds), and
    where; (None, "") if never."""
    for s in sorted((s for s in samples if s.lane == f"pod {app}"), key=lambda s: s.at):
        if s.at < origin:
            continue
        for pod in s.facts.get("pods", []):
            if pod["ready"] and not pod["deleting"] and pod["node"] not in away_from:
                return round(s.at - origin, 2), str(pod["node"])
    return None, ""


def events_frame(events: list[Event]) -> pd.DataFrame:
    rows = [{"seconds": e.at, "lane": e.lane, "event": e.what} for e in events]
    frame = pd.DataFrame(rows, columns=["seconds", "lane", "event"])
    return frame.sort_values("seconds", kind="stable").reset_index(drop=True)


def comparison(outlook: Outlook, observed: dict[str, tuple[float | None, str]]) -> pd.DataFrame:
    """Predicted against observed for every followed app, with the difference and a
    verdict: within tolerance, a finding (too far apart), or not seen."""
    rows: list[dict[str, Any]] = []
    for app in outlook.apps:
        seen_s, seen_on = observed.get(app.app, (None, ""))
        row: dict[str, Any] = {
            "workload": app.app,
            "predicted where": ("stays on " + app.before)
            if not app.moves
            else (" or ".join(app.next_nodes) or "nowhere"),
            "observed where": seen_on or "-",
            "predicted s": app.predicted_s,
            "observed s": seen_s,
            "difference s": None,
            "verdict": "",
            "why (planner)": app.why,
        }
        if not app.moves:
            row["verdict"] = "as predicted" if seen_on in ("", app.before) else "moved: a finding"
        elif app.predicted_s is None:
            row["verdict"] = (
                "not replaced, as predicted" if seen_s is None else "replaced: a finding"
            )
        elif seen_s is None:
            row["verdict"] = "not seen running again: a finding"
        else:
            diff = round(seen_s - app.predicted_s, 1)
            row["difference s"] = diff
            where_ok = not app.next_nodes or seen_on in app.next_nodes
            in_time = abs(diff) <= tolerance_s(app.predicted_s)
            row["verdict"] = (
                "as predicted"
                if where_ok and in_time
                else "; ".join(
                    ([] if where_ok else [f"ran on {seen_on}, not where predicted"])
                    + ([] if in_time else [f"{diff:+.0f} s off the prediction"])
                )
                + ": a finding"
            )
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["tolerance"] = TOLERANCE_TEXT
    return frame


def findings(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    return [
        f"{r['workload']}: {r['verdict']}" for _, r in frame.iterrows() if "finding" in r["verdict"]
    ]


LANE_COLOURS = {True: "#38a169", False: "#e53e3e"}


def segments(
    samples: list[Sample], origin: float, gap: float = 3.0
) -> dict[bool, list[tuple[float, float]]]:
    """One lane's samples as runs of the same state, (start, width) in seconds since the
    origin; a run ends at the next sample, or `gap` after its last one when nothing was
    seen for longer (left grey: nothing could be asked)."""
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    ordered = sorted(samples, key=lambda s: s.at)
    start: float | None = None
    state = False
    last = 0.0
    for here in ordered:
        t = here.at - origin
        if start is not None and (here.ok != state or t - last > gap):
            end = t if t - last <= gap else last + gap
            runs[state].append((start, end - start))
            start = None
        if start is None:
            start, state = t, here.ok
        last = t
    if start is not None:
        runs[state].append((start, max(last - start, 0.0) + 0.5))
    return runs


def swimlane(samples: list[Sample], origin: float, events: list[Event], title: str) -> Figure:
    """One lane per probe, green while it was fine, red while not, grey where it could not
    be asked; the experiment's own events as lines across every lane."""
    lanes = list(dict.fromkeys(s.lane for s in sorted(samples, key=lambda s: (s.lane[:4], s.at))))
    fig = Figure(figsize=(10, 0.45 * max(len(lanes), 3) + 1.8))
    ax = fig.add_subplot()
    end = max((s.at - origin for s in samples), default=1.0)
    start = min((s.at - origin for s in samples), default=0.0)
    by_lane: dict[str, list[Sample]] = {}
    for s in samples:
        by_lane.setdefault(s.lane, []).append(s)
    for row, lane in enumerate(lanes):
        # One call per lane and colour: matplotlib rescales the axes on every call.
        ax.broken_barh([(start, end - start)], (row - 0.35, 0.7), color="#e2e8f0")
        for ok, runs in segments(by_lane[lane], origin).items():
            if runs:
                ax.broken_barh(runs, (row - 0.35, 0.7), color=LANE_COLOURS[ok])
    ax.set_xlim(start, end + 0.5)
    ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.invert_yaxis()
    for e in (e for e in events if e.lane == "experiment"):
        ax.axvline(e.at, color="#2d3748", linestyle="--", linewidth=0.8)
        ax.text(e.at, -0.6, f" {e.what}", rotation=30, fontsize=7, va="bottom", ha="left")
    ax.set_xlabel("seconds since the fault was injected")
    ax.set_title(title, fontsize=10, pad=38)
    fig.tight_layout()
    return fig
