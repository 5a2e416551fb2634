"""`selfinstruct readmit`: overrule a filter by moving chosen rejects of a run into its accepted set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from selfinstruct.cli.app import app, console, plain


@app.command()
def readmit(
    run: Annotated[Path, typer.Argument(help="A run directory written by `generate`.")],
    ids: Annotated[list[str], typer.Option("--ids", help="Reject ids, comma-separated; may be repeated.")],
    by: Annotated[
        str | None, typer.Option(help="Who overrules the filter (default: $USER, or 'unknown').")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Append the chosen rejects' records to tasks.jsonl and record who readmitted them in the manifest."""
    from selfinstruct.readmit import readmit as do_readmit

    entries = do_readmit(run, ids, by=by)
    if as_json:
        print(
            json.dumps({"run": str(run), "readmitted": [e.model_dump() for e in entries]}, ensure_ascii=False)
        )
        return
    table = Table(title=plain(f"readmitted into {run}", None), title_justify="left")
    for col in ("reject", "task", "stage / reason", "by", "time"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            Text(e.reject_id), Text(e.task_id), Text(f"{e.stage} / {e.reason}"), Text(e.by), Text(e.time)
        )
    console.print(table)
    console.print("the loop adds them to its pool and indexes when this run is resumed")
