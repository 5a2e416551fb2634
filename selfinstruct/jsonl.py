"""Reading JSON Lines and JSON arrays into records, with errors that name the file, line and field.

This is the read edge of the package; appending to run files is store.py's job. Files come from users and from
model output, so reading is bounded and strict (issue 11):

- each file is opened once and read front to back, so a pipe (`<(cat seeds.jsonl)`) works: the format is told
  from the bytes already read, never by opening the path a second time;
- a JSONL line may hold at most MAX_LINE_BYTES, a JSON array file MAX_ARRAY_BYTES, and any document may nest at
  most MAX_DEPTH levels, so `/dev/zero` or 100,000 `[` end in one clear line, not a hang or a RecursionError;
- duplicate keys, `NaN`/`Infinity` (and floats that overflow to them) and integers longer than Python converts
  are refused, since each would be silently changed when the record is written back;
- text must be UTF-8 (a UTF-8 byte order mark is allowed); UTF-16/32 files are named as such.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from selfinstruct.errors import InputError

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 2**20  # a record is a few KB; 16 MiB leaves room for long-context data
MAX_ARRAY_BYTES = 2**30  # Alpaca's 52k examples are 22 MB as one array
MAX_DEPTH = 64  # our records nest 3-4 levels; anything near Python's recursion limit is not data
_MAX_DIGITS = sys.get_int_max_str_digits() or 4300  # what int() converts (0 means unlimited)


def first_error(err: ValidationError) -> tuple[str, str]:
    """The first pydantic error as (dotted field path, message)."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "record"
    msg = e["msg"].removeprefix("Value error, ")
    return loc, msg


# ----------------------------------------------------------------------------------------------------------
# bytes to text


_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def strip_bom(path: str | Path, head: bytes) -> bytes:
    """`head` (a file's first bytes) without a UTF-8 byte order mark; a UTF-16/32 file is refused by name."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            raise InputError(path, f"{name} text (byte order mark); save it as UTF-8", line=1)
    return head.removeprefix(codecs.BOM_UTF8)


def decode(path: str | Path, data: bytes, *, line: int | None = None, first_line: int = 1) -> str:
    """UTF-8 bytes to text; an error names the line: `line`, or counted in `data` from `first_line`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if line is None:
            line = data.count(b"\n", 0, e.start) + first_line
            col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        else:
            col = e.start + 1
        raise InputError(path, f"not UTF-8 text ({e.reason} at byte {col} of the line)", line=line) from None


def read_bounded(path: str | Path, limit: int, what: str) -> bytes:
    """A small file's bytes, read once (pipes work), refusing more than `limit` bytes (`/dev/zero`)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise InputError(path, f"no such {what}") from None
    except IsADirectoryError:
        raise InputError(path, f"is a directory, not a {what}") from None
    if len(data) > limit:
        raise InputError(path, f"larger than {_size(limit)} (the limit for a {what})")
    return strip_bom(path, data)


def _size(n: int) -> str:
    return f"{n // 2**30} GiB" if n >= 2**30 else f"{n // 2**20} MiB" if n >= 2**20 else f"{n // 2**10} KiB"


# ----------------------------------------------------------------------------------------------------------
# text to JSON values


class _Refused(Exception):
    """Raised from inside json's hooks; turned into an InputError where the line is known."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


def _object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # a later key would silently replace an earlier one
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused("duplicate key (JSON objects must not repeat a key)", field=key)
            seen.add(key)
    return obj


def _constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Refused(f"number {text if len(text) <= 20 else text[:20] + '…'} overflows to Infinity")
    return value


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_DIGITS:
        raise _Refused(f"a number with {digits} digits (at most {_MAX_DIGITS} are read)")
    return int(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_float=_float, parse_int=_int
)
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_WS = re.compile(r"[ \t\n\r]*")


def _too_deep(text: str) -> int | None:
    """Where brackets outside strings first nest deeper than MAX_DEPTH, or None (cheap with few brackets)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    for m in _STRING_OR_BRACKET.finditer(text):
        ch = m.group()
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return m.start()
        elif ch in "]}":
            depth -= 1
    return None


_DEEP = f"nested deeper than {MAX_DEPTH} levels (the nesting limit)"


def _decode_value(path: Path, text: str, pos: int, line: int, first_line: int = 1) -> tuple[Any, int]:
    """One JSON value starting at `pos`; a refusal is an InputError at `line`, a syntax error at its own line
    (counted from `first_line`, the line `text` starts on)."""
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        where = e.lineno + first_line - 1
        msg = e.msg.removesuffix(" at")  # "Unterminated string starting at": the column follows
        raise InputError(path, f"malformed JSON ({msg} at column {e.colno})", line=where) from None
    except _Refused as e:
        raise InputError(path, e.message, line=line, field=e.field) from None
    except RecursionError:  # MAX_DEPTH is checked first; this only guards a deep call stack
        raise InputError(path, _DEEP, line=line) from None


# ----------------------------------------------------------------------------------------------------------
# files


def iter_json_objects(
    path: str | Path, *, bad_lines: list[InputError] | None = None, unfinished_tail: bool = False
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a JSONL file or a JSON array file (see `iter_json_records`)."""
    for line, _, obj in iter_json_records(path, bad_lines=bad_lines, unfinished_tail=unfinished_tail):
        yield line, obj


def iter_json_records(
    path: str | Path, *, bad_lines: list[InputError] | None = None, unfinished_tail: bool = False
) -> Iterator[tuple[int, int | None, dict]]:
    """Yield (line number, array index or None, object) from a JSONL file or a JSON array file.

    For a JSON array the line is where the element starts, so errors still point somewhere useful, and the
    index says which element it is (a whole array often sits on one line).
    With `bad_lines`, a malformed JSONL line is appended there and skipped instead of raised; a line over the
    line limit still raises, since finding the next line could mean reading without end.
    With `unfinished_tail` (files this package appends to), a last line without its newline is a write still
    in flight or one a crash cut short: not a record yet, so it is left out with a warning, not raised.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    with f:
        blank, raw = 0, strip_bom(path, f.readline(MAX_LINE_BYTES + 1))
        while raw and not raw.strip():  # counted, not kept: `yes ''` must not fill memory
            blank, raw = blank + 1, f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            raise InputError(path, "file is empty", line=1)
        # The first line with content decides: `[` starts an array, anything else is JSON Lines.
        if raw.lstrip().startswith(b"["):
            yield from _iter_array(path, raw, f, blank + 1, bad_lines)
        else:
            lines = _chain(raw, iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""))
            yield from _iter_lines(path, lines, bad_lines, unfinished_tail, first_line=blank + 1)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _iter_lines(
    path: Path,
    lines: Iterable[bytes],
    bad_lines: list[InputError] | None,
    unfinished_tail: bool,
    first_line: int,
) -> Iterator[tuple[int, None, dict]]:
    for n, raw in enumerate(lines, start=first_line):
        if len(raw) > MAX_LINE_BYTES:
            raise InputError(
                path,
                f"line longer than {_size(MAX_LINE_BYTES)} (the line limit; is this JSON Lines?)",
                line=n,
            )
        if not raw.endswith(b"\n") and raw and unfinished_tail:
            log.warning(
                "%s:%d: last line has no newline yet (the run is still writing, or a crash cut it; resuming "
                "the run repairs it): left out",
                path,
                n,
            )
            return
        if not raw.strip():
            continue
        try:
            yield n, None, _line_object(path, raw, n)
        except InputError as err:
            if bad_lines is None:
                raise
            err.raw = raw.removesuffix(b"\n").decode("utf-8", "replace")
            bad_lines.append(err)


def _line_object(path: Path, raw: bytes, n: int) -> dict:
    # Split on \n only (readline on bytes): U+2028, U+0085 and friends are legal inside JSON strings.
    line = decode(path, raw.removesuffix(b"\n"), line=n)
    if _too_deep(line) is not None:
        raise InputError(path, _DEEP, line=n)
    start = _WS.match(line).end()
    obj, end = _decode_value(path, line, start, n, n)
    if _WS.match(line, end).end() != len(line):
        raise InputError(path, f"malformed JSON (Extra data at column {end + 1})", line=n)
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", line=n)
    if _SURROGATE_ESCAPE.search(line) and _lone_surrogate(obj):
        raise InputError(path, _SURROGATE_MESSAGE, line=n)
    return obj


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


def _iter_array(
    path: Path, head: bytes, f: IO[bytes], first_line: int, bad_lines: list[InputError] | None = None
) -> Iterator[tuple[int, int, dict]]:
    """Elements of a JSON array file, decoded one at a time so each error knows its element's line.
    `head` is the array's first line, which is line `first_line` of the file. With `bad_lines`, an element
    that parses but is no record (not an object, a lone surrogate) goes there; JSON that does not parse
    raises, since the next element's start is unknown."""
    data = head + f.read(MAX_ARRAY_BYTES + 1 - len(head))
    if len(data) > MAX_ARRAY_BYTES:
        raise InputError(path, f"larger than {_size(MAX_ARRAY_BYTES)} (the limit for a JSON array file)")
    text = decode(path, data, first_line=first_line)
    if (deep := _too_deep(text)) is not None:
        raise InputError(path, _DEEP, line=text.count("\n", 0, deep) + first_line)
    pos, line, prev = text.index("[") + 1, first_line, 0
    check = bool(_SURROGATE_ESCAPE.search(text))
    index = 0
    while True:
        pos = _WS.match(text, pos).end()
        line += text.count("\n", prev, pos)
        prev = pos
        if text.startswith("]", pos) and index == 0:
            pos += 1
            break
        start = pos
        obj, pos = _decode_value(path, text, pos, line, first_line)
        err = None
        if not isinstance(obj, dict):  # named by index, as a field error names `[i].field`
            err = InputError(
                path, f"expected a JSON object, got {type(obj).__name__}", line=line, field=f"[{index}]"
            )
        elif check and _lone_surrogate(obj):
            err = InputError(path, _SURROGATE_MESSAGE, line=line, field=f"[{index}]")
        if err is None:
            yield line, index, obj
        elif bad_lines is None:
            raise err
        else:
            err.raw = text[start:pos]
            bad_lines.append(err)
        index += 1
        pos = _WS.match(text, pos).end()
        if text.startswith(",", pos):
            pos += 1
        elif text.startswith("]", pos):
            pos += 1
            break
        else:
            where = text.count("\n", 0, pos) + first_line
            raise InputError(path, "malformed JSON (expected ',' or ']' after an array element)", line=where)
    if _WS.match(text, pos).end() != len(text):
        raise InputError(
            path, "malformed JSON (extra data after the array)", line=text.count("\n", 0, pos) + first_line
        )


def read_json(path: str | Path, what: str = "JSON file", limit: int = 64 * 2**20) -> Any:
    """One JSON document (a manifest, pipeline.json, sft.json) by the same rules as records: read once and
    bounded, strict, and any error one InputError naming the file and line."""
    path = Path(path)
    text = decode(path, read_bounded(path, limit, what))
    if (deep := _too_deep(text)) is not None:
        raise InputError(path, _DEEP, line=text.count("\n", 0, deep) + 1)
    start = _WS.match(text).end()
    if start == len(text):
        raise InputError(path, "file is empty", line=1)
    value, end = _decode_value(path, text, start, text.count("\n", 0, start) + 1)
    if _WS.match(text, end).end() != len(text):
        raise InputError(
            path, "malformed JSON (extra data after the document)", line=text.count("\n", 0, end) + 1
        )
    return value


def parse_record(model: type[M], obj: dict, path: str | Path, line: int) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        field, msg = first_error(e)
        raise InputError(path, msg, line=line, field=field) from None


# Line breaks to str.splitlines() and many other readers, yet left raw by json.dumps(ensure_ascii=False).
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def dumps(record: BaseModel | dict) -> str:
    """One JSONL line (no newline). Non-ASCII kept as is so files stay readable, except the characters other
    readers take for line breaks: model text is arbitrary, and one record must stay one line for everyone."""
    obj = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    return json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS)
