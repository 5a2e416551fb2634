"""Overrule a filter: move chosen rejects of a run into its accepted set, on the record.

Each reject's `record` is appended to tasks.jsonl as a Task with provenance "readmitted" (same id, instances
kept if it had any), and a `Readmission` (which reject, which stage and reason, who, when) is added to the
manifest. rejects.jsonl is append-only, so the reject line stays where it is; audit reads the manifest to
count it as readmitted instead of rejected. The loop rebuilds its pool and indexes from tasks.jsonl on
resume, so a readmitted task joins the novelty index and the in-context pool with no extra step.

Order matters for a crash: the task line is written (and fsynced) before the manifest is replaced. A crash in
between leaves a readmitted task the manifest does not list yet; running readmit again for that id finds the
task already there and only records the manifest entry.

All ids are checked before anything is written: one bad id refuses the whole request.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from selfinstruct.audit import directory_kind
from selfinstruct.errors import SelfInstructError
from selfinstruct.jsonl import first_error
from selfinstruct.schema import Readmission, Reject, Task, utc_now
from selfinstruct.store import REJECTS, RunStore


def default_by() -> str:
    return os.environ.get("USER") or "unknown"


def split_ids(values: Iterable[str]) -> list[str]:
    """`--ids a,b --ids c` -> [a, b, c], order kept, duplicates and blanks dropped."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def as_task(reject: Reject, readmission: Readmission) -> Task:
    """The reject's record as an accepted task; the refusal names the field that does not fit a Task."""
    if reject.record is None:
        hint = " (it holds only raw model text)" if reject.raw else ""
        raise SelfInstructError(f"reject {reject.id} ({reject.reason}) has no record to readmit{hint}")
    record = dict(reject.record)
    # The raw completion belongs to the reject line (it stays there); accepted tasks never carry it.
    if isinstance(record.get("meta"), dict):
        record["meta"] = {k: v for k, v in record["meta"].items() if k != "raw"}
    try:
        task = Task.model_validate(record)
    except ValidationError as e:
        field, msg = first_error(e)
        raise SelfInstructError(f"reject {reject.id}: its record is not a task ({field}: {msg})") from None
    meta = {
        **task.meta,
        "readmitted": {
            "reject_id": reject.id,
            "stage": reject.stage,
            "reason": reject.reason,
            "by": readmission.by,
            "time": readmission.time,
        },
    }
    return task.model_copy(update={"provenance": "readmitted", "meta": meta})


def readmit(
    root: str | Path, ids: Iterable[str], *, by: str | None = None, now: str | None = None
) -> list[Readmission]:
    """Readmit the rejects `ids` of the run at `root`; returns the new manifest entries in order."""
    root = Path(root)
    if directory_kind(root) == "filter":
        raise SelfInstructError(
            f"{root} is a `filter` output directory: readmit works on run directories (from `generate`); "
            "to keep a filtered record, copy it from rejects.jsonl into your data"
        )
    wanted = split_ids(ids)
    if not wanted:
        raise SelfInstructError("no reject ids given (pass --ids ID[,ID...])")
    by = by or default_by()
    now = now or utc_now()

    # Opening the store repairs a torn tail, which any writer of the run must do first.
    with RunStore.open(root) as store:
        manifest = store.manifest()
        if manifest is None:
            raise SelfInstructError(f"{root}: no manifest.json, so there is nowhere to record a readmission")
        done = {r.reject_id: r for r in manifest.readmitted}
        rejects = {r.id: r for r in store.rejects() if r.id in wanted}

        plan: list[tuple[Readmission, Task | None]] = []
        for rid in wanted:
            if rid not in rejects:
                raise SelfInstructError(f"{root / REJECTS}: no reject with id {rid!r}")
            if rid in done:
                prev = done[rid]
                raise SelfInstructError(f"reject {rid} was already readmitted by {prev.by} at {prev.time}")
            rej = rejects[rid]
            entry = Readmission(
                reject_id=rid, task_id="", stage=rej.stage, reason=rej.reason, by=by, time=now
            )
            task = as_task(rej, entry)
            entry.task_id = task.id
            if task.id in store.task_ids:
                # The task line of an interrupted readmit of this reject: only the manifest entry is missing.
                there = next(t for t in store.tasks() if t.id == task.id)  # rare: read only then
                if (there.meta.get("readmitted") or {}).get("reject_id") == rid:
                    plan.append((entry, None))
                    continue
                raise SelfInstructError(f"reject {rid}: task {task.id} is already in the accepted set")
            if any(t is not None and t.id == task.id for _, t in plan):
                raise SelfInstructError(f"reject {rid}: task {task.id} is readmitted twice in this request")
            plan.append((entry, task))

        store.append(tasks=[t for _, t in plan if t is not None])
        entries = [e for e, _ in plan]
        counts = {
            **manifest.counts,
            "accepted": store.counts["accepted"],
            "readmitted": len(manifest.readmitted) + len(entries),
        }
        store.write_manifest(
            manifest.model_copy(
                update={
                    "readmitted": [*manifest.readmitted, *entries],
                    "counts": counts,
                    "updated": now,
                }
            )
        )
    return entries
