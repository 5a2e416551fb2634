"""Reading JSON Lines and JSON arrays into records, with errors that name the file, line and field.

This is the read edge of the package; appending to run files is store.py's job.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from selfinstruct.errors import InputError

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


def first_error(err: ValidationError) -> tuple[str, str]:
    """The first pydantic error as (dotted field path, message)."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "record"
    msg = e["msg"].removeprefix("Value error, ")
    return loc, msg


def iter_json_objects(
    path: str | Path, *, bad_lines: list[InputError] | None = None, unfinished_tail: bool = False
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a JSONL file or a JSON array file.

    For a JSON array the line is where the element starts, so errors still point somewhere useful.
    With `bad_lines`, a malformed JSONL line is appended there and skipped instead of raised.
    With `unfinished_tail` (files this package appends to), a last line without its newline is a write still
    in flight or one a crash cut short: not a record yet, so it is left out with a warning, not raised.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise InputError(path, "file is empty", line=1)
    if text.lstrip().startswith("["):
        yield from _iter_array(path, text)
        return
    lines = text.split("\n")  # not splitlines(): U+2028, U+0085 and friends are legal inside JSON strings
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    elif unfinished_tail:
        log.warning(
            "%s:%d: last line has no newline yet (the run is still writing, or a crash cut it; resuming the "
            "run repairs it): left out",
            path,
            len(lines),
        )
        lines.pop()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", line=n)
            if _SURROGATE_ESCAPE.search(line) and _lone_surrogate(obj):
                raise InputError(path, _SURROGATE_MESSAGE, line=n)
        except json.JSONDecodeError as e:
            err = InputError(path, f"malformed JSON ({e.msg} at column {e.colno})", line=n)
            if bad_lines is None:
                raise err from None
            bad_lines.append(err)
            continue
        except InputError as err:
            if bad_lines is None:
                raise
            bad_lines.append(err)
            continue
        yield n, obj


# json.loads turns "\ud83d\ude00" into one character but leaves a lone "\ud83d" as a surrogate, which no UTF-8
# file, hash or shingle can hold. Only lines with such an escape are checked, so the common path stays cheap.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_MESSAGE = "holds half a surrogate pair (a \\udXXX escape): not valid Unicode"


def _lone_surrogate(obj: dict) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _iter_array(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    decoder = json.JSONDecoder()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON ({e.msg} at column {e.colno})", line=e.lineno) from None
    # Recover each element's starting line by re-scanning: cheap next to parsing, and errors need it.
    # Newlines are counted from the previous element only, so the scan stays linear in the file size.
    pos, prev, line, line_starts = text.index("[") + 1, 0, 1, []
    for _ in data:
        while text[pos] in " \t\r\n,":
            pos += 1
        line += text.count("\n", prev, pos)
        prev = pos
        line_starts.append(line)
        _, pos = decoder.raw_decode(text, pos)
    check = bool(_SURROGATE_ESCAPE.search(text))
    for n, obj in zip(line_starts, data, strict=True):
        if not isinstance(obj, dict):
            raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", line=n)
        if check and _lone_surrogate(obj):
            raise InputError(path, _SURROGATE_MESSAGE, line=n)
        yield n, obj


def parse_record(model: type[M], obj: dict, path: str | Path, line: int) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        field, msg = first_error(e)
        raise InputError(path, msg, line=line, field=field) from None


def read_records(path: str | Path, model: type[M]) -> Iterator[M]:
    for line, obj in iter_json_objects(path):
        yield parse_record(model, obj, path, line)


# Line breaks to str.splitlines() and many other readers, yet left raw by json.dumps(ensure_ascii=False).
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def dumps(record: BaseModel | dict) -> str:
    """One JSONL line (no newline). Non-ASCII kept as is so files stay readable, except the characters other
    readers take for line breaks: model text is arbitrary, and one record must stay one line for everyone."""
    obj = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    return json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS)
