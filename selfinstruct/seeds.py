"""Read every input dataset shape into `Task`s: one reader for `seeds validate`, `filter` and the bootstrap.

Three shapes are accepted, decided per record (a file is JSON Lines or one JSON array, see jsonl.py):

- a *task*: a record with `instances`. Self-Instruct's seed and evaluation files (`id, name, instruction,
  instances[{input, output}], is_classification` or `motivation_app`) and this project's own `Task` JSONL.
- an *example*: a record with `output` and no `instances`, Alpaca's `{instruction, input, output}` (and our
  own `Example` JSONL). It becomes one Task with one Instance.

Source fields the schema lacks (`name`, `motivation_app`, ...) are kept in `Task.meta` rather than dropped,
but a key that looks like a misspelling of a schema field (`is_clasification`) is an error: that is the
mistake `extra="forbid"` exists to catch, and silently parking it in meta would hide it.

Errors are `InputError`s, one line naming file, line and field. For a JSON array the line is where the
element starts; since a whole array often sits on one line (Alpaca's files do), the field is prefixed with
the element's index, `[57].instruction`, so the message still points at one record.

This module knows nothing of filtering or prompting; it only turns files into validated records.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from selfinstruct.errors import InputError
from selfinstruct.jsonl import iter_json_records
from selfinstruct.schema import Task, content_id

# What a directory argument reads: data files only, so a README or PROVENANCE.md beside them is ignored.
SUFFIXES = (".jsonl", ".json")

_TASK_FIELDS = set(Task.model_fields)
_EXAMPLE_FIELDS = {"id", "instruction", "input", "output", "is_classification", "meta"}
# difflib ratio at or above which an unknown key counts as a typo of a known one: "ouptut" scores 0.83 against
# "output" and "is_clasification" 0.97, while real source fields stay far below ("metadata" 0.67, "name" 0.5).
_TYPO_RATIO = 0.8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def input_files(path: str | Path) -> list[Path]:
    """The files a path stands for: itself, or each *.jsonl / *.json directly inside a directory, by name."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise InputError(path, "directory holds no .jsonl or .json files")
        return files
    if not path.exists():
        raise InputError(path, "no such file or directory")
    return [path]


def iter_tasks(
    path: str | Path, *, bad_lines: list[InputError] | None = None
) -> Iterator[tuple[int, dict, Task]]:
    """Yield (line, original object, validated Task) for every record, in file order.

    With `bad_lines` a list, a bad record is appended to it and skipped instead of raised; so is a JSONL line
    that fails to parse. Problems with a file as a whole (missing, empty, not UTF-8, a JSON array that does
    not parse) still raise: there is no next record to go on with. Duplicate ids are not checked here
    (see `load_tasks`), so a stream never holds every id in memory.
    """
    for file in input_files(path):
        yield from _iter_file(file, bad_lines)


def load_tasks(path: str | Path) -> list[Task]:
    """Every task under `path`, raising on the first problem, including an id used twice anywhere in it."""
    tasks: list[Task] = []
    seen: dict[str, tuple[str, int]] = {}
    for file in input_files(path):
        for line, obj, task in _iter_file(file, None):
            if task.id in seen:
                first_file, first_line = seen[task.id]
                where = f"line {first_line}" if first_file == str(file) else f"{first_file}:{first_line}"
                why = " (identical instruction, input and output)" if "id" not in obj else ""
                raise InputError(
                    file, f"duplicate id {task.id!r}, first used at {where}{why}", line=line, field="id"
                )
            seen[task.id] = (str(file), line)
            tasks.append(task)
    return tasks


def summarize(tasks: Iterable[Task]) -> dict[str, int]:
    """Counts `seeds validate` prints.

    `empty_input` counts tasks whose every instance has an empty or whitespace-only input (instructions
    that stand alone, "Suggest three names for a bakery"): the bootstrap shows such a task without an input.
    Self-Instruct's 175 seeds have 50 of them. `classification` counts tasks marked
    `is_classification: true`; unmarked (None) counts as not classification.
    """
    counts = {"tasks": 0, "classification": 0, "empty_input": 0}
    for task in tasks:
        counts["tasks"] += 1
        counts["classification"] += task.is_classification is True
        counts["empty_input"] += all(not inst.input.strip() for inst in task.instances)
    return counts


# ----------------------------------------------------------------------------------------------------------
# one file


def _iter_file(file: Path, bad_lines: list[InputError] | None) -> Iterator[tuple[int, dict, Task]]:
    # Array elements are named by index, as pydantic names list items. The reader says which records are
    # array elements from the bytes it read: a pipe can be read only once, so the file is never sniffed apart.
    for line, index, obj in iter_json_records(file, bad_lines=bad_lines):
        prefix = "" if index is None else f"[{index}]."
        try:
            yield line, obj, to_task(obj, file=file, line=line, prefix=prefix)
        except InputError as e:
            if bad_lines is None:
                raise
            e.record = obj
            bad_lines.append(e)


# ----------------------------------------------------------------------------------------------------------
# one record


def to_task(obj: dict, *, file: str | Path, line: int, prefix: str = "") -> Task:
    """Validate one record of any accepted shape into a Task (see the module docstring)."""

    def fail(field: str, message: str) -> InputError:
        return InputError(file, message, line=line, field=prefix + field)

    # The shape decides which keys are known; a typo is reported before the "missing" it would cause.
    is_task = "instances" in obj
    known = (
        _TASK_FIELDS if is_task else _EXAMPLE_FIELDS if "output" in obj else _TASK_FIELDS | _EXAMPLE_FIELDS
    )
    extras = {k: v for k, v in obj.items() if k not in known}
    for key in extras:
        close = difflib.get_close_matches(key, known, n=1, cutoff=_TYPO_RATIO)
        if close:
            raise fail(key, f"unknown field; did you mean {close[0]!r}?")

    if "instruction" not in obj:
        raise fail("instruction", "missing (every record needs a non-empty instruction)")
    if not isinstance(obj["instruction"], str):
        raise fail("instruction", f"must be a string, got {_type(obj['instruction'])}")
    if not obj["instruction"].strip():
        raise fail("instruction", "is empty")
    if not is_task and "output" not in obj:
        raise fail(
            "instances", "missing: a task needs `instances` (or `output`, for an Alpaca-style example)"
        )
    if isinstance(obj.get("id"), str) and _CONTROL.search(obj["id"]):  # ids are printed, paths and keys
        raise fail("id", f"holds a control character, got {_type(obj['id'])}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise fail("meta", f"must be an object, got {_type(meta)}")

    if is_task:
        for key in ("input", "output"):  # a task's pairs are its instances: one beside them would be dropped
            if key in obj:
                raise fail(
                    key, "beside `instances`: give the pair as one of the instances, or drop `instances`"
                )
        instances = obj["instances"]
        if not isinstance(instances, list):
            raise fail("instances", f"must be a list of {{input, output}} objects, got {_type(instances)}")
        if not instances:
            raise fail("instances", "no instances (a task needs at least one {input, output} pair)")
        fields = {k: v for k, v in obj.items() if k in _TASK_FIELDS}
        fields.setdefault("id", content_id("task", obj["instruction"], *_instance_texts(instances)))
        fields["meta"] = {**extras, **meta}
    else:
        example = {k: v for k, v in obj.items() if k in ("instruction", "input", "output")}
        fields = {
            # A content id: the same example gets the same id in every run and whatever file it is read from.
            "id": obj.get(
                "id", content_id("ex", *(str(example.get(k, "")) for k in ("instruction", "input", "output")))
            ),
            "instruction": obj["instruction"],
            "instances": [{k: v for k, v in example.items() if k != "instruction"}],
            "is_classification": obj.get("is_classification"),
            "meta": {**extras, **meta},
        }
    try:
        # strict: `"true"` for a bool or `3` for a string is a mistake in the file, not something to coerce.
        return Task.model_validate(fields, strict=True)
    except ValidationError as e:
        field, message = _first_error(e, example_shaped=not is_task)
        raise fail(field, message) from None


def _instance_texts(instances: list) -> list[str]:
    out = []
    for inst in instances:
        if isinstance(inst, dict):
            out += [str(inst.get("input", "")), str(inst.get("output", ""))]
    return out


def _first_error(err: ValidationError, *, example_shaped: bool) -> tuple[str, str]:
    e = err.errors()[0]
    loc = list(e["loc"])
    if example_shaped and loc[:2] == ["instances", 0]:
        loc = loc[2:]  # report `output`, the key the user wrote, not our internal `instances.0.output`
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "record"
    message = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        message = "missing"
    elif e["type"] == "extra_forbidden":
        message = "unknown field"
    elif e["type"] in _WANTED:
        message = f"must be {_WANTED[e['type']]}, got {_type(e['input'])}"
    elif e["type"] == "literal_error":
        message = f"{message}, got {_type(e['input'])}"
    return field, message


# pydantic's strict-mode type errors, said the way the JSON file's author thinks of them.
_WANTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an {input, output} object",
}


def _type(value: Any) -> str:
    """A value as JSON names it, with scalars shown: `string 'yes'`, `integer 3`, `list`."""
    if value is None:
        return "null"
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}
    name = names.get(type(value), type(value).__name__)
    return name if isinstance(value, (dict, list)) else f"{name} {json.dumps(value)[:40]}"
