"""Overrule a filter: move chosen rejects of a run into its accepted set, on the record, never racing its writer.

`readmit` only appends requests to RUN/readmissions.jsonl ({"readmission", "task"} per line, one fsynced write).
The run's one writer takes them in: a live `generate` at its next round or at its stop, a stopped run at once
(readmit itself then takes the run's lock and acts as its writer for the moment). A readmit holds the run's
request lock (store.requests_lock) from asking whether a writer holds the run until it is done, and a writer
from its last look at the requests until it lets the run go: so readmits come one at a time, and no request is
left to a writer that will not look again. A request a killed writer left, or a manifest a full disk kept from
listing what the journal took in, is settled by the next readmit or `generate`. Taking in means: a task with instances is appended to tasks.jsonl (provenance "readmitted"); an
instruction without instances joins the novelty pool and is queued for classification and instances; both
are journaled (journal.readmit_event) and listed in the manifest. rejects.jsonl is append-only, so the reject
line stays where it is; audit reads the manifest to count it as readmitted instead of rejected.

All ids are checked before anything is written: one bad id refuses the whole request.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from selfinstruct import journal
from selfinstruct.audit import directory_kind
from selfinstruct.errors import SelfInstructError, named
from selfinstruct.jsonl import dumps, first_error
from selfinstruct.schema import Readmission, Reject, RunManifest, Task, utc_now
from selfinstruct.store import (
    MANIFEST,
    READMISSIONS,
    REJECTS,
    RunStore,
    iter_journal,
    lock_holder,
    read_jsonl,
    read_manifest,
    refuse_unless_plain,
    requests_lock,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def default_by() -> str:
    """$USER without control characters (recorded in the manifest and shown by audit), or "unknown"."""
    return _CONTROL.sub("", os.environ.get("USER", "")) or "unknown"


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


def _pending(root: Path) -> dict[str, dict]:
    """Requests already in readmissions.jsonl, by reject id."""
    path = root / READMISSIONS
    out: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue  # a line another readmit is still writing
                out[obj["readmission"]["reject_id"]] = obj
    return out


def _append(root: Path, lines: list[dict]) -> None:
    """Whole lines under the file's own lock, fsynced: concurrent readmits never interleave their lines, and a
    failed write (a full disk) is cut off again, so no half line is left for the next append to follow."""
    path = root / READMISSIONS
    data = memoryview("".join(dumps(line) + "\n" for line in lines).encode("utf-8"))
    refuse_unless_plain(path, "a run's readmissions are its own file")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        try:
            while data:  # a write near the limit of the disk or file size is short, the next one fails
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, size)
            raise named(e, path) from None
    finally:
        os.close(fd)


def readmit(
    root: str | Path, ids: Iterable[str], *, by: str | None = None, now: str | None = None
) -> tuple[list[Readmission], int | None]:
    """Readmit the rejects `ids` of the run at `root`. Returns the new entries, in order, and the pid of the live
    writer that will take them in (None: taken in now, the run was not being written)."""
    root = Path(root)
    if directory_kind(root) == "filter":
        raise SelfInstructError(
            f"{root} is a `filter` output directory: readmit works on run directories (from `generate`); "
            "to keep a filtered record, copy it from rejects.jsonl into your data"
        )
    wanted = split_ids(ids)
    if not wanted:
        raise SelfInstructError("no reject ids given (pass --ids ID[,ID...])")
    for rid in wanted:
        if _CONTROL.search(rid):
            raise SelfInstructError(f"reject id {rid!r} holds a control character; ids never do")
    manifest = read_manifest(root)
    if manifest is None:
        raise SelfInstructError(
            f"{root / MANIFEST}: no manifest, so there is nowhere to record a readmission"
        )
    by = by or default_by()
    now = now or utc_now()
    lock = requests_lock(root)  # one readmit at a time, and none between a writer's last look and its exit
    try:
        live = lock_holder(root)
        if live is None and not _settled(root):  # only then: nothing is written for a request refused below
            live = _take_in_unless_written(root)
        entries, lines = _checked(root, wanted, by, now)
        _append(root, lines)
        if live is None:
            live = _take_in_unless_written(root)
    finally:
        os.close(lock)
    return entries, live


def _taken(root: Path) -> list[dict]:
    """Every readmission the journal says was taken in (its entries, in order): the record of them."""
    restored = journal.restore(iter_journal(root))
    return [*restored.readmissions, *(e for ev in restored.since for e in ev["entries"])]


def _settled(root: Path) -> bool:
    """Whether every request is taken in and the manifest lists what the journal says was."""
    taken = [e["reject_id"] for e in _taken(root)]
    manifest = read_manifest(root)
    return set(_pending(root)) <= set(taken) and (manifest is None or _listed(manifest) == taken)


def _listed(manifest: RunManifest) -> list[str]:
    return [r.reject_id for r in manifest.readmitted]


def _take_in_unless_written(root: Path) -> int | None:
    """Take in every request and list in the manifest what the journal says was taken in (requests a killed or
    stopping writer left, a manifest a full disk kept from being written): None; or, when a writer took the
    run in between, its pid (it takes them in itself)."""
    try:
        take_in_now(root)
    except SelfInstructError:
        live = lock_holder(root)
        if live is None:
            raise
        return live
    return None


def _checked(root: Path, wanted: list[str], by: str, now: str) -> tuple[list[Readmission], list[dict]]:
    """The new entries and their readmissions.jsonl lines; refuses the whole request on one bad id."""
    manifest = read_manifest(root)
    done = {r.reject_id: r for r in manifest.readmitted} if manifest else {}
    pending = _pending(root)
    rejects = {r.id: r for r in read_jsonl(root / REJECTS, Reject) if r.id in wanted}
    accepted_ids = {t.id for t in read_jsonl(root / "tasks.jsonl", Task)}
    lines: list[dict] = []
    entries: list[Readmission] = []
    for rid in wanted:
        if rid not in rejects:
            raise SelfInstructError(f"{root / REJECTS}: no reject with id {rid!r}")
        if rid in done:
            prev = done[rid]
            raise SelfInstructError(f"reject {rid} was already readmitted by {prev.by} at {prev.time}")
        if rid in pending:
            prev = pending[rid]["readmission"]
            raise SelfInstructError(f"reject {rid} was already readmitted by {prev['by']} at {prev['time']}")
        rej = rejects[rid]
        entry = Readmission(reject_id=rid, task_id="", stage=rej.stage, reason=rej.reason, by=by, time=now)
        task = as_task(rej, entry)
        if task.id in accepted_ids and "instance" in rej.evidence:
            # An instance dropped from a task that was accepted with its others: a task of its own.
            task = task.model_copy(update={"id": f"{task.id}+r{rej.evidence['instance']}"})
        if task.id in accepted_ids or any(e.task_id == task.id for e in entries):
            raise SelfInstructError(f"reject {rid}: task {task.id} is already in the accepted set")
        entry.task_id = task.id
        entries.append(entry)
        lines.append({"readmission": entry.model_dump(mode="json"), "task": task.model_dump(mode="json")})
    return entries, lines


def take_in_now(root: Path) -> None:
    """Act as the stopped run's writer for a moment: take in every readmission not yet applied, and list in the
    manifest every one the journal holds (the journal is the record; the manifest is written after it)."""
    with RunStore.open(root) as store:
        taken = _taken(root)
        applied = {e["reject_id"] for e in taken}
        new = [r for r in store.readmissions() if r["readmission"]["reject_id"] not in applied]
        manifest = store.manifest()
        if new:
            event = journal.readmit_event(manifest.rounds if manifest else 0, new)
            store.append(tasks=[Task.model_validate(t) for t in event["accepted"]])
            store.log(event, sync=True)
            taken += event["entries"]
        if manifest is not None and _listed(manifest) != [e["reject_id"] for e in taken]:
            entries = [Readmission.model_validate(e) for e in taken]
            # the files' counts, not the manifest's: opening the store may have cut a torn line off
            kept = {
                k: v for k, v in manifest.counts.items() if k != "accepted" and not k.startswith("rejected")
            }
            counts = {**kept, **store.counts, "readmitted": len(entries)}
            store.write_manifest(
                manifest.model_copy(update={"readmitted": entries, "counts": counts, "updated": utc_now()})
            )
