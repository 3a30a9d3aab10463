"""How long loading and planning take: the plan's cluster and a 200-node, 20-rack one.

Prints wall-clock figures (best of several runs) and the ratio of the large inventory to
the plan's, measured in the same run. Targets from the foundation issue: loading under
1 s and planning under 5 s, in-process. Run: .venv/bin/python bench/plan_scale.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ruamel.yaml import YAML

from halab.inventory import load_inventory
from halab.inventory.synthetic import synthetic_data
from halab.paths import project_root
from halab.plan import plan


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs), statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--nodes-per-host", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "synthetic.yaml"
        yaml = YAML(typ="safe", pure=True)
        with big.open("w") as fh:
            yaml.dump(synthetic_data(args.hosts, args.nodes_per_host), fh)
        cases = {
            "params/cluster.yaml": project_root() / "params" / "cluster.yaml",
            f"synthetic {args.hosts * args.nodes_per_host} nodes / {args.hosts} racks": big,
        }
        results: dict[str, tuple[float, float]] = {}
        print(
            f"{'inventory':<34} {'load best':>10} {'load med':>9} {'plan best':>10} "
            f"{'plan med':>9}  target"
        )
        for label, path in cases.items():
            inv = load_inventory(path)
            load_best, load_med = timed(partial(load_inventory, path), args.repeat)
            plan_best, plan_med = timed(partial(plan, inv), args.repeat)
            results[label] = (load_best, plan_best)
            ok = "ok" if load_best < 1 and plan_best < 5 else "MISSED (load < 1 s, plan < 5 s)"
            print(
                f"{label:<34} {load_best:>9.3f}s {load_med:>8.3f}s {plan_best:>9.3f}s "
                f"{plan_med:>8.3f}s  {ok}"
            )
        (small_load, small_plan), (big_load, big_plan) = results.values()
        load_ratio, plan_ratio = big_load / small_load, big_plan / small_plan
        print(f"ratio large/plan: load x{load_ratio:.1f}, plan x{plan_ratio:.1f}")


if __name__ == "__main__":
    main()
