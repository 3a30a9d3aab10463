"""ClusterPlex's four worker selection strategies, as the v1.4.15 orchestrator applies them.

Facts (reference/clusterplex-real.md, the real orchestrator run on this machine):
- the choice uses each worker's last *reported* stats; a worker that has not reported yet
  counts as cpu 0, tasks 0, ops 0, rank 0 (the best for LOAD_CPU/LOAD_TASKS, the worst for
  LOAD_RANK), so a burst inside one stats interval lands on one worker;
- ties go to the later-registered worker (a reduce that keeps the earlier only when it is
  strictly better);
- rank = int(ops * (1 - cpu / 100)); GPU use is not reported at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

STRATEGIES = ("RR", "LOAD_CPU", "LOAD_TASKS", "LOAD_RANK")
DEFAULT_STRATEGY = "LOAD_RANK"


@dataclass
class Stats:
    cpu: float = 0.0
    tasks: int = 0
    ops: int = 0

    @property
    def rank(self) -> int:
        # JavaScript's parseInt truncates towards zero.
        return math.trunc(self.ops * (1 - self.cpu / 100))


@dataclass
class Worker:
    worker_id: str
    host: str
    sid: str
    stats: Stats = field(default_factory=Stats)
    reported: bool = False


class InvalidStrategy(Exception):
    """The real orchestrator accepts any name at start and fails at the first dispatch."""


def _keep_lower(key: Callable[[Worker], float]) -> Callable[[Sequence[Worker]], Worker]:
    def pick(workers: Sequence[Worker]) -> Worker:
        best = workers[0]
        for candidate in workers[1:]:
            # The earlier one stays only when strictly lower: ties go to the later worker.
            if not key(best) < key(candidate):
                best = candidate
        return best

    return pick


def _highest_rank(workers: Sequence[Worker]) -> Worker:
    best = workers[0]
    for candidate in workers[1:]:
        if not best.stats.rank > candidate.stats.rank:
            best = candidate
    return best


class Selector:
    """Chooses a worker for each dispatched task; RR keeps its position between calls."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self._next = 0

    def choose(self, workers: Sequence[Worker]) -> Worker:
        if not workers:
            raise LookupError("no worker registered")
        if self.strategy == "RR":
            chosen = workers[self._next % len(workers)]
            self._next = (self._next + 1) % len(workers)
            return chosen
        if self.strategy == "LOAD_CPU":
            return _keep_lower(lambda w: w.stats.cpu)(workers)
        if self.strategy == "LOAD_TASKS":
            return _keep_lower(lambda w: w.stats.tasks)(workers)
        if self.strategy == "LOAD_RANK":
            return _highest_rank(workers)
        raise InvalidStrategy("this.workerSelectionStrategy is not a function")
