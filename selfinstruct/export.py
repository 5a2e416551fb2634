"""Accepted tasks -> training formats: alpaca (JSON array or JSONL), messages (chat JSONL that TRL and axolotl
read), self-instruct (task JSONL). Every output loads with `datasets.load_dataset("json", data_files=...)`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from selfinstruct.errors import InputError
from selfinstruct.jsonl import dumps
from selfinstruct.schema import Example, Reject, Task
from selfinstruct.seeds import load_tasks
from selfinstruct.store import MANIFEST, TASKS, atomic_file, check_output, empty_file, read_jsonl

if TYPE_CHECKING:  # the filters package imports datasketch: too slow for `--help`, which imports FORMATS
    from selfinstruct.filters.config import IFDConfig

Format = Literal["alpaca", "messages", "self-instruct"]
FORMATS: tuple[str, ...] = get_args(Format)


def read_tasks(source: str | Path) -> list[Task]:
    """Tasks from a run directory (its tasks.jsonl) or a file of records in any shape `filter` and the seeds
    take (tasks, Self-Instruct seeds, Alpaca examples: a filter's kept.jsonl too). Only a run's own file may
    end in a line still being written; in any other file the last line counts, newline or not."""
    path = Path(source)
    file = path / TASKS if path.is_dir() else path
    if not file.exists():
        raise InputError(file, "no such file (expected a run directory or its tasks.jsonl)")
    if (file.parent / MANIFEST).exists() or empty_file(file):  # a pipe's size is 0 whatever it holds
        return list(read_jsonl(file, Task))
    return load_tasks(file)


def user_text(example: Example) -> str:
    """The user turn: the instruction, then the input (if any) after a blank line."""
    return f"{example.instruction}\n\n{example.input}" if example.input.strip() else example.instruction


def rows(tasks: Iterable[Task], fmt: Format) -> list[dict]:
    if fmt == "self-instruct":
        return [
            {
                "id": t.id,
                "instruction": t.instruction,
                "instances": [{"input": i.input, "output": i.output} for i in t.instances],
                "is_classification": bool(t.is_classification),
            }
            for t in tasks
        ]
    examples = [e for t in tasks for e in t.examples()]
    if fmt == "alpaca":
        return [{"instruction": e.instruction, "input": e.input, "output": e.output} for e in examples]
    if fmt == "messages":
        return [
            {
                "messages": [
                    {"role": "user", "content": user_text(e)},
                    {"role": "assistant", "content": e.output},
                ]
            }
            for e in examples
        ]
    raise ValueError(f"`format` must be one of {', '.join(FORMATS)}, got {fmt!r}")


def export(
    source: str | Path,
    fmt: Format,
    out: str | Path,
    *,
    replace: bool = False,
    ifd: IFDConfig | None = None,
    dropped: list[Reject] | None = None,
    empty: list[str] | None = None,
) -> int:
    """Write `out` atomically; alpaca goes to a JSON array unless `out` ends in .jsonl. Returns rows written.
    Never over the source or a run's own files; over another existing file only with `replace`.

    With `ifd`, only tasks that pass its rules (top share, threshold, IFD < 1) are written; tasks without a
    stored meta["ifd"] are scored first (filters.ifd). Tasks left out are appended to `dropped` as rejects
    with their score and the cut-off, so the caller can show or keep them. The ids of tasks without instances,
    which make no alpaca or messages row, are appended to `empty`."""
    out = check_output(out, inputs=[source], replace=replace)
    tasks = read_tasks(source)
    if ifd is not None:
        tasks, rejected = _select_by_ifd(tasks, ifd)
        if dropped is not None:
            dropped.extend(rejected)
    data = rows(tasks, fmt)
    if empty is not None and fmt != "self-instruct":
        empty.extend(t.id for t in tasks if not t.instances)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as f:
        if fmt == "alpaca" and out.suffix != ".jsonl":
            json.dump(data, f, ensure_ascii=False, indent=1)
        else:
            f.writelines(dumps(r) + "\n" for r in data)
    return len(data)


def _select_by_ifd(tasks: list[Task], config: IFDConfig) -> tuple[list[Task], list[Reject]]:
    from selfinstruct.filters.ifd import IFDScorer, select

    todo = [t for t in tasks if t.instances and "ifd" not in t.meta]
    if todo:  # score once, in one batched pass, only what the run did not score already
        scored = {t.id: t for t in IFDScorer(config).score(todo)}
        tasks = [scored.get(t.id, t) for t in tasks]
    return select(tasks, config)
