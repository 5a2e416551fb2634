"""Crash points for the kill tests: a real process cannot be made to die inside a chosen write on demand.

`SELFINSTRUCT_FAULT=NAME[:N]` makes the N-th (default first) time the code passes point NAME kill this process
with SIGKILL, as a power cut or the OOM killer would. Unset (always, outside tests), `hit` is one dict lookup.
Points: `tear:FILE` (half of a line of FILE written, then killed), `after:journal`, `after:rejects`,
`after:tasks`, `after:checkpoint`, `after:manifest`, `after:unfinished` (a stop's `loop_unfinished` rejects
fsynced, before its checkpoint).
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("SELFINSTRUCT_FAULT", "")
_seen: dict[str, int] = {}


def _parse(spec: str) -> tuple[str, int]:
    name, sep, nth = spec.rpartition(":")
    if sep and nth.isdigit():
        return name, int(nth)
    return spec, 1


_POINT, _AT = _parse(_SPEC) if _SPEC else ("", 0)


def hit(point: str) -> bool:
    """True the N-th time `point` is reached, if SELFINSTRUCT_FAULT names it."""
    if point != _POINT:
        return False
    _seen[point] = _seen.get(point, 0) + 1
    return _seen[point] == _AT


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_point(point: str) -> None:
    if hit(point):
        die()
