"""One model answer -> candidates, tasks with instances, and rejects of what could not be read. Pure: no state,
no files, no filters (the loop filters and counts).

Ids come from where a record came from: a candidate is `t-<request>.<position>`, a reject of a whole answer
`rej-<request>-<reason>`, a reject of one unreadable block `rej-<request>#<k>-<reason>`; so repeats are
separate records and deriving an answer again (a resume) gives the same ids. Instances past `max_instances`
are rejects of one instance each (`instance_over_limit`), like the filters' instance drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from selfinstruct import parse
from selfinstruct.filters.base import reject
from selfinstruct.llm.base import Completion
from selfinstruct.schema import Reject, Task


@dataclass
class Answer:
    candidates: list[Task] = field(default_factory=list)  # new instructions (Alpaca: complete examples)
    completed: Task | None = None  # an instance answer: the task with its instances
    rejects: list[Reject] = field(default_factory=list)


def answer_reject(
    stage: str, reason: str, rnd: int, request: str, *, raw: str = "", record: dict | None = None, **evidence
) -> Reject:
    """A reject of one whole completion: its id is the request's, so two answers that read alike (two empty
    ones, two failures) are two records, and a replayed round derives the same id again."""
    return Reject(
        id=f"rej-{request}-{reason}",
        stage=stage,
        reason=reason,
        evidence={"request": request, **evidence},
        raw=raw,
        record=record,
        round=rnd,
    )


def _for_record(task: Task) -> Task:
    """Accepted tasks keep their evidence but not the raw completion (that matters for rejects only)."""
    meta = {k: v for k, v in task.meta.items() if k not in ("raw", "raw_instances")}
    return task.model_copy(update={"meta": meta})


def for_record(task: Task) -> Task:
    """Accepted tasks keep their evidence but not the raw completion (that matters for rejects only)."""
    meta = {k: v for k, v in task.meta.items() if k not in ("raw", "raw_instances")}
    return task.model_copy(update={"meta": meta})


def candidate(instruction: str, rnd: int, request: str, pos: int, raw: str, complete: bool) -> Task:
    """A new candidate; its id names where it came from (request and position), never its text."""
    meta = {"raw": raw, "finish_reason": "stop" if complete else "length"}
    return Task(
        id=f"t-{request}.{pos}", instruction=instruction, provenance="generated", round=rnd, meta=meta
    )


def read_answer(
    kind: str,
    ref: Task | None,
    comp: Completion,
    *,
    rnd: int,
    raw_style: bool,
    first: int | None,
    max_instances: int,
) -> Answer:
    """What one answer of `kind` ("instructions", "examples" or "instances" about `ref`) gives."""
    out = Answer()
    rid = comp.request_id
    record = ref.model_dump() if isinstance(ref, Task) else None
    if not comp.ok:
        out.rejects.append(answer_reject("llm", "llm_error", rnd, rid, record=record, error=comp.error))
        return out
    truncated = comp.finish_reason == "length"
    if kind == "instructions":
        reading = parse.read_list(comp.text, first_number=first if raw_style else None, truncated=truncated)
    elif kind == "examples":
        # Raw prompts end with "Instruction:", so the answer starts inside the first example.
        text = f"Instruction:{comp.text}" if raw_style else comp.text
        reading = parse.read_examples(text, truncated=truncated)
    else:
        reading = parse.read_instances(
            comp.text, output_first=bool(ref.is_classification), truncated=truncated
        )
    if reading.problem is not None:
        out.rejects.append(
            answer_reject("parse", "unparseable", rnd, rid, raw=comp.text, record=record,
                          expected=reading.expected, problem=reading.problem)
        )  # fmt: skip
    # Blocks that did not read unambiguously are on record each, beside what did read.
    for k, block in enumerate(reading.unparsed if reading.items else []):
        out.rejects.append(
            answer_reject("parse", "unparseable", rnd, f"{rid}#{k}", raw=block.text, record=record,
                          expected=reading.expected, problem=block.problem, layout=reading.layout, block=k)
        )  # fmt: skip
    if kind == "instructions":
        out.candidates = [
            candidate(it.text, rnd, rid, j, comp.text, it.complete) for j, it in enumerate(reading.items)
        ]
    elif kind == "examples":
        out.candidates = [
            candidate(instr, rnd, rid, j, comp.text, True).model_copy(update={"instances": [inst]})
            for j, (instr, inst) in enumerate(reading.items)
        ]
    elif reading.items:
        given = ref.model_copy(
            update={"instances": reading.items, "meta": {**ref.meta, "raw_instances": comp.text}}
        )
        out.completed = given.model_copy(update={"instances": reading.items[:max_instances]})
        # Examples past the number asked for: each on record, as every dropped instance is.
        out.rejects += [
            reject(
                given, "parse", "instance_over_limit", {"max_instances": max_instances}, round=rnd, instance=i
            )
            for i in range(max_instances, len(reading.items))
        ]
    return out
