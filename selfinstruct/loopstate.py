"""The loop's state between rounds and the small pure pieces every schedule shares: per-request seeds, the
in-context sampler's seed, a round's report, the name of a stop the loop did not choose.

All of `LoopState` but `machine` is checkpointed in the journal (journal.py); nothing here does I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

from selfinstruct import signals
from selfinstruct.schema import Task


@dataclass
class RoundReport:
    """What one round did, for progress displays and the manifest."""

    round: int
    accepted: int
    rejected: int
    accepted_total: int
    target: int
    completion_tokens: int
    generate_s: float  # the backend call alone, so tokens / generate_s is the generation rate
    rejects_by_reason: dict[str, int]


QUEUES = ("reserve", "pending_classify", "pending_instances")


@dataclass
class LoopState:
    """The loop's state between rounds. All of it but `machine` is checkpointed in the journal; `machine` (the
    in-context pool) is rebuilt from the journal's admitted/accepted lists."""

    round: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    classify_unclear: int = (
        0  # answers that read as neither yes nor no (asked again, then the recipe's default)
    )
    accepted: int = 0  # tasks accepted, readmitted ones included: what the target counts
    idle_rounds: int = 0
    # Tasks through the instance stage, and those of them kept: the yield estimate.
    finished: int = 0
    kept: int = 0
    # Streaming schedule (streaming.py): requests planned so far, answers settled, requests in flight.
    sent: int = 0
    handled: int = 0
    inflight: list[dict] = field(default_factory=list)
    machine: list[Task] = field(default_factory=list)  # machine tasks for in-context sampling
    reserve: list[Task] = field(default_factory=list)  # admitted instructions not yet needed for the target
    pending_classify: list[Task] = field(default_factory=list)
    pending_instances: list[Task] = field(default_factory=list)

    def instance_yield(self) -> float:
        """Share of tasks that survive the instance stage, with a prior of one in two."""
        return (self.kept + 1) / (self.finished + 2)

    @property
    def in_flight(self) -> int:
        """Tasks on their way to acceptance (the reserve is not: it waits until it is needed)."""
        asked = sum(
            1 for e in self.inflight if isinstance(e["ref"], dict)
        )  # streaming: being classified etc.
        return len(self.pending_classify) + len(self.pending_instances) + asked

    def checkpoint(self) -> dict:
        out: dict = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in (*QUEUES, "machine")
        }
        for q in QUEUES:
            out[q] = [t.model_dump(mode="json") for t in getattr(self, q)]
        return out

    @classmethod
    def from_checkpoint(cls, data: dict, machine: list[Task]) -> LoopState:
        queues = {q: [Task.model_validate(t) for t in data.get(q, [])] for q in QUEUES}
        counters = {k: v for k, v in data.items() if k not in QUEUES}
        return cls(**counters, **queues, machine=machine)

    def copy(self) -> LoopState:
        """Queues and pool as new lists (their tasks are never mutated, only replaced)."""
        return LoopState(**{f.name: _copied(getattr(self, f.name)) for f in fields(self)})


def _copied(value):
    return list(value) if isinstance(value, list) else value


def request_seed(loop_seed: int, rnd: int, i: int) -> int:
    """A distinct, reproducible sampling seed per request."""
    return (loop_seed * 1_000_003 + rnd * 10_007 + i) % (2**31 - 1)


def round_rng(loop_seed: int, rnd: int) -> random.Random:
    """The round's sampler of in-context tasks: the same seed and round draw the same tasks on a resume."""
    return random.Random(loop_seed * 1_000_003 + rnd)


def stop_name(e: BaseException) -> str:
    """The manifest's stop reason for a stop the loop did not choose."""
    if isinstance(e, signals.Stopped):
        return f"stopped: {signals.NAMES.get(e.signum, e.signum)}"
    return f"error: {e}"
