"""One exception type for problems a user can fix; the CLI prints it as one red line, never a traceback. A failed
write is an OSError (also one line) that names its file: Python's names none when the disk is full, and torch
and safetensors raise failed weight writes as their own exceptions."""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SelfInstructError(Exception):
    """A problem in the user's input, config or environment, with a message that says what to change."""


class InputError(SelfInstructError):
    """Bad data in a file: names the file, the 1-based line and the field."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None):
        if field is not None and len(field) > 80:  # a key is data too: a 1 MB key must not make a 1 MB line
            field = field[:79] + "…"
        self.path, self.line, self.field, self.detail = str(path), line, field, message
        # What was read there, for a reject that keeps it (filter --skip-bad-lines): the line's text, and the
        # object when it parsed
        self.raw: str | None = None
        self.record: dict | None = None
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"{field}: {message}" if field else message
        super().__init__(f"{where}: {what}")


def named(e: OSError, path: Path) -> OSError:
    """`e` with `path` as its file when it names none (a full disk: "[Errno 28] No space left on device"), so the
    CLI's one line says which file."""
    if e.filename is None and e.errno is not None:
        return OSError(e.errno, e.strerror, str(path))
    return e


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised inside that names no file comes out naming `path` (see `named`)."""
    try:
        yield
    except OSError as e:
        raise named(e, path) from None


@contextmanager
def write_errors(folder: str | Path) -> Iterator[None]:
    """A failed write of model weights or optimizer state (a full disk, a file size limit) comes out of
    safetensors and torch as their own exceptions, with pages of Rust or C++ detail; re-raise it as the OSError
    it is, which the CLI shows as one line naming `folder`."""
    try:
        yield
    except Exception as e:
        code = _write_failure(e, Path(folder))
        if code is None:
            raise
        raise OSError(code, f"could not write a checkpoint: {os.strerror(code).lower()}", str(folder)) from e


def _write_failure(e: Exception, folder: Path) -> int | None:
    """The errno of a failed weight write, or None when `e` is something else."""
    from safetensors import SafetensorError  # here: only a failed write needs it

    msg = str(e)
    if isinstance(e, SafetensorError) and "I/O error" in msg:
        found = re.search(r"os error (\d+)", msg)
        return int(found.group(1)) if found else errno.EIO
    if not isinstance(e, RuntimeError) or not ("PytorchStreamWriter" in msg or "unexpected pos" in msg):
        return None
    # torch drops the errno; a full disk and a file size limit can be told from here, anything else cannot.
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if shutil.disk_usage(folder).free < 64 << 20:
        return errno.ENOSPC
    limited = resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
    return errno.EFBIG if limited else errno.EIO
