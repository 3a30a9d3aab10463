"""index.html of a run: notebooks x checks coloured by status, links, and figures."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from halab.evidence import COLOURS

_RUN_COLOURS = {"passed": COLOURS["pass"], "failed": COLOURS["fail"], "not run": COLOURS["skip"]}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f0f0f0}code{font-size:90%}
.grid td{text-align:center;min-width:2.2em}.detail{white-space:pre-wrap;font-size:90%}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
"""


def write_index(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    (run_dir / "run.json").write_text(
        json.dumps({"schema": "halab.run/v1", "notebooks": rows}, indent=2, default=str) + "\n",
        encoding="utf-8",
    )
    path = run_dir / "index.html"
    path.write_text(render_index(run_dir.name, rows), encoding="utf-8")
    return path


def rows_from_dir(run_dir: Path) -> list[dict[str, Any]]:
    """Rebuild the index rows of a run from what it left on disk."""
    run_json = run_dir / "run.json"
    if run_json.exists():
        rows: list[dict[str, Any]] = json.loads(run_json.read_text(encoding="utf-8"))["notebooks"]
        return rows
    out = []
    for checks_path in sorted(run_dir.glob("*.checks.json")):
        doc = json.loads(checks_path.read_text(encoding="utf-8"))
        out.append(
            {
                "name": doc["notebook"],
                "status": "passed" if doc["passed"] else "failed",
                "seconds": doc["finished"] - doc["started"],
                "error": "",
                "checks": doc["checks"],
                "figures": doc.get("figures", []),
            }
        )
    return out


def render_index(title: str, rows: list[dict[str, Any]]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>halab run {title}"
        f"</title><style>{_STYLE}</style></head><body>",
        f"<h1>halab run {html.escape(title)}</h1>",
        f"<p>Written {datetime.now():%Y-%m-%d %H:%M}. Each notebook links to its executed "
        "copy (HTML and .ipynb) and its checks.json.</p>",
    ]
    parts.append(
        "<h2>Notebooks</h2><table><tr><th>notebook</th><th>result</th><th>time</th>"
        "<th>checks</th><th>evidence</th></tr>"
    )
    for row in rows:
        name = html.escape(row["name"])
        colour = _RUN_COLOURS.get(row["status"], "#fff")
        cells = "".join(
            f'<span title="{html.escape(c["id"])}: {html.escape(c["status"])}" '
            f'style="display:inline-block;width:14px;height:14px;margin:1px;'
            f'background:{COLOURS.get(c["status"], "#fff")};border:1px solid #999"></span>'
            for c in row["checks"]
        )
        links = (
            (
                f'<a href="{name}.html">html</a> · <a href="{name}.ipynb">ipynb</a> · '
                f'<a href="{name}.checks.json">checks</a>'
            )
            if row["status"] != "not run"
            else ""
        )
        error = f'<div class="detail">{html.escape(row["error"])}</div>' if row["error"] else ""
        parts.append(
            f'<tr><td><b>{name}</b></td><td style="background:{colour}">'
            f"{html.escape(row['status'])}{error}</td><td>{row['seconds']:.1f} s</td>"
            f"<td>{cells}</td><td>{links}</td></tr>"
        )
    parts.append("</table>")
    for row in rows:
        if not row["checks"] and not row["figures"]:
            continue
        parts.append(f'<h2 id="{html.escape(row["name"])}">{html.escape(row["name"])}</h2>')
        parts.append("<table><tr><th>id</th><th>check</th><th>status</th><th>detail</th></tr>")
        for c in row["checks"]:
            note = "" if c.get("required", True) else " <small>(advisory)</small>"
            parts.append(
                f'<tr style="background:{COLOURS.get(c["status"], "#fff")}"><td><code>'
                f"{html.escape(c['id'])}</code></td><td>{html.escape(c['title'])}{note}"
                f'</td><td><b>{html.escape(c["status"])}</b></td><td class="detail">'
                f"{html.escape(str(c.get('detail', '')))}</td></tr>"
            )
        parts.append("</table>")
        for fig in row["figures"]:
            parts.append(f'<img src="{html.escape(fig)}" alt="{html.escape(fig)}">')
    parts.append("</body></html>")
    return "\n".join(parts)
