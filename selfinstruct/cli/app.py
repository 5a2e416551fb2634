"""The typer app and the error boundary every command shares.

A `SelfInstructError` anywhere below a command becomes one red line on stderr and exit code 1
(STYLE rule 18). Tracebacks, if any, never show local variables, so secrets stay out of CI logs.
"""

from __future__ import annotations

import typer
from rich.console import Console
from typer.core import TyperGroup

from selfinstruct.errors import SelfInstructError

console = Console()
err_console = Console(stderr=True)


class _Group(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SelfInstructError as e:
            err_console.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

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
