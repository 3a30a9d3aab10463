"""The plan's failure scenarios on the tuned twin: observed against predicted.

Starts a twin of the shipped inventory with tuned timings (grace 4 s, tolerations 3 s, the
force detach 8 s) in a temporary directory, rolls out phases 0 to 8 with `halab run`, then
powers each host off in turn as notebooks/failover.ipynb does (halab.phases.failover) and
prints, per scenario and workload: where the planner says it runs next and after how
many seconds, where and when it was seen Running and Ready, the difference, and the
verdict; then per scenario the API's longest outage through the VIP and the scenario's
own checks. The baseline is the planner's prediction from the same inventory, so the
ratio observed/predicted says how much of a failover is the timers and how much is the
rest (stopping, detaching, mounting, starting).

The swimlane of each scenario is saved to outputs/bench/failover-<host>.png.

Two hosts joined by "+" are powered off at once (the plan's "any 2 hosts down"): the API's
outage and whether it stayed readable are printed, as the plan claims "read-only mode".

Run: .venv/bin/python bench/failover.py [--hosts proxmox,unraid,pi,unraid+pi]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from halab import netguard
from halab.context import open_context
from halab.kube import api_client
from halab.phases import failover
from halab.twin import supervisor
from halab.twin.timings import tuned_inventory

netguard.install()
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hosts",
        default="",
        help="comma-separated; a+b powers two off at once (default: every host, one at a time)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="halab-failover-") as tmp:
        base = Path(tmp)
        inventory = tuned_inventory(ROOT / "params" / "cluster.yaml", base / "cluster.yaml")
        twin = base / "twin"
        started = time.monotonic()
        supervisor.up(inventory, twin, timeout=180)
        target = twin / "target.yaml"
        try:
            print(f"twin up in {time.monotonic() - started:.0f} s; rolling out phases 0-8")
            rolled = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "halab.cli", "run", "--phases", "0-8", "--keep-going",
                 "--inventory", str(inventory), "--target", str(target),
                 "--out", str(base / "runs")],
                cwd=ROOT, capture_output=True, text=True,
            )  # fmt: skip
            print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr)
            print(f"rolled out in {time.monotonic() - rolled:.0f} s")
            ctx = open_context(inventory, target, run_dir=base / "bench", allow_disruption=True)
            api = api_client(ctx.target)  # type: ignore[arg-type]
            hosts = [h for h in args.hosts.split(",") if h]
            rows = []
            out_dir = ROOT / "outputs" / "bench"
            out_dir.mkdir(parents=True, exist_ok=True)
            for exp in failover.experiments(ctx, hosts or None):
                began = time.monotonic()
                outcome = failover.rehearse(ctx, api, exp, say=lambda _: None)
                took = time.monotonic() - began
                if outcome.samples:
                    figure = outcome.figure()
                    figure.savefig(out_dir / f"failover-{exp.fault.subject}.png", dpi=110)
                frame = outcome.comparison
                for _, row in frame.iterrows():
                    predicted, observed = row["predicted s"], row["observed s"]
                    ratio = (
                        f"{observed / predicted:.2f}"
                        if isinstance(predicted, float) and predicted and observed is not None
                        and observed == observed
                        else "-"
                    )  # fmt: skip
                    rows.append(
                        (exp.fault.subject, row["workload"], row["predicted where"],
                         row["observed where"], predicted, observed, ratio, row["verdict"])
                    )  # fmt: skip
                api_check = next((c for c in outcome.checks if c.id.endswith("-api")), None)
                claim = next((c for c in outcome.checks if c.id.endswith("-read-only")), None)
                bad = [f"{c.id}={c.status}" for c in outcome.checks if c.status != "pass"]
                print(
                    f"\n{exp.title}: {took:.0f} s in all; "
                    f"API: {api_check.detail if api_check else 'not seen'}; "
                    + (f"read-only claim: {claim.status}: {claim.detail}; " if claim else "")
                    + f"not passing: {', '.join(bad) or 'none'}"
                )
                for check in outcome.checks:
                    if check.status in ("fail", "warn"):
                        print(f"  {check.id} ({check.status}): {check.detail[:300]}")
            print(
                f"\n{'host':9} {'workload':26} {'predicted on':26} {'observed on':12} "
                f"{'pred s':>7} {'obs s':>7} {'obs/pred':>8}  verdict"
            )
            for host, app, where, seen, pred, obs, ratio, verdict in rows:
                pred_s = "-" if pred is None or pred != pred else f"{pred:.0f}"
                obs_s = "-" if obs is None or obs != obs else f"{obs:.1f}"
                print(
                    f"{host:9} {app:26} {where[:26]:26} {seen[:12]:12} {pred_s:>7} {obs_s:>7} "
                    f"{ratio:>8}  {verdict}"
                )
        finally:
            supervisor.down(twin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
