"""The ROUGE-L stage: turns `RougeIndex` scores into rejects with evidence, and `rouge_max` for kept tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selfinstruct.filters.base import reject
from selfinstruct.filters.config import RougeConfig
from selfinstruct.filters.rouge import Hit, RougeIndex, RougeScan
from selfinstruct.schema import Reject, Task

STAGE = "rouge"


class RougeFilter:
    def __init__(self, config: RougeConfig | None = None):
        self.config = c = config or RougeConfig()
        self.index = RougeIndex(c.threshold, floor=c.report_floor)

    def add(self, task: Task) -> None:
        self.index.add(task.id, task.instruction)

    def scan(self, tasks: Sequence[Task]) -> RougeScan:
        """Scores of a batch against the pool and each other; admit kept ones with `scan.admit(i, id)`."""
        return self.index.scan([t.instruction for t in tasks])

    def verdict(
        self, scan: RougeScan, i: int, task: Task, *, round: int | None = None
    ) -> tuple[Reject | None, dict[str, Any]]:
        """(reject or None, the `rouge_max` record) for batch item i, given what has been admitted so far."""
        return self._verdict(scan.best(i), task, round)

    def decide(
        self, scan: RougeScan, tasks: Sequence[Task], *, round: int | None = None
    ) -> list[tuple[Reject | None, dict[str, Any]]]:
        """`verdict` for every item of a fresh scan, admitting the kept ones: for a caller that keeps exactly
        what this stage keeps (no later stage can reject), so the index decides the batch in one go."""
        scan.decide([t.id for t in tasks], self.config.threshold)
        return [self._verdict(scan.decided(i), t, round) for i, t in enumerate(tasks)]

    def _verdict(
        self, best: tuple[Hit, str, str] | None, task: Task, round: int | None
    ) -> tuple[Reject | None, dict[str, Any]]:
        if best is None:
            # No admitted neighbour reaches the index level: the true best is below it.
            return None, {"score": self.index.level, "neighbour_id": None, "below": True}
        hit, key, text = best
        if hit.score > self.config.threshold:
            evidence = {
                "score": hit.score,
                "neighbour_id": key,
                "neighbour": text,
                "threshold": self.config.threshold,
            }
            return reject(task, STAGE, "rouge_too_similar", evidence, round=round), {}
        return None, {"score": hit.score, "neighbour_id": key}
