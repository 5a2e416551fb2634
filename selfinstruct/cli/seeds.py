"""`selfinstruct seeds validate PATH`: read seed or example files as the pipeline will, and count them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from selfinstruct.cli.app import app, console, print_json
from selfinstruct.seeds import input_files, load_tasks, summarize

seeds_app = typer.Typer(help="Check seed task files before a run.", no_args_is_help=True)
app.add_typer(seeds_app, name="seeds")

_LABELS = {
    "tasks": "tasks",
    "classification": "classification tasks",
    "empty_input": "tasks with empty input",
}


@seeds_app.command()
def validate(
    path: Annotated[
        Path,
        typer.Argument(
            help="Self-Instruct task JSONL, Alpaca-style JSON array or JSONL, or a directory of them."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as one JSON object.")] = False,
) -> None:
    """Validate every record under PATH and print counts; a bad record exits 1 naming file, line and field."""
    counts = summarize(load_tasks(path))
    if as_json:
        print_json(counts)
        return
    files = input_files(path)
    table = Table(show_header=False)
    table.add_column("count", style="bold")
    table.add_column("value", justify="right")
    for key, label in _LABELS.items():
        table.add_row(label, f"{counts[key]:,}")
    console.print(
        Text("valid: ", style="green").append(f"{path} ({len(files)} file{'s' if len(files) != 1 else ''})"),
        highlight=False,
    )
    console.print(table)
