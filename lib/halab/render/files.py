"""Writing a rendered tree to a directory, and checking a directory for drift."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

MANAGED = ("clusters", "infrastructure", "storage", "apps", "external")


@dataclass
class Drift:
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    diff: str = ""

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.extra)


def _on_disk(root: Path) -> set[str]:
    found = set()
    for top in MANAGED:
        base = root / top
        if base.is_dir():
            found |= {p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()}
    return found


def check(files: dict[str, str], root: Path) -> Drift:
    drift = Drift()
    diffs = []
    for path, text in files.items():
        target = root / path
        if not target.exists():
            drift.missing.append(path)
            continue
        current = target.read_text(encoding="utf-8")
        if current != text:
            drift.changed.append(path)
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        current.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        f"{path} (on disk)",
                        f"{path} (rendered)",
                    )
                )
            )
    drift.extra = sorted(_on_disk(root) - set(files))
    drift.diff = "\n".join(diffs)
    return drift


def write(files: dict[str, str], root: Path) -> tuple[int, int, list[str]]:
    """(written, unchanged, removed). Files the inventory no longer renders are removed,
    or Flux would go on applying them."""
    written = unchanged = 0
    for path, text in files.items():
        target = root / path
        if target.exists() and target.read_text(encoding="utf-8") == text:
            unchanged += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if path.endswith(".sh"):
            target.chmod(0o755)
        written += 1
    removed = sorted(_on_disk(root) - set(files))
    for path in removed:
        (root / path).unlink()
    return written, unchanged, removed


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
