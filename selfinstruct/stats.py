"""Counters and timings that add together, so per-stage and per-round stats merge into one (datatrove style)."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Stats:
    counts: Counter = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def reject(self, reason: str) -> None:
        """Count one reject under `rejected` and `rejected_<reason>` (the reason code carries its stage)."""
        self.counts["rejected"] += 1
        self.counts[f"rejected_{reason}"] += 1

    @contextmanager
    def timer(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def __add__(self, other: Stats) -> Stats:
        timings = dict(self.timings)
        for k, v in other.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        return Stats(self.counts + other.counts, timings)

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "timings": {k: round(v, 4) for k, v in self.timings.items()}}
