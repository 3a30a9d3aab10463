"""The `halab` command line. Exit codes: 0 fine, 1 a check or step failed, 2 bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    )
    failed = [n.name for n in result.notebooks if n.status != "passed"]
    print(
        f"{'OK' if result.ok else 'FAILED'}: {len(result.notebooks) - len(failed)}/"
        f"{len(result.notebooks)} notebooks passed; evidence in {run_dir}/index.html"
    )
    return 0 if result.ok else 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="halab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="analyse an inventory: quorum, placement, failures, findings")
    p.add_argument("inventory", nargs="?", default="params/cluster.yaml")
    p.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    p.set_defaults(func=_cmd_plan)

    r = sub.add_parser("run", help="execute notebooks with papermill into outputs/runs/<id>/")
    r.add_argument("--inventory", default="params/cluster.yaml")
    r.add_argument("--target", default=None, help="target file (how to reach the cluster)")
    r.add_argument(
        "--phases",
        default=None,
        help="e.g. plan,0 or 0-9 (default: every notebook, in rollout order)",
    )
    r.add_argument("--keep-going", action="store_true", help="run the rest after a notebook fails")
    r.add_argument("--out", default="outputs/runs")
    r.add_argument("--cell-timeout", type=int, default=1800, help="seconds per cell")
    r.set_defaults(func=_cmd_run)

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
