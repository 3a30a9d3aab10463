"""Write notebooks/phase1.ipynb and phase6.ipynb (no outputs, stable cell ids).

Run after changing the cells here: python tools/make_cluster_notebooks.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}

PARAMS = '''# Parameters (papermill replaces these)
inventory = "params/cluster.yaml"
target = "outputs/twin/target.yaml"  # `halab twin up` writes it; yours: params/target-home.yaml
run_dir = "outputs/runs/interactive"'''

PHASE1 = [
    new_markdown_cell(
        "# Phase 1: worker nodes\n\n"
        "The plan's *Phase 1: Worker Node Infrastructure*: k3s-w1 on Proxmox and k3s-w2 on "
        "Unraid joined to the cluster, labelled `role=primary` and `role=backup`, and able to "
        "run pods.\n\nEvery check reads the live cluster named by the target: the twin "
        "(`halab twin up`) or yours."
    ),
    new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client, node_table\n"
        "from halab.phases import phase1\n\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir)\n"
        'ev = evidence_for(ctx, "phase1")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are skipped\n"
        "ctx.summary()"
    ),
    new_markdown_cell("## Nodes\n\nWhat `kubectl get nodes` shows, as a table."),
    new_code_cell('node_table(api) if api else "no target: nothing to show"'),
    new_markdown_cell(
        "## Ready and labelled\n\nBoth workers Ready, with the labels the inventory gives "
        "them (registration labels and those set through the API). A missing label comes "
        "with the `kubectl label` command that sets it."
    ),
    new_code_cell("ev.add(*phase1.check_ready(ctx, api), *phase1.check_labels(ctx, api))\nev"),
    new_markdown_cell(
        "## A test pod on each worker\n\nA pod per worker, placed by the scheduler through a "
        "node selector, runs to completion and writes its node's name to its log; it is "
        "deleted afterwards."
    ),
    new_code_cell("ev.add(*phase1.check_test_pods(api))\nev"),
    new_code_cell("evidence.finish(ev)"),
]

PHASE6 = [
    new_markdown_cell(
        "# Phase 6: control-plane HA\n\n"
        "The plan's *Phase 6: Control Plane HA*: three control-plane nodes (cp1 on Proxmox, "
        "cp2 on Unraid, cp3 on the Pi), three etcd members with a leader, the API reachable "
        "through the kube-vip VIP.\n\n"
        "With `allow_disruption=True` the notebook also pulls the plug on the host whose node "
        "holds the VIP (through the target's power commands), watches the API through the "
        "VIP, and always powers the host back on."
    ),
    new_code_cell(PARAMS + "\nallow_disruption = False", metadata={"tags": ["parameters"]}),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client, node_table\n"
        "from halab.phases import phase6\n\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir, "
        "allow_disruption=allow_disruption)\n"
        'ev = evidence_for(ctx, "phase6")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are skipped\n"
        "ctx.summary()"
    ),
    new_code_cell('node_table(api) if api else "no target: nothing to show"'),
    new_markdown_cell(
        "## Control plane, etcd, VIP\n\netcd is asked through its own client endpoints "
        "(the target's `etcd:`), so the leader comes from raft, not from a guess. Each "
        "member's own keys are compared too: a member that crashed can come back holding "
        "other data than its peers (etcd 3.5.0-3.5.2) while it answers as healthy."
    ),
    new_code_cell("found, members = phase6.checks(ctx, api)\nev.add(*found)\nmembers"),
    new_markdown_cell(
        "## Pull a control-plane host's plug\n\n"
        "Skipped unless `allow_disruption=True`. The host chosen is the one whose node holds "
        "the VIP, the worst case: the VIP has to move and etcd may lose its leader. Once it "
        "is back, its etcd member must hold the same data as the others."
    ),
    new_code_cell("rehearsal = phase6.rehearse_failure(ctx, api)\nev.add(*rehearsal.checks)\nev"),
    new_code_cell(
        "if not rehearsal.timeline.empty:\n"
        '    display(ev.figure(phase6.availability_figure(rehearsal), "availability"))'
    ),
    new_code_cell("evidence.finish(ev)"),
]


def write(name: str, cells: list[nbformat.NotebookNode]) -> None:
    for n, cell in enumerate(cells):
        cell["id"] = f"cell-{n:02d}"
    nb = new_notebook(
        cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}}
    )
    nbformat.validate(nb)
    (ROOT / "notebooks" / f"{name}.ipynb").write_text(nbformat.writes(nb) + "\n")


if __name__ == "__main__":
    write("phase1", PHASE1)
    write("phase6", PHASE6)
