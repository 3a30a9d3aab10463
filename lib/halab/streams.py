"""Commands started on a machine: their output as it arrives, and how to stop them.

Shared by every way the kit runs things (this machine, SSH), so a caller never cares
which one it has.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Stream:
    """One running command: its stamped stdout lines and the tail of its stderr."""

    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    returncode: int | None = None
    _stop: Callable[[], None] = lambda: None
    _threads: list[threading.Thread] = field(default_factory=list)

    def stop(self) -> None:
        self._stop()

    def join(self, timeout: float = 5.0) -> None:
        for thread in self._threads:
            thread.join(timeout)


def pump(readline: Callable[[], bytes | str], sink: Callable[[str], None]) -> None:
    """Feed every line from `readline` to `sink` until end of file."""
    while True:
        raw = readline()
        if not raw:
            return
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        sink(text.rstrip("\r\n"))
