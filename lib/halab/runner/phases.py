"""Which notebooks exist, in rollout order, and how `--phases` names them."""

from __future__ import annotations

from pathlib import Path

from halab.errors import InputError, Problem

# Rollout order: the plan first, then phases 0-9, then the cross-cutting notebooks.
ORDER = ("plan", *(f"phase{i}" for i in range(10)), "transcode-bench", "failover")


def available(notebook_dir: Path) -> list[str]:
    return [name for name in ORDER if (notebook_dir / f"{name}.ipynb").exists()]


def _name(token: str) -> str:
    token = token.strip()
    return f"phase{token}" if token.isdigit() else token


def parse_phases(spec: str | None, notebook_dir: Path) -> list[str]:
    """'plan,0' or '0-9' or 'plan,phase0' -> notebook names in rollout order.

    A range keeps the notebooks that exist (phases not written yet are left out);
    a phase named on its own must exist.
    """
    have = available(notebook_dir)
    if not spec:
        return have
    wanted: set[str] = set()
    problems: list[Problem] = []
    for token in (t for t in spec.split(",") if t.strip()):
        if "-" in token and all(p.strip().isdigit() for p in token.split("-", 1)):
            low, high = (int(p) for p in token.split("-", 1))
            wanted.update(f"phase{i}" for i in range(low, high + 1) if f"phase{i}" in have)
            continue
        name = _name(token)
        if name not in have:
            problems.append(
                Problem("--phases", f"no notebook {name!r}", f"available: {', '.join(have)}")
            )
        wanted.add(name)
    if problems:
        raise InputError(spec, problems)
    return [name for name in ORDER if name in wanted]
