"""The `halab` command line. Exit codes: 0 fine, 1 a check or step failed, 2 bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from halab.errors import HalabError
from halab.paths import project_root, resolve


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from halab.errors import InventoryError
    from halab.inventory import load_inventory
    from halab.plan import plan
    from halab.plan.text import render_text

    try:
        inventory = load_inventory(resolve(args.inventory))
    except InventoryError as exc:
        if not args.json:
            raise
        print(
            json.dumps(
                {
                    "schema": "halab.plan/v1",
                    "errors": [
                        {
                            "path": p.path,
                            "message": p.message,
                            "hint": p.hint,
                            "file": p.file,
                            "line": p.line,
                        }
                        for p in exc.problems
                    ],
                },
                indent=2,
            )
        )
        return exc.exit_code
    report = plan(inventory)
    print(report.to_json() if args.json else render_text(report))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    import json

    from halab.inventory import load_inventory
    from halab.render import render
    from halab.render.files import check, digest, write
    from halab.render.validate import validate_tree

    inventory = load_inventory(resolve(args.inventory))
    files = render(inventory)
    validate_tree(files, inventory.cluster.kubernetes_version)
    out = Path(args.out)
    if args.json:
        print(
            json.dumps(
                [
                    {"path": p, "sha256": digest(t), "bytes": len(t.encode())}
                    for p, t in files.items()
                ],
                indent=1,
            )
        )
        return 0
    if args.check:
        drift = check(files, out)
        if drift.clean:
            print(f"{out}: in step with the inventory ({len(files)} files)")
            return 0
        for label, paths in (
            ("changed", drift.changed),
            ("missing", drift.missing),
            ("not rendered any more", drift.extra),
        ):
            for path in paths:
                print(f"{label}: {path}")
        print(drift.diff)
        return 1
    written, unchanged, removed = write(files, out)
    print(
        f"{out}: {written} written, {unchanged} unchanged, {len(removed)} removed "
        f"({len(files)} files, all valid)"
    )
    return 0


def _cmd_storage_bench(args: argparse.Namespace) -> int:
    from datetime import datetime

    from halab.context import open_context
    from halab.kube import api_client
    from halab.storagebench import runner
    from halab.storagebench.fio import FioSpec

    ctx = open_context(args.inventory, target=args.target, run_dir=args.out)
    assert ctx.target is not None
    subjects = tuple(s.strip() for s in args.subjects.split(",") if s.strip())
    result = runner.run(
        ctx,
        api_client(ctx.target),
        subjects,
        FioSpec(args.size, args.runtime),
        node=args.node,
        timeout=args.timeout,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print("\n".join(result.lines()))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    saved = result.save(ctx.run_dir / f"storage-{stamp}.json")
    figure = result.figure()
    figure.savefig(saved.with_suffix(".png"), dpi=110)
    print(f"result: {saved}\nfigure: {saved.with_suffix('.png')}")
    return 0


def _cmd_hosts(args: argparse.Namespace) -> int:
    from halab import host_facts
    from halab.inventory import load_inventory
    from halab.target import load_target

    inv = load_inventory(args.inventory)
    target = load_target(args.target)
    facts = host_facts.gather(inv, target, timeout=args.timeout)
    frame = host_facts.table(inv, target, facts)
    if args.json:
        print(frame.to_json(orient="records", indent=1))
    else:
        shown = frame.drop(columns=["mismatches"]).fillna("")
        print(shown.to_string(index=False))
        bad = frame[(frame["mismatches"].fillna("") != "") | ~frame["reachable"]]
        for _, row in bad.iterrows():
            print(f"!! {row['machine']}: {row['mismatches'] or 'unreachable'}")
        if bad.empty:
            print(f"every host and node ({len(frame)}) matches the inventory")
    return 1 if (frame["mismatches"].fillna("") != "").any() else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from halab.runner import parse_phases, run_notebooks
    from halab.runner.execute import new_run_dir

    root = project_root()
    notebook_dir = root / "notebooks"
    names = parse_phases(args.phases, notebook_dir)
    out_root = resolve(args.out)
    run_dir = new_run_dir(out_root)
    target = resolve(args.target) if args.target else None
    result = run_notebooks(
        names,
        notebook_dir=notebook_dir,
        inventory=resolve(args.inventory),
        target=target,
        run_dir=run_dir,
        keep_going=args.keep_going,
        cwd=root,
        cell_timeout=args.cell_timeout,
        allow_disruption=args.allow_disruption,
    )
    failed = [n.name for n in result.notebooks if n.status != "passed"]
    print(
        f"{'OK' if result.ok else 'FAILED'}: {len(result.notebooks) - len(failed)}/"
        f"{len(result.notebooks)} notebooks passed; evidence in {run_dir}/index.html"
    )
    return 0 if result.ok else 1


def _cmd_restore(args: argparse.Namespace) -> int:
    from halab.context import open_context
    from halab.experiments.journal import Journal
    from halab.experiments.runner import restore
    from halab.kube import api_client

    target = resolve(args.target)
    ctx = open_context(resolve(args.inventory), target, run_dir="outputs/runs/restore")
    assert ctx.target is not None
    journal = Journal.for_target(ctx.target)
    doc = journal.read()
    if doc is None:
        print(f"nothing to restore: no journal at {journal.path}")
        return 0
    if doc.get("inventory") and Path(doc["inventory"]) != ctx.inventory_path.resolve():
        # The journal names what it changed by the inventory it ran with.
        ctx = open_context(Path(doc["inventory"]), target, run_dir="outputs/runs/restore")
    assert ctx.target is not None
    done = restore(ctx, api_client(ctx.target))
    print(f"restored: {len(done)} action(s) carried out; {journal.path.name} removed")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from halab.errors import InputError, Problem
    from halab.runner.index import rows_from_dir, write_index

    run_dir = resolve(args.run_dir)
    rows = rows_from_dir(run_dir) if run_dir.is_dir() else []
    if not rows:
        raise InputError(
            str(run_dir),
            [
                Problem(
                    "",
                    "no run evidence here (run.json or *.checks.json)",
                    "give a directory under outputs/runs/",
                )
            ],
        )
    print(write_index(run_dir, rows))
    return 0


def _media_option(values: list[str]) -> dict[str, Path]:
    from halab.errors import InputError, Problem

    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not path:
            raise InputError(
                value,
                [
                    Problem(
                        "--media",
                        f"{value!r} is not CLIP=FILE",
                        "e.g. --media 1080p-hevc=/media/movie.mkv",
                    )
                ],
            )
        out[name] = resolve(path)
    return out


def _cmd_bench(args: argparse.Namespace) -> int:

    from halab.transcode.bench import BenchConfig, run_bench
    from halab.transcode.report import render_compare, write_report
    from halab.transcode.results import load_result

    if args.bench_command == "report":
        doc = load_result(resolve(args.result))
        out = resolve(args.out) if args.out else resolve(args.result).with_suffix(".html")
        print(write_report(doc, out))
        return 0
    if args.bench_command == "compare":
        docs = [(resolve(p).stem, load_result(resolve(p))) for p in args.results]
        out = resolve(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_compare(docs), encoding="utf-8")
        print(out)
        return 0

    if args.through == "plex":
        return _bench_through_plex(args)

    from halab.inventory import load_inventory
    from halab.target import load_target
    from halab.transcode.workers import runners_for

    size = None
    if args.clip_size:
        width, _, height = args.clip_size.partition("x")
        size = (int(width), int(height))
    config = BenchConfig(
        profiles=args.profiles.split(","),
        encoders=args.encoders.split(","),
        warmup_s=args.warmup,
        window_s=args.window,
        max_streams=args.max_streams,
        clip_seconds=args.clip_seconds,
        clip_size=size,
        media_dir=resolve("outputs/media"),
        media=_media_option(args.media),
    )
    target = load_target(resolve(args.target)) if args.target else None
    inventory = load_inventory(resolve(args.inventory)) if target else None
    runners = runners_for(args.workers.split(","), inventory, target, args.job_image)
    try:
        doc = run_bench(
            runners,
            config,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            together=args.together,
        )
    finally:
        for runner in runners:
            runner.close()
    out = _write_result(args.out, "", doc)
    report = write_report(doc, out.with_suffix(".html"))
    failed = [w["name"] for w in doc["workers"] if w["status"] != "ok"]
    print(f"result: {out}\nreport: {report}")
    return 1 if failed else 0


def _write_result(chosen: str | None, prefix: str, doc: dict[str, Any]) -> Path:
    """A bench result as JSON: where asked, else outputs/bench/<prefix><time>.json."""
    import json
    import time

    out = resolve(chosen or f"outputs/bench/{prefix}{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return out


def _bench_through_plex(args: argparse.Namespace) -> int:
    """`halab bench --through plex`: the cluster's capacity as Plex's users see it."""

    from halab.context import open_context
    from halab.kube import api_client
    from halab.phases.plex_transcodes import connect
    from halab.transcode.through_plex import capacity, pick

    if not args.target:
        print("halab bench --through plex needs --target (where PMS runs)", file=sys.stderr)
        return 2
    ctx = open_context(resolve(args.inventory), target=resolve(args.target))
    assert ctx.target is not None
    pms = [a for a in ctx.inventory.apps if a.role == "plex"]
    if not pms:
        print(f"{args.inventory}: no app with role: plex", file=sys.stderr)
        return 2
    plex = connect(ctx, api_client(ctx.target), pms[0])
    item = pick(plex, args.item)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    say(f"{pms[0].name}: transcoding {item.title!r} 1, 2, 4 ... at once")
    doc = capacity(plex, item, most=args.max_streams, progress=say)
    out = _write_result(args.out, "plex-", doc)
    print(f"realtime transcodes through {pms[0].name}: {doc['realtime_transcodes']}\nresult: {out}")
    return 0 if doc["realtime_transcodes"] else 1


def _twin_network(text: str) -> IPv4Network:
    from halab.twin.topology import parse_twin_network

    try:
        return parse_twin_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_twin(args: argparse.Namespace) -> int:
    import json

    from halab.twin import supervisor

    directory = resolve(args.dir)
    action = args.twin_command
    if action == "up":
        started = supervisor.up(
            resolve(args.inventory),
            directory,
            timeout=args.timeout,
            say=lambda line: print(f"twin: {line}", file=sys.stderr, flush=True),
            network=args.network,
            media=(args.media_seconds, args.media_height),
            fresh=args.fresh,
        )
        paths = supervisor.TwinPaths(directory)
        if not started:
            print(f"the twin already runs in {directory}")
        else:
            print(
                f"the twin is up: API at the VIP, every node Ready\n"
                f"kubeconfig: {paths.kubeconfig}\ntarget: {paths.target}"
            )
        return 0
    if action == "down":
        stopped = supervisor.down(directory)
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    if action == "fail":
        supervisor.fail(directory, args.host)
        print(f"failed {args.host}: every process of the host was killed at once")
        return 0
    if action == "recover":
        supervisor.recover(directory, args.host)
        print(f"recovering {args.host}: its processes start again from their data dirs")
        return 0
    doc = supervisor.status(directory)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0 if doc["running"] else 1
    if not doc["hosts"]:
        print(f"no twin in {directory} (start one with `halab twin up`)")
        return 1
    print(f"twin in {directory}: {'running' if doc['running'] else 'stopped'}")
    for host, info in doc["hosts"].items():
        print(
            f"  host {host:10} {info['state']:7} pid {info['pid'] or '-'} "
            f"({info.get('processes', 0)} processes in its group)"
        )
    etcd = doc.get("etcd", {})
    print(
        f"  etcd members {', '.join(etcd.get('members', []))}; "
        f"up {', '.join(etcd.get('up', [])) or 'none'}; leader {etcd.get('leader') or 'none'}"
    )
    if etcd.get("divergence"):
        print(f"  {etcd['divergence']}")
    print(f"  VIP {doc['vip']} held by {doc.get('vip_holder') or 'nobody'}")
    if doc.get("nfs"):
        nfs = doc["nfs"]
        state = "nfs-ganesha" if nfs["up"] else "down with its host"
        print(f"  NFS {nfs['address']} on {nfs['host']} ({state}): {', '.join(nfs['exports'])}")
    if doc.get("gateway"):
        gw = doc["gateway"]
        state = (
            f"FRR bgpd, {gw['established']}/{gw['peers']} BGP sessions Established"
            if gw["up"]
            else "down"
        )
        print(f"  gateway {gw['address']} (udm): {state}")
    if doc.get("services"):
        print(f"  services: {doc['services']}")
    for name, guest in (doc.get("guests") or {}).items():
        word = "CT" if guest["kind"] == "lxc-privileged" else "VM"
        print(
            f"  {word} {guest['id']} {name:10} on {guest['host']}: "
            f"{'running' if guest['running'] else 'stopped'}"
        )
    for name, container in (doc.get("docker") or {}).items():
        print(
            f"  docker {name} on {container['host']}: {container['status']}; "
            f"runs as {container['runs']}"
        )
    for name, ssh in (doc.get("ssh") or {}).items():
        print(
            f"  ssh  {name:10} {ssh['address']:18} {'answers' if ssh['up'] else 'down'}; "
            f"the inventory's word for: {', '.join(ssh['from_inventory'])}"
        )
    for node, ready in sorted((doc.get("nodes") or {}).items()):
        print(f"  node {node:10} {'Ready' if ready else 'NotReady'}")
    for pod in doc.get("pods") or []:
        print(f"  pod  {pod['pod']} on {pod['node']}: {pod['phase']}; runs {pod['runs']}")
    if doc.get("api_error"):
        print(f"  API through the VIP: {doc['api_error']}")
    return 0 if doc["running"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="halab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="analyse an inventory: quorum, placement, failures, findings")
    p.add_argument("inventory", nargs="?", default="params/cluster.yaml")
    p.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    p.set_defaults(func=_cmd_plan)

    rn = sub.add_parser("render", help="write the GitOps tree and external configs, validated")
    rn.add_argument("inventory", nargs="?", default="params/cluster.yaml")
    rn.add_argument("--out", required=True, help="directory to write (or to check)")
    rn.add_argument(
        "--check",
        action="store_true",
        help="compare with --out; exit 1 with a diff when it drifted",
    )
    rn.add_argument("--json", action="store_true", help="list files with their hashes")
    rn.set_defaults(func=_cmd_render)

    r = sub.add_parser("run", help="execute notebooks with papermill into outputs/runs/<id>/")
    r.add_argument("--inventory", default="params/cluster.yaml")
    r.add_argument("--target", default=None, help="target file (how to reach the cluster)")
    r.add_argument(
        "--phases",
        default=None,
        help="e.g. plan,0 or 0-9 (default: every notebook, in rollout order)",
    )
    r.add_argument("--keep-going", action="store_true", help="run the rest after a notebook fails")
    r.add_argument(
        "--allow-disruption",
        action="store_true",
        help="let notebooks pull a host's plug (through the target's power commands)",
    )
    r.add_argument("--out", default="outputs/runs")
    r.add_argument("--cell-timeout", type=int, default=1800, help="seconds per cell")
    r.set_defaults(func=_cmd_run)

    b = sub.add_parser(
        "bench",
        help="transcode benchmark: realtime streams per worker (subcommands: report, compare)",
    )
    b.add_argument(
        "--workers",
        default="local",
        help="comma-separated: local, job:NODE (a Kubernetes Job pinned to NODE), "
        "or inventory nodes/hosts reached over SSH",
    )
    b.add_argument(
        "--job-image",
        default="lscr.io/linuxserver/ffmpeg:latest",
        help="image with ffmpeg for job: workers (on the twin: debian:12, which runs with "
        "this machine's ffmpeg)",
    )
    b.add_argument("--inventory", default="params/cluster.yaml")
    b.add_argument("--target", default=None, help="target file (SSH settings, address map)")
    b.add_argument(
        "--profiles",
        default="1080p-h264-to-720p",
        help="comma-separated; known: 4k-hevc10-to-1080p, 1080p-hevc-to-720p, 1080p-h264-to-720p",
    )
    b.add_argument("--encoders", default="libx264,h264_vaapi,h264_qsv,h264_nvenc")
    b.add_argument("--window", type=float, default=10.0, help="measuring window, seconds")
    b.add_argument("--warmup", type=float, default=3.0, help="seconds ignored at the start")
    b.add_argument("--max-streams", type=int, default=16)
    b.add_argument("--clip-seconds", type=float, default=10.0)
    b.add_argument("--clip-size", default=None, help="WxH to override the clips' frame size")
    b.add_argument(
        "--media",
        action="append",
        default=[],
        metavar="CLIP=FILE",
        help="use your own file instead of a test clip, e.g. 1080p-hevc=movie.mkv",
    )
    b.add_argument(
        "--together", action="store_true", help="measure all workers at once (cluster-wide run)"
    )
    b.add_argument(
        "--through",
        choices=("ffmpeg", "plex"),
        default="ffmpeg",
        help="ffmpeg: each worker's own capacity (default); plex: 1, 2, 4 ... transcodes "
        "started through PMS at once, each session's speed as Plex reports it (--target)",
    )
    b.add_argument("--item", default=None, help="with --through plex: the library item's title")
    b.add_argument("--out", default=None, help="result JSON (default outputs/bench/<time>.json)")
    b.set_defaults(func=_cmd_bench, bench_command=None)
    bsub = b.add_subparsers(dest="bench_command")
    br = bsub.add_parser("report", help="one self-contained HTML file from a result")
    br.add_argument("result")
    br.add_argument("--out", default=None)
    bc = bsub.add_parser("compare", help="several results side by side, with community numbers")
    bc.add_argument("results", nargs="+")
    bc.add_argument("--out", default="outputs/bench/compare.html")

    sb = sub.add_parser(
        "storage-bench",
        help="fio as Jobs on a SeaweedFS claim, the NFS claim and local disk (the baseline)",
    )
    sb.add_argument("--target", required=True, help="target file (how to reach the cluster)")
    sb.add_argument("--inventory", default="params/cluster.yaml")
    sb.add_argument("--subjects", default="local,seaweedfs,nfs", help="which volumes to measure")
    sb.add_argument("--size", default="256M", help="fio's file size (fio's units: 64M, 1G)")
    sb.add_argument("--runtime", type=int, default=10, help="seconds of each random job")
    sb.add_argument("--node", default=None, help="run the Jobs there (default: the first worker)")
    sb.add_argument("--timeout", type=float, default=900.0, help="seconds for each fio Job")
    sb.add_argument("--out", default="outputs/bench", help="where the JSON and figure go")
    sb.set_defaults(func=_cmd_storage_bench)

    ho = sub.add_parser("hosts", help="every host and node over SSH: facts beside the inventory")
    hsub = ho.add_subparsers(dest="hosts_command", required=True)
    hf = hsub.add_parser(
        "facts", help="arch, OS, cores, memory, disks, /dev/dri, k3s of each, mismatches marked"
    )
    hf.add_argument("--target", default="outputs/twin/target.yaml", help="target file")
    hf.add_argument("--inventory", default="params/cluster.yaml")
    hf.add_argument("--timeout", type=float, default=20.0, help="seconds for each machine")
    hf.add_argument("--json", action="store_true", help="the table as JSON records")
    hf.set_defaults(func=_cmd_hosts)

    tw = sub.add_parser(
        "twin", help="the stand-in cluster on this machine: up, down, status, fail, recover"
    )
    tw.add_argument("--dir", default="outputs/twin", help="where the twin keeps its state")
    tw.set_defaults(func=_cmd_twin)
    tsub = tw.add_subparsers(dest="twin_command", required=True)
    tu = tsub.add_parser(
        "up", help="start it; returns when the API answers and every node is Ready"
    )
    tu.add_argument("inventory", nargs="?", default="params/cluster.yaml")
    tu.add_argument("--timeout", type=float, default=120.0)
    tu.add_argument(
        "--network",
        type=_twin_network,
        default="127.77.0.0/24",
        help="the loopback /24 it runs on (default 127.77.0.0/24; another for a second twin)",
    )
    tu.add_argument(
        "--media-seconds",
        type=float,
        default=2.0,
        help="length of each clip of the NFS media library it seeds (default 2)",
    )
    tu.add_argument(
        "--media-height", type=int, default=180, help="the clips' frame height (default 180)"
    )
    tu.add_argument(
        "--fresh",
        action="store_true",
        help="start from empty disks, not the last run's etcd, SeaweedFS and NFS data",
    )
    td = tsub.add_parser("down", help="stop everything it started")
    ts = tsub.add_parser("status", help="hosts, etcd members and leader, VIP holder, nodes")
    ts.add_argument("--json", action="store_true")
    tf = tsub.add_parser("fail", help="kill every process of a physical host at once")
    tf.add_argument("host")
    tr = tsub.add_parser("recover", help="start a failed host again")
    tr.add_argument("host")
    for action in (tu, td, ts, tf, tr):  # --dir after the action works too
        action.add_argument(
            "--dir", default=argparse.SUPPRESS, help="where the twin keeps its state"
        )

    rs = sub.add_parser("restore", help="undo what an interrupted experiment left (its journal)")
    rs.add_argument("--inventory", default="params/cluster.yaml")
    rs.add_argument("--target", default="outputs/twin/target.yaml", help="target file")
    rs.set_defaults(func=_cmd_restore)

    rep = sub.add_parser("report", help="rewrite index.html of a run directory")
    rep.add_argument("run_dir")
    rep.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except HalabError as exc:
        print(f"halab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("halab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
