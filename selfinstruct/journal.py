"""The run journal: what the loop was told and what it decided, so a resume ends where an uninterrupted run ends.

`RUN/journal.jsonl` holds three kinds of event, appended in the order they happened:

  completion  one backend answer, as soon as the backend hands it back: round, request id, kind, prompt hash,
              sampling, texts, finish reasons, token counts, error
  readmit     readmissions taken in (by the run's writer, or by `readmit` on a stopped run): the entries, the
              instructions that entered the novelty pool, the tasks accepted, the instructions queued for
              classification and instances
  round       the loop's checkpoint, written after a round's tasks and rejects are on disk: counters, queues,
              the instructions admitted to the novelty pool and the tasks accepted in that round, and the stop
              reason when the round ended the run
  stop        a stop decided, before anything it implies is written: its reason, round, and whether it cut a
              round short (whose answers journaled so far are then settled); a kill before the checkpoint that
              ends it leaves the stop for the resume to finish as it was decided (`Restored.stopping`)

The loop's whole state is a function of the recipe, the seeds and this file: `restore` folds the events into
the last checkpoint plus the readmissions since, and hands back the completions of a round that did not reach
its checkpoint, which the loop replays through its own code with no model call. Records derived twice carry
the same ids (they come from request id and position), and the store skips ids already on disk.
Pure functions over events; store.py does the reading and writing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from selfinstruct.llm.base import Completion, Request
from selfinstruct.schema import Readmission, Task, sha256, stable_json


def request_hash(request: Request) -> str:
    """What was asked, exactly: a journaled answer is reused only for the same prompt and sampling."""
    body = {"prompt": request.prompt, "messages": request.messages, "sampling": request.sampling.model_dump()}
    return sha256(stable_json(body))[:16]


def completion_event(rnd: int, kind: str, request: Request, digest: str, c: Completion) -> dict:
    return {
        "ev": "completion",
        "round": rnd,
        "request": request.id,
        "kind": kind,
        "prompt_hash": digest,
        "sampling": request.sampling.model_dump(mode="json"),
        "texts": c.texts,
        "finish_reasons": c.finish_reasons,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "error": c.error,
    }


def completion_of(event: dict) -> Completion:
    return Completion(
        request_id=event["request"],
        texts=event["texts"],
        finish_reasons=event["finish_reasons"],
        prompt_tokens=event["prompt_tokens"],
        completion_tokens=event["completion_tokens"],
        error=event["error"],
    )


def brief(task: Task) -> dict:
    """What the pool and the in-context sampler need of a task: its id and instruction."""
    return {"id": task.id, "instruction": task.instruction}


def completes(task: Task) -> Task:
    """A readmitted instruction without instances, queued for classification and instances under its own id."""
    return task.model_copy(update={"id": f"{task.id}+c", "meta": {**task.meta, "completes": task.id}})


def readmit_event(rnd: int, requests: Iterable[dict]) -> dict:
    """Readmissions (lines of readmissions.jsonl: {"readmission", "task"}) as one event: a task with instances
    is accepted as it is; one without is queued for classification and instances. Both join the pool."""
    entries, admitted, accepted, queued = [], [], [], []
    for req in requests:
        task = Task.model_validate(req["task"])
        entries.append(Readmission.model_validate(req["readmission"]).model_dump(mode="json"))
        admitted.append(brief(task))
        if task.instances:
            accepted.append(task.model_dump(mode="json"))
        else:
            queued.append(completes(task).model_dump(mode="json"))
    return {
        "ev": "readmit",
        "round": rnd,
        "entries": entries,
        "admitted": admitted,
        "accepted": accepted,
        "queued": queued,
    }


@dataclass
class Restored:
    """The journal folded: everything `generate` needs to rebuild the loop exactly. Lists run up to the last
    checkpoint; readmit events after it are in `since`, for the loop to apply as it applied them live."""

    checkpoint: dict | None = None  # the last round event's state (None: no round finished yet)
    round: int = 0
    stop: str | None = None  # the stop reason of the last checkpoint, if it ended a run
    admitted: list[dict] = field(default_factory=list)  # novelty pool, in order of admission
    accepted: list[dict] = field(default_factory=list)  # accepted tasks as brief(), in order
    readmissions: list[dict] = field(default_factory=list)  # every Readmission taken in
    since: list[dict] = field(default_factory=list)  # readmit events after the last checkpoint
    replay: dict[str, dict] = field(default_factory=dict)  # completions after the last checkpoint, by request
    stopping: dict | None = None  # a stop event after the last checkpoint: a stop a kill cut short
    stopped_at: int = 0  # how many of `since` came before that stop event

    @property
    def applied(self) -> set[str]:
        return {r["reject_id"] for r in self.readmissions}


def restore(events: Iterable[dict]) -> Restored:
    out = Restored()
    for ev in events:
        kind = ev.get("ev")
        if kind == "completion":
            if ev["round"] > out.round:
                out.replay[ev["request"]] = ev
        elif kind == "readmit":
            out.since.append(ev)
        elif kind == "stop":
            out.stopping, out.stopped_at = ev, len(out.since)
        elif kind == "round":
            for r in out.since:
                out.admitted += r["admitted"]
                out.accepted += [brief(Task.model_validate(t)) for t in r["accepted"]]
                out.readmissions += r["entries"]
            out.admitted += ev["admitted"]
            out.accepted += ev["accepted"]
            out.checkpoint, out.round, out.stop = ev["state"], ev["round"], ev.get("stop")
            out.since, out.replay, out.stopping, out.stopped_at = [], {}, None, 0
    return out


def briefs_to_tasks(briefs: Iterable[dict[str, Any]]) -> list[Task]:
    return [Task(id=b["id"], instruction=b["instruction"], provenance="generated") for b in briefs]
