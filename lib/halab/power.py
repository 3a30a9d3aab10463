"""Pulling a host's plug and putting it back, for the failure rehearsals.

A target names two shell commands with {host} in them; the kit runs them and never
needs to know what kind of cluster is behind them (the twin writes its own).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from halab.errors import StepError
from halab.target import Target


class PowerError(StepError):
    pass


@dataclass(frozen=True)
class PowerSwitch:
    off_command: str
    on_command: str

    @classmethod
    def for_target(cls, target: Target | None) -> PowerSwitch:
        if target is None or not target.power.off or not target.power.on:
            raise PowerError(
                "the target has no power commands: add power: {off: ..., on: ...} with {host} "
                "to the target file (the twin's target.yaml has them)"
            )
        return cls(target.power.off, target.power.on)

    def _run(self, template: str, host: str) -> str:
        command = shlex.split(template.replace("{host}", host))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PowerError(f"{command[0]}: {exc}") from None
        if done.returncode != 0:
            raise PowerError(
                f"`{' '.join(command)}` failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-300:]}"
            )
        return done.stdout.strip()

    def off(self, host: str) -> str:
        return self._run(self.off_command, host)

    def on(self, host: str) -> str:
        return self._run(self.on_command, host)
