"""Checks of a benchmark run, for the notebook's evidence."""

from __future__ import annotations

from typing import Any

from halab.evidence import Check


def bench_checks(doc: dict[str, Any]) -> list[Check]:
    checks = []
    for w in doc["workers"]:
        name = w["name"]
        if w["status"] != "ok":
            checks.append(Check(f"worker-{name}", f"Worker {name} measured", "fail", w["reason"]))
            continue
        checks.append(
            Check(
                f"worker-{name}",
                f"Worker {name} measured",
                "pass",
                str(w["machine"].get("ffmpeg", "")),
            )
        )
        for r in w["results"]:
            cid = f"{name}-{r['profile']}-{r['encoder']}"
            title = f"{name}: {r['profile']} with {r['encoder']}"
            if r["status"] == "skipped":
                checks.append(Check(cid, title, "skip", r["reason"], required=False))
                continue
            n = r["max_realtime_streams"]
            more = " (the cap: it may hold more)" if r.get("capped") else ""
            checks.append(
                Check(
                    cid,
                    title,
                    "pass" if n else "warn",
                    f"{n} realtime stream(s){more}" if n else "not even one stream holds realtime",
                    data={"max": n},
                    required=False,
                )
            )
        if not any(r["status"] == "measured" for r in w["results"]):
            checks.append(
                Check(
                    f"{name}-any-encoder",
                    f"Worker {name} has a working encoder",
                    "fail",
                    "every encoder was skipped",
                )
            )
    return checks
