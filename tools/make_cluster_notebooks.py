"""Write notebooks/phase1, phase2, phase3, phase4, phase5, phase6, phase7, phase8 and failover.ipynb (no outputs, stable cell ids).

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

FIO = (
    "\n# The storage benchmark's fio file and random-job seconds (small: a check, not a study)"
    '\nfio_size = "32M"\nfio_runtime = 2'
)


def bench_cells(phase: int, subjects: str, words: str) -> list[nbformat.NotebookNode]:
    """The storage benchmark section: fio Jobs, the local disk as the baseline."""
    return [
        new_markdown_cell(
            "## Storage benchmark\n\nIn the manner of kubestr's fio: fio runs as Jobs on one "
            f"node, on {words} and, as the baseline in the same run, on the node's local disk "
            "(an emptyDir), each measured the same way: sequential read and write MB/s, 4 KiB "
            "random read and write IOPS, and the random jobs' latency p50 and p99. Saved as "
            f"`phase{phase}.storage.json` (`halab.storagebench/v1`); `halab storage-bench` "
            "runs the same headless, bigger."
        ),
        new_code_cell(
            "from halab.storagebench.fio import FioSpec\n"
            "from halab.storagebench.runner import section\n\n"
            f"bench = section(ctx, api, {subjects}, FioSpec(fio_size, fio_runtime), "
            f'{phase}, "phase{phase}")\n'
            'bench.table() if bench else "no target: nothing measured"'
        ),
        new_code_cell(
            "if bench:\n"
            "    display(bench.ratios())\n"
            '    display(ev.figure(bench.figure(), "storage"))'
        ),
    ]


PHASE1 = [
    new_markdown_cell(
        "# Phase 1: worker nodes\n\n"
        "The plan's *Phase 1: Worker Node Infrastructure*: the workers created, joined to the "
        "cluster, labelled (the plan's k3s-w1 `role=primary` on Proxmox and k3s-w2 "
        "`role=backup` on Unraid), and able to run pods.\n\n"
        "Which nodes this phase brings in, and the labels and taints each should carry, come "
        "from the inventory's `rollout:` and `nodes:`, so the notebook checks your cluster as "
        "you describe it. Every check reads the live cluster named by the target: the twin "
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
    new_markdown_cell(
        "## What this phase brings in\n\nThe nodes the rollout adds in phase 1, with what "
        "the inventory says they carry."
    ),
    new_code_cell("phase1.scope(ctx)"),
    new_markdown_cell(
        "## Label the nodes\n\nThe plan's step *Label nodes*: every label the inventory "
        "gives these nodes that they do not carry yet is set through the API (labels given "
        "at registration normally are there already). Run it again and it changes nothing."
    ),
    new_code_cell(
        "from halab.changes import changes_table\n\nchanges_table(phase1.label_nodes(ctx, api))"
    ),
    new_markdown_cell("## Nodes\n\nWhat `kubectl get nodes` shows, as a table."),
    new_code_cell('node_table(api) if api else "no target: nothing to show"'),
    new_markdown_cell(
        "## Ready, labelled and tainted\n\nEach node Ready, with the labels the inventory "
        "gives it (registration labels and those set through the API) and its taints. A "
        "missing label or taint comes with the `kubectl` command that sets it."
    ),
    new_code_cell("ev.add(*phase1.check_ready(ctx, api), *phase1.check_labels(ctx, api))\nev"),
    new_markdown_cell(
        "## A test pod on each node\n\nA pod per node, placed by the scheduler through a "
        "node selector (and tolerating the node's own taints), runs to completion and writes "
        "its node's name to its log; it is deleted afterwards. A node that is missing or not "
        "Ready fails here at once rather than after a wait."
    ),
    new_code_cell("ev.add(*phase1.check_test_pods(ctx, api))\nev"),
    new_code_cell("evidence.finish(ev)"),
]

PHASE2 = [
    new_markdown_cell(
        "# Phase 2: SeaweedFS\n\n"
        "The plan's *Phase 2: SeaweedFS Distributed Storage (Basic 2-Node)*: SeaweedFS "
        "masters, volume servers and filers on the nodes the inventory gives them, the CSI "
        "driver and the `seaweedfs-ha` / `seaweedfs-ha-rwx` StorageClasses, a test claim "
        'written and read, "data replicated across all 3 nodes", and "survive single '
        'node stop".\n\n'
        "SeaweedFS is reached through the Kubernetes API server's service proxy, so the "
        "target's kubeconfig is all it takes. Where the copies really are is read from the "
        "master, and the planner's placement predictions are checked against it: the live "
        "master is asked to grow one volume of every replication code in a throwaway "
        "collection."
    ),
    new_code_cell(PARAMS + "\nallow_disruption = False" + FIO, metadata={"tags": ["parameters"]}),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.changes import changes_table\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client\n"
        "from halab.phases import phase2\n"
        "from halab.seaweed import SeaweedFS\n\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir, "
        "allow_disruption=allow_disruption)\n"
        'ev = evidence_for(ctx, "phase2")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are skipped\n"
        "sw = SeaweedFS(api, ctx.inventory) if api else None\n"
        "ctx.summary()"
    ),
    new_markdown_cell(
        "## What runs where\n\nThe SeaweedFS roles of the nodes present by phase 2, with "
        "the rack each volume server reports (`-rack`) and its disk."
    ),
    new_code_cell("phase2.scope(ctx)"),
    new_markdown_cell(
        "## Deliver storage/\n\nThe SeaweedFS part of the rendered tree, by server-side "
        "apply (field manager `halab`): the namespace, a StatefulSet of one per server pinned "
        "to its node, the CSI driver's HelmRelease (applied where Flux serves its kind) and the "
        "StorageClasses. Then every pod of this phase is waited for, and every filer must read "
        "a marker written through every other: SeaweedFS's peer discovery can leave a filer "
        "blind to one that registered while it started, and that filer is restarted."
    ),
    new_code_cell(
        "changes = phase2.deliver(ctx, api)\n"
        "changes.append(phase2.wait_running(ctx, api))\n"
        "changes.append(phase2.converge_filers(ctx, api))\n"
        "changes_table(changes)"
    ),
    new_markdown_cell(
        "## Servers, masters, CSI\n\nEach node's pods Running, the masters' raft leader, "
        "every volume server registered in the rack the render gave it, what `weed shell` "
        "says (`cluster.check`, and `volume.fix.replication` simulated: the volumes a repair "
        "would copy), the CSI driver registered on the nodes that run pods, and a test claim "
        "of `seaweedfs-ha` bound, written by one pod and read back by another (the claim and "
        "its retained volume are removed afterwards)."
    ),
    new_code_cell(
        "ev.add(*phase2.check_pods(ctx, api))\n"
        "ev.add(phase2.check_masters(ctx, sw), phase2.check_registered(ctx, sw))\n"
        "ev.add(*phase2.check_health(sw))\n"
        "ev.add(*phase2.check_csi(ctx, api), *phase2.check_claim(ctx, api))\n"
        "ev"
    ),
    new_markdown_cell(
        "## Data: written, read back, replicated\n\nA file of random bytes is written "
        "through one filer and read back through every other with its checksum. Its volume's "
        "copies are looked up on the master: as many as the replication says, and, for every "
        "volume, whether its copies sit on distinct physical hosts (with the plan's interim "
        "`002` in one rack they may not: the planner says so, and the check names the volumes "
        "where it happened)."
    ),
    new_code_cell(
        "probe = phase2.write_probe(sw) if sw else None\n"
        "ev.add(phase2.check_read_back(sw, probe), *phase2.check_replicated(ctx, sw, probe))\n"
        "phase2.copies_table(sw) if sw else None"
    ),
    new_code_cell('if sw:\n    display(ev.figure(phase2.copies_figure(sw), "copies"))'),
    new_markdown_cell(
        "## The planner against SeaweedFS\n\nFor every replication code the planner lists for "
        "this layout, the live master grows one volume in a throwaway collection (deleted "
        "afterwards). Grown or refused, and SeaweedFS's own reason beside the planner's: any "
        "disagreement fails the check."
    ),
    new_code_cell("agree, table = phase2.check_planner(ctx, sw)\nev.add(agree)\ntable"),
    new_markdown_cell(
        "## Survive a node's host going down\n\nSkipped unless `allow_disruption=True`. The "
        "host of a volume server that holds a copy of the file (a worker's first, and only one "
        "whose loss keeps the API) is powered off through the target's power commands; the "
        "file must read back through a filer elsewhere. The host is always powered back on."
    ),
    new_code_cell(
        "ev.add(phase2.rehearse_host_loss(ctx, sw, probe, api))\n"
        "print(phase2.cleanup(sw, probe).detail)\n"
        "ev"
    ),
    *bench_cells(2, '("local", "seaweedfs")', "a SeaweedFS claim (the CSI driver's weed mount)"),
    new_code_cell("evidence.finish(ev)"),
]

PHASE3 = [
    new_markdown_cell(
        "# Phase 3: Unraid NFS\n\n"
        "The plan's *Phase 3: Unraid NFS Integration*: the NFS server's exports (the plan's "
        "`/mnt/user/media` read-only and `/mnt/user/transcode` read-write), NFS PVs and claims, "
        'and its three validation lines: "NFS exports accessible from all nodes", "Media '
        'PVC binds successfully", "Test pod can read media files".\n\n'
        "Added, because the plan implies them: a pod can write to the read-write export, the "
        "read-only export refuses writes, and the plan's own mistake (Sonarr mounts the "
        "read-only export to write to it, finding `nfs-write-to-ro-export`) is shown on the "
        "cluster. The NFS server is spoken to by a real NFSv3 client on the ports the target "
        "gives (`nfs:`); its exports come from the inventory's `storage.nfs`."
    ),
    new_code_cell(PARAMS + FIO, metadata={"tags": ["parameters"]}),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.changes import changes_table\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client\n"
        "from halab.phases import phase3\n\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir)\n"
        'ev = evidence_for(ctx, "phase3")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are skipped\n"
        "ctx.summary()"
    ),
    new_markdown_cell(
        "## The exports\n\nEach export of the inventory, its options, and the claim and PV "
        "the rendered tree gives it in each namespace whose apps mount it (a PV binds one "
        "claim). Below it, the server's `/etc/exports` as rendered (`external/<host>/exports`): "
        "the cluster's subnet only, not `*`. Put it on the server and run `exportfs -ra`. "
        "Where the target reaches the hosts over SSH, the server's own file is read and "
        "compared with it."
    ),
    new_code_cell("phase3.scope(ctx)"),
    new_code_cell("print(phase3.exports_file(ctx))\nev.add(phase3.check_server_exports(ctx))"),
    new_markdown_cell(
        "## Deliver storage/nfs.yaml\n\nThe NFS PVs and claims, by server-side apply (field "
        "manager `halab`). Each PV is pre-bound to its claim, so no other claim can take it."
    ),
    new_code_cell("changes_table(phase3.deliver(ctx, api))"),
    new_markdown_cell(
        "## Exported, and reachable from every node\n\nThe server's MOUNT service lists "
        "every export. Then every export is listed and read by an NFS client whose "
        "connections start from each node's address (the exports admit the cluster's subnet "
        "only). Where a node's address is not one of this machine's (at home), a pod pinned "
        "to the node mounts every export's claim and lists it instead: the node's own NFS "
        "client, as its workloads use it."
    ),
    new_code_cell("ev.add(phase3.check_exports(ctx), *phase3.check_from_nodes(ctx, api=api))\nev"),
    new_markdown_cell(
        "## Claims and pods\n\nEach claim Bound to its rendered PV; a pod mounting the "
        "media claim checksums every file, and the sums must equal what an NFS client reads "
        "straight from the server; a pod writes to each read-write export and is refused "
        "(EROFS) on each read-only one; and every app that mounts a read-only export "
        "read-write tries the write its pod would make (a warning when it fails: the plan's "
        "mistake, live)."
    ),
    new_code_cell(
        "ev.add(*phase3.check_claims(ctx, api), phase3.check_pod_reads(ctx, api))\n"
        "ev.add(*phase3.check_writes(ctx, api), *phase3.check_app_mounts(ctx, api))\n"
        "ev"
    ),
    *bench_cells(3, '("local", "nfs")', "the read-write NFS claim (the transcode export)"),
    new_code_cell("evidence.finish(ev)"),
]

PHASE4 = [
    new_markdown_cell(
        "# Phase 4: the test workload\n"
        "\n"
        "The plan's *Phase 4: Sonarr Deployment*: the `media` namespace and Sonarr from the "
        "rendered `apps/`, its config on a SeaweedFS volume and its media on the Unraid NFS "
        "export, and the plan's validation: Sonarr Running on w1 (it prefers `role=primary`), "
        "its config stored in the SeaweedFS volume, the media reached over NFS, Sonarr "
        "working.\n"
        "\n"
        "Which apps these are (every app of role `app` that keeps state on SeaweedFS), the "
        "node each prefers and its volumes are the inventory's. Sonarr is checked through "
        "its own API with pyarr, reached through the API server's service proxy with the "
        "API key from its `config.xml` on the volume (never shown): the plan's *add test "
        "series* is done through the API and the series then read back from Sonarr's own "
        "database fetched through SeaweedFS's filer, and removed again. Phases 2 and 3 come "
        "first: the storage class and the NFS claims are theirs."
    ),
    new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.changes import changes_table\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client\n"
        "from halab.phases import phase4\n"
        "\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir)\n"
        'ev = evidence_for(ctx, "phase4")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are "
        "skipped\n"
        "ctx.summary()"
    ),
    new_markdown_cell(
        "## The test workload\n"
        "\n"
        "Each app, the node it prefers, its SeaweedFS volume and its NFS mounts (read-only "
        "or not, as the inventory mounts them)."
    ),
    new_code_cell("phase4.scope(ctx)"),
    new_markdown_cell(
        "## Build\n"
        "\n"
        "Phase 4's part of `apps/`: the namespace, the config claim, the Deployment and its "
        "Service (idempotent: what is already there is left as it is), then the pods "
        "awaited."
    ),
    new_code_cell(
        "changes = phase4.deliver(ctx, api)\n"
        "changes.append(phase4.wait_running(ctx, api))\n"
        "changes_table(changes)"
    ),
    new_markdown_cell(
        "## Validation\n"
        "\n"
        "One check per line of the plan's validation. A media mount Sonarr may not write "
        "cannot be its root folder (where it imports what it grabs): with the plan's "
        "read-only media export that is a warning naming finding `nfs-write-to-ro-export`."
    ),
    new_code_cell("found = phase4.checks(ctx, api)\nev.add(*found)\nev"),
    new_code_cell("evidence.finish(ev)"),
]

PHASE5 = [
    new_markdown_cell(
        "# Phase 5: HA validation (failover and failback)\n"
        "\n"
        "The plan's *Phase 5: HA Validation (Failover/Failback Testing)*, each test run as an "
        "experiment: a steady state seen first, one fault, probes sampled twice a second "
        "while it lasts (the API through the VIP, every node, the followed apps' pods, "
        "Sonarr's API through its Service, SeaweedFS reads and writes of probe files), the "
        "fault always undone, the steady state seen again, and what must survive compared.\n"
        "\n"
        "- **Test 1**: the node the test workload prefers (the plan's w1) drained; the "
        "workload moves with its config intact and SeaweedFS stays readable; the node "
        "uncordoned and the workload's pod deleted so it returns, config intact.\n"
        "- **Test 2**: that node's SeaweedFS volume server stopped; the data read from the "
        "other copies; the server started again and its copies seen back.\n"
        "- **Test 3**: that node cut off the NFS server (its `/etc/exports` rewritten over "
        "SSH without the node, `exportfs -ra`): the workload shows its media unavailable "
        "while another node still reads it; the file put back, the media available again.\n"
        "\n"
        "Nothing is disrupted unless `allow_disruption=True`. Before each fault the kit "
        "writes a journal beside the target file saying how to undo it; the undo runs in a "
        "`finally`, on Ctrl-C and on a kernel interrupt too, and a run killed outright is "
        "undone by `halab restore` (no experiment starts while a journal is there)."
    ),
    new_code_cell(
        PARAMS + "\nallow_disruption = False\n"
        'experiments_file = ""  # your own experiments (YAML `experiments:` list), run after',
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client\n"
        "from halab.phases import phase5\n"
        "\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir, "
        "allow_disruption=allow_disruption)\n"
        'ev = evidence_for(ctx, "phase5")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are "
        "skipped\n"
        "chosen = phase5.experiments(ctx, experiments_file)\n"
        "ctx.summary()"
    ),
    new_markdown_cell(
        "## The experiments\n"
        "\n"
        "Built from the inventory: the node the test workload runs on, the app, the volume "
        "server; then yours, from `experiments_file` (faults: `drain`, `stop-volume-server`, "
        "`cut-nfs`, `power-off`). Each fault and how it is undone."
    ),
    new_code_cell("phase5.scope(ctx, chosen)"),
    new_markdown_cell(
        "## What the planner expects\n"
        "\n"
        "From where the apps run now and the inventory's timings: which nodes go, where each "
        "followed app runs next and after how long (a drain evicts at once; a lost node "
        "waits for the grace period, the toleration and, for a RWO volume, the force "
        "detach), and what SeaweedFS can still read. An experiment is undone if its outcome "
        "is not seen within its abort time."
    ),
    new_code_cell("phase5.expectations(ctx, api, chosen)"),
    new_markdown_cell(
        "## Run them\n"
        "\n"
        "Each experiment prints what it does as it does it. Per experiment: the swimlane "
        "(green while a probe was fine, red while not, grey where it could not be asked), "
        "the timeline of events, and the planner's prediction beside what was observed. "
        "Every sample and event is saved beside the evidence as CSV."
    ),
    new_code_cell(
        "outcomes = []\n"
        "for experiment in chosen:\n"
        "    outcome = phase5.rehearse(ctx, api, experiment)\n"
        "    outcomes.append(outcome)\n"
        "    if outcome.samples:\n"
        '        display(ev.figure(outcome.figure(), f"{experiment.id}-swimlane"))\n'
        "        display(outcome.timeline)\n"
        "        display(outcome.comparison)\n"
        "        phase5.keep(ctx, outcome)"
    ),
    new_markdown_cell("## Checks"),
    new_code_cell("ev.add(*phase5.checks(ctx, outcomes))\nev"),
    new_code_cell("evidence.finish(ev)"),
]

PHASE6 = [
    new_markdown_cell(
        "# Phase 6: control-plane HA\n\n"
        "The plan's *Phase 6: Control Plane HA*: the new control-plane nodes joined through "
        "the kube-vip VIP (the plan's cp2 on Unraid and cp3 on the Pi, beside cp1), an etcd "
        "member per server with one leader, the API reachable through the VIP.\n\n"
        "The control plane expected here is every server the inventory's rollout has brought "
        "in by phase 6. With `allow_disruption=True` the notebook also pulls the plug on the "
        "host whose node holds the VIP (through the target's power commands), watches the API "
        "through the VIP, and always powers the host back on."
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
    new_markdown_cell(
        "## The control plane after phase 6\n\nThe servers the rollout has brought in by "
        "now, and the quorum they give: how many etcd members, how many must answer."
    ),
    new_code_cell("phase6.scope(ctx)"),
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
        "the VIP, the worst case: the VIP has to move and etcd may lose its leader; where the "
        "planner says the API would not survive that host, the plug is not pulled. Once it "
        "is back, its etcd member must hold the same data as the others."
    ),
    new_code_cell("rehearsal = phase6.rehearse_failure(ctx, api)\nev.add(*rehearsal.checks)\nev"),
    new_code_cell(
        "if not rehearsal.timeline.empty:\n"
        '    display(ev.figure(phase6.availability_figure(rehearsal), "availability"))'
    ),
    new_code_cell("evidence.finish(ev)"),
]


PHASE7 = [
    new_markdown_cell(
        "# Phase 7: GPU workers\n"
        "\n"
        "The plan's *Phase 7: GPU Worker Nodes*: the GPU nodes join with their labels and"
        " taint (the plan's `gpu=true`, `role=gpu-worker`, `gpu=true:NoSchedule` on "
        "k3s-w3), the Intel GPU device plugin offers their GPU, a test pod asks for it "
        "and lists `/dev/dri`, SeaweedFS gains the new nodes' volume servers, the Unraid "
        "Docker worker's files are ready, and the gateway learns the new node (the plan's"
        ' "UDM BGP Update: add route for w3").\n'
        "\n"
        "The GPU nodes, the resource names and the nodes expected are the inventory's. "
        "The test pod asks for the resource the inventory's GPU workloads ask for: with "
        "the plan's `intel.com/gpu` it stays Pending, and the check says why and what to "
        "write instead."
    ),
    new_code_cell(PARAMS + "\nallow_disruption = False", metadata={"tags": ["parameters"]}),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.changes import changes_table\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client, node_table\n"
        "from halab.phases import loadbalancer, phase7\n"
        "\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir, "
        "allow_disruption=allow_disruption)\n"
        'ev = evidence_for(ctx, "phase7")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are "
        "skipped\n"
        "ctx.summary()"
    ),
    new_markdown_cell(
        "## The GPU nodes after phase 7\n"
        "\n"
        "Each node the inventory gives a GPU, with the resource the Intel plugin "
        "advertises for its driver (`gpu.intel.com/i915` or `gpu.intel.com/xe`) and how "
        "many containers may share it (`-shared-dev-num`)."
    ),
    new_code_cell("phase7.scope(ctx)"),
    new_markdown_cell(
        "## Build: the GPU plugin and MetalLB\n"
        "\n"
        "Phase 7's part of `infrastructure/`: the Intel GPU plugin's DaemonSet and "
        "MetalLB's HelmRelease, then MetalLB's pool, peer and advertisement once its CRDs"
        " exist (Flux's `infrastructure-configs` waits for `infrastructure-controllers` "
        "the same way). Applying is idempotent: what is already there is left as it is."
    ),
    new_code_cell(
        "changes = phase7.deliver(ctx, api)\n"
        "changes.append(phase7.wait_running(ctx, api))\n"
        "changes_table(changes)"
    ),
    new_code_cell('node_table(api) if api else "no target: nothing to show"'),
    new_markdown_cell(
        "## Validation\n"
        "\n"
        "One check per line of the plan's validation, plus the build's own: the Docker "
        "worker's compose file (validated by `docker-compose config`) and Unraid "
        "template, MetalLB's configuration against the inventory, a LoadBalancer Service "
        "reached from this machine, and the gateway's BGP session with each node this "
        "phase brings."
    ),
    new_code_cell("found = phase7.checks(ctx, api)\nev.add(*found)\nev"),
    new_markdown_cell(
        "## The gateway's BGP sessions\n"
        "\n"
        "Read from FRR on the gateway over SSH (`vtysh -c 'show bgp summary json'`): one "
        "session per node whose MetalLB speaker runs, and the LoadBalancer addresses it "
        "announces. A node missing here is missing from the gateway's configuration: "
        "upload the rendered `external/udm/frr-bgp.conf`."
    ),
    new_code_cell(
        "try:\n"
        "    sessions = loadbalancer.sessions_table(ctx)\n"
        "except Exception as exc:  # no SSH to the gateway: say so, the checks above "
        "already did\n"
        '    sessions = f"the gateway\'s sessions could not be read: {exc}"\n'
        "sessions"
    ),
    new_code_cell("evidence.finish(ev)"),
]


PHASE8 = [
    new_markdown_cell(
        "# Phase 8: ClusterPlex\n\nThe plan's *Phase 8: ClusterPlex Deployment*: the orchestrator, Plex Media Server and the Kubernetes GPU worker from the rendered `apps/` tree, the Unraid Docker worker started with `docker compose up -d` over SSH from the rendered `external/.../docker-compose.yml`, and the plan's validation: the orchestrator and PMS Running behind their LoadBalancer addresses, the GPU worker Running with its resource, the Docker worker running, both workers registered, and transcode jobs distributed across workers.\n\nWhich apps these are, where each runs and how many workers to expect are the inventory's (its `role:` fields). Two kinds of job: ClusterPlex's synthetic ones (the worker's `testpayload` hook: five seconds, then success) posted the way PMS's job poster posts a transcode, and real transcodes started through Plex, as a player starts them, whose speed each worker's ffmpeg reports."
    ),
    new_code_cell(
        '# Parameters (papermill replaces these)\ninventory = "params/cluster.yaml"\ntarget = "outputs/twin/target.yaml"  # `halab twin up` writes it; yours: params/target-home.yaml\nrun_dir = "outputs/runs/interactive"\nallow_disruption = False\njobs = 4  # synthetic jobs posted at once for the distribution check',
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        'from halab import evidence\nfrom halab.changes import changes_table\nfrom halab.context import open_context, evidence_for\nfrom halab.kube import api_client\nfrom halab.phases import phase8\n\nctx = open_context(inventory, target=target or None, run_dir=run_dir, allow_disruption=allow_disruption)\nev = evidence_for(ctx, "phase8")\napi = api_client(ctx.target) if ctx.target else None  # None: live checks are skipped\nctx.summary()'
    ),
    new_markdown_cell(
        "## ClusterPlex's parts\n\nPMS, the orchestrator and every worker, where each runs, its image and the GPU resource it asks for. The orchestrator's `WORKER_SELECTION_STRATEGY` decides where jobs go (ClusterPlex's default is `LOAD_RANK`, which ranks workers by CPU alone)."
    ),
    new_code_cell("phase8.scope(ctx)"),
    new_markdown_cell(
        "## Build\n\nPhase 8's part of `apps/` (idempotent: what is already there is left as it is), then each Docker worker's host gets its rendered compose file and runs `docker compose up -d`, then the orchestrator's LoadBalancer address is awaited. Last, as a user does in Plex's settings: a library for each top folder of PMS's media mount (a folder named for TV a TV library, any other a movie library) and Plex's transcoder directory on the volume the workers share (the rendered init container sets it too, but only from PMS's second start: Plex writes its Preferences.xml on the first)."
    ),
    new_code_cell(
        "changes = phase8.deliver(ctx, api)\nchanges += phase8.compose_up(ctx)\nchanges.append(phase8.wait_running(ctx, api))\nchanges += phase8.prepare_plex(ctx, api)\nchanges_table(changes)"
    ),
    new_markdown_cell(
        "## Validation\n\nOne check per line of the plan's validation, plus the two settings ClusterPlex depends on and nothing enforces: PMS and the workers on the same Plex image, and one transcode directory shared at one path. A worker asking for a GPU resource no plugin offers stays Pending, and its check quotes the scheduler. While the transcodes through Plex run, each GPU worker's machine is watched with `intel_gpu_top -J` over SSH: a hardware transcode shows on the Video engine, one that fell back to software on none."
    ),
    new_code_cell("found = phase8.checks(ctx, api, jobs=jobs)\nev.add(*found)\nev"),
    new_markdown_cell(
        "## Where the jobs went\n\nThe distribution check's jobs per worker, read from the orchestrator's own `Forwarding work request to <id>|<host>` lines."
    ),
    new_code_cell(
        'spread = next((c.data for c in found if c.id == "jobs-distributed" and c.data is not None), None)\nif spread is not None and len(spread):\n    ax = spread.plot.bar(x="worker", y="jobs", legend=False, title=f"{jobs} jobs at once")\n    ax.set_ylabel("jobs")\nspread if spread is not None else "no jobs were posted"\n'
    ),
    new_markdown_cell(
        "## The transcodes through Plex\n\nEach session as the player saw it: Plex's own `speed` for it (`/transcode/sessions`), how long it took to play to the end, and how many segments it fetched."
    ),
    new_code_cell(
        'sessions = next((c.data for c in found if c.id == "plex-transcodes" and c.data is not None), None)\nsessions if sessions is not None else "no transcode was started through Plex"'
    ),
    new_markdown_cell(
        "## Transcode report\n\nEach worker's finished transcodes, from the progress its ffmpeg wrote into the worker's log: the median and slowest speed (times realtime) and the median fps. Below 1.0x a player stalls; the line marks it."
    ),
    new_code_cell(
        'from matplotlib.figure import Figure\n\nreport = phase8.transcode_report(ctx, api)\nev.add(phase8.check_report(report))\nshown = report.dropna(subset=["median speed (x)"])\nif len(shown):\n    fig = Figure(figsize=(6, 3))\n    ax = fig.subplots()\n    ax.bar(shown["worker"], shown["median speed (x)"], label="median")\n    ax.scatter(shown["worker"], shown["slowest (x)"], color="black", zorder=3, label="slowest")\n    ax.axhline(1.0, color="red", linestyle="--", label="1.0x: realtime")\n    ax.set_ylabel("x realtime")\n    ax.set_title("Transcode speed per worker")\n    ax.legend()\n    display(ev.figure(fig, "transcode-report"))\nreport'
    ),
    new_code_cell("evidence.finish(ev)"),
]


FAILOVER = [
    new_markdown_cell(
        "# Failure scenarios: a host powered off\n"
        "\n"
        "The plan's *Failure Scenarios & Recovery*, run: each physical host that carries a "
        "node, the NFS server or a container powered off hard (its plug pulled, through the "
        "target's power commands), everything the rollout deployed watched while it is "
        "down, the host powered on again. Beside each: what the planner's failure matrix "
        "and failover times say for this inventory (which nodes go, where each workload "
        "runs next and after how long, the GPU workers left, what SeaweedFS can read, "
        "whether the media stays), and where the two disagree, a finding.\n"
        "\n"
        "With Kubernetes' defaults (50 s grace, 300 s tolerations, the 6-minute RWO force "
        "detach) a scenario takes many minutes: the table below says how long each may take "
        "before anything starts. Run after phase 8 (everything deployed), with "
        "`allow_disruption=True`; `hosts` picks scenarios by host name (empty: all); two "
        "names joined by `+` (`\"proxmox+pi\"`) power both off at once, the plan's *any 2 "
        "hosts down* (\"no quorum, read-only mode\", it says; the API is read as well as "
        "reached while they are off, and the claim is checked). Each scenario is journalled "
        "and undone like phase 5's tests (`halab restore`)."
    ),
    new_code_cell(
        PARAMS + "\nallow_disruption = False\n"
        'hosts = []  # e.g. ["proxmox"], or ["proxmox+pi"] for two at once; empty: every host',
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from halab import evidence\n"
        "from halab.context import open_context, evidence_for\n"
        "from halab.kube import api_client\n"
        "from halab.phases import failover\n"
        "\n"
        "ctx = open_context(inventory, target=target or None, run_dir=run_dir, "
        "allow_disruption=allow_disruption)\n"
        'ev = evidence_for(ctx, "failover")\n'
        "api = api_client(ctx.target) if ctx.target else None  # None: live checks are "
        "skipped\n"
        "chosen = failover.experiments(ctx, hosts)\n"
        "ctx.summary()"
    ),
    new_markdown_cell(
        "## The scenarios\n\nEach host, what powering it off runs, and how long it is watched at most."
    ),
    new_code_cell("failover.scope(ctx, chosen)"),
    new_markdown_cell(
        "## What the planner expects\n"
        "\n"
        "Per scenario and workload, from where each runs now: the nodes lost, where it runs "
        "next (or that it stays, or cannot run), the predicted seconds with the inventory's "
        "timings, and SeaweedFS's reads with those nodes gone."
    ),
    new_code_cell("failover.expectations(ctx, api, chosen)"),
    new_markdown_cell(
        "## Run them\n"
        "\n"
        "Per scenario: the swimlane of every probe (the API through the VIP, each node, the "
        "followed pods and their volumes, Plex's identity, the orchestrator's workers and a "
        "ClusterPlex test job posted back to back, Sonarr's API, SeaweedFS reads and writes, "
        "the media over NFS), the timeline, the planner against what was observed; samples "
        "and events saved as CSV beside the evidence."
    ),
    new_code_cell(
        "outcomes = []\n"
        "for scenario in chosen:\n"
        "    outcome = failover.rehearse(ctx, api, scenario)\n"
        "    outcomes.append(outcome)\n"
        "    if outcome.samples:\n"
        '        display(ev.figure(outcome.figure(), f"{scenario.id}-swimlane"))\n'
        "        display(outcome.timeline)\n"
        "        display(outcome.comparison)\n"
        "        failover.keep(ctx, outcome)"
    ),
    new_markdown_cell("## Checks"),
    new_code_cell("ev.add(*failover.checks(outcomes))\nev"),
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
    write("phase2", PHASE2)
    write("phase3", PHASE3)
    write("phase4", PHASE4)
    write("phase5", PHASE5)
    write("phase6", PHASE6)
    write("phase7", PHASE7)
    write("phase8", PHASE8)
    write("failover", FAILOVER)
