"""How long rendering and validating the tree take: the plan's cluster and a 200-node one.

Prints wall-clock figures (best of several runs) and the ratio between the two inventories
in the same run. Run: .venv/bin/python bench/render_scale.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

from halab.inventory import inventory_from_data, load_inventory
from halab.inventory.synthetic import synthetic_data
from halab.paths import project_root
from halab.render import render
from halab.render.validate import validate_tree


def best(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cases = {
        "params/cluster.yaml": load_inventory(project_root() / "params" / "cluster.yaml"),
        "synthetic 200 nodes / 20 racks": inventory_from_data(synthetic_data()),
    }
    validate_tree(render(cases["params/cluster.yaml"]), "1.32")  # load the schemas once
    figures = {}
    print(f"{'inventory':<32} {'files':>6} {'objects':>8} {'render':>9} {'validate':>9}")
    for label, inv in cases.items():
        files = render(inv)
        objects = sum(
            t.count("\napiVersion:") + t.startswith("apiVersion:")
            for p, t in files.items()
            if p.endswith(".yaml")
        )
        r = best(partial(render, inv), args.repeat)
        v = best(partial(validate_tree, files, inv.cluster.kubernetes_version), args.repeat)
        figures[label] = (r, v)
        print(f"{label:<32} {len(files):>6} {objects:>8} {r:>8.3f}s {v:>8.3f}s")
    (r1, v1), (r2, v2) = figures.values()
    print(f"ratio large/plan: render x{r2 / r1:.1f}, validate x{v2 / v1:.1f}")


if __name__ == "__main__":
    main()
