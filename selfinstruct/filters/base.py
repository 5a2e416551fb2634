"""What every filter shares: building a `Reject` with its evidence from a task (no I/O, no state)."""

from __future__ import annotations

from typing import Any

from selfinstruct.schema import Instance, Reject, Task, content_id


def reject(
    task: Task,
    stage: str,
    reason: str,
    evidence: dict[str, Any],
    *,
    round: int | None = None,
    instance: int | None = None,
) -> Reject:
    """A reject of a whole task, or of one of its instances (`instance` is its index).

    An instance reject's record holds the task with only that instance, so the audit shows the bad pair.
    """
    record = task.model_dump(mode="json")
    if instance is not None:
        record["instances"] = [record["instances"][instance]]
        evidence = {"instance": instance, **evidence}
    return Reject(
        id=content_id("rej", task.id, reason, "" if instance is None else str(instance)),
        stage=stage,
        reason=reason,
        evidence=evidence,
        raw=str(task.meta.get("raw", "")),
        record=record,
        round=round if round is not None else task.round,
    )


def finish_reason(obj: Task | Instance) -> str | None:
    return obj.meta.get("finish_reason")
