"""The typer app and the error boundary every command shares.

A `SelfInstructError` (or an `OSError`: a full disk, a missing folder) anywhere below a command becomes one red
line on stderr and exit code 1 (STYLE rule 18). Tracebacks, if any, never show local variables, so secrets
stay out of CI logs.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import sys
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.segment import Segment
from rich.text import Text
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click
from typer.core import TyperGroup

from selfinstruct.collect import collect_less
from selfinstruct.errors import SelfInstructError
from selfinstruct.signals import Stopped, owned_stop

# Terminal control characters (ANSI escapes included): replaced, so text cannot restyle or move the terminal.
# Bidirectional overrides too (U+202A-E, U+2066-9): they make a terminal show text in another order than it is.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class SafeConsole(Console):
    """The one printer of the CLI: no control character in any text it prints reaches the terminal.

    Data and paths hold whatever a file or a model put there (`ESC[2J` in a reject reason cleared the screen in
    `audit`, issue 11). Replacing them where the text is rendered covers every print, table and title at once,
    whoever forgot `plain()`; rich's own styling and cursor moves are kept, since they are not part of the text.
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            seg if seg.control else Segment(_CONTROL.sub("\ufffd", seg.text), seg.style) for seg in buffer
        )


# Markup off: paths, values and model text print as they are (brackets in them once raised MarkupError or
# vanished); styling is given explicitly, with `Text`.
console = SafeConsole(markup=False)
err_console = SafeConsole(stderr=True, markup=False)

# json.dumps escapes C0 controls but leaves DEL and the C1 range (0x9b is a one-byte CSI) raw.
_JSON_CONTROL = str.maketrans({c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)})


def print_json(obj) -> None:
    """One JSON object on stdout, for machines: non-ASCII kept readable where stdout takes UTF-8 (escaped, so
    still whole, where it does not), every control character escaped."""
    print(json.dumps(obj, ensure_ascii=not _utf8(sys.stdout)).translate(_JSON_CONTROL))


def _utf8(stream) -> bool:
    return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "utf-8"


def replace_unencodable() -> None:
    """Print what the terminal's encoding cannot hold (PYTHONIOENCODING=ascii or latin-1) as `?`: model text
    holds any character, and a table must not end in a UnicodeEncodeError traceback."""
    for stream in (sys.stdout, sys.stderr):
        if not _utf8(stream) and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def has_control(value: str) -> bool:
    """Whether `value` holds a terminal control character (no id, stage or reason we write does)."""
    return _CONTROL.search(value) is not None


def plain(value, limit: int | None = 240, style: str = "") -> Text:
    """Text that is data (model output, paths, error messages): control characters replaced, cut to `limit`."""
    s = "–" if value is None else _CONTROL.sub("\ufffd", str(value))
    return Text(s if limit is None or len(s) <= limit else s[: limit - 1] + "…", style=style)


class _WarningLine(logging.Handler):
    """The package's warnings (a replica leaving the rotation, an unfinished last line) as one yellow line each."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(
            Text("warning: ", style="yellow").append(plain(record.getMessage(), None)), soft_wrap=True
        )


logging.getLogger("selfinstruct").addHandler(_WarningLine(logging.WARNING))


def _one_line(e: Exception) -> str:
    """`path: reason` for an OSError (as our own errors read), the message itself otherwise."""
    if isinstance(e, OSError) and e.strerror:
        where = ", ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        return f"{where}: {e.strerror.lower()}" if where else e.strerror.lower()
    return str(e)


def _usage_line(e: UsageError) -> None:
    """A bad flag: one line, like every other error, and click's exit code 2."""
    hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
    err_console.print(
        Text("error: ", style="bold red").append(plain(e.format_message().rstrip(".") + hint, None)),
        soft_wrap=True,
    )
    raise typer.Exit(2) from None


class _Group(TyperGroup):
    def invoke(self, ctx):
        collect_less()  # a run holds tens of thousands of long-lived records (selfinstruct/collect.py)
        # Every command stops cleanly on SIGINT/SIGTERM (also when SIGINT was inherited ignored): `Stopped`
        # unwinds its finally blocks, then no child process it started (vLLM engine, server) may outlive it.
        # Processes that were there before (a test session's engine, a caller's own) are not its to end.
        try:
            with owned_stop():
                return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except UsageError as e:  # a bad flag of a command
            _usage_line(e)
        except (SelfInstructError, OSError) as e:  # OSError: the disk, a path, permissions; never our bug
            err_console.print(
                Text("error: ", style="bold red").append(plain(_one_line(e), None)), soft_wrap=True
            )
            raise typer.Exit(1) from None
        except Stopped as e:
            err_console.print(Text(str(e), style="yellow"), soft_wrap=True)  # "stopped by SIGINT"
            raise typer.Exit(e.exit_code) from None

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except NoArgsIsHelpError:
            raise
        except UsageError as e:  # a bad option before the command (`selfinstruct --bogus`)
            _usage_line(e)

    def list_commands(self, ctx):  # keep the order commands were registered in (data-flow order)
        return list(self.commands)


app = typer.Typer(
    cls=_Group,
    help="Grow instruction-tuning data from seed tasks through vLLM, filter it with evidence, train a student.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def fail(message: str) -> None:
    """Stop a command with one clear line."""
    raise SelfInstructError(message)
