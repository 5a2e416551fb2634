"""One exception type for problems a user can fix; the CLI prints it as one red line, never a traceback."""

from __future__ import annotations

from pathlib import Path


class SelfInstructError(Exception):
    """A problem in the user's input, config or environment, with a message that says what to change."""


class InputError(SelfInstructError):
    """Bad data in a file: names the file, the 1-based line and the field."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None):
        if field is not None and len(field) > 80:  # a key is data too: a 1 MB key must not make a 1 MB line
            field = field[:79] + "…"
        self.path, self.line, self.field, self.detail = str(path), line, field, message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"{field}: {message}" if field else message
        super().__init__(f"{where}: {what}")
