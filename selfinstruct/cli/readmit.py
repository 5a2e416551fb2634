"""`selfinstruct readmit`: overrule a filter by moving chosen rejects of a run into its accepted set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from selfinstruct.cli.app import app, console, fail, has_control, plain, print_json


@app.command()
def readmit(
    run: Annotated[Path, typer.Argument(help="A run directory written by `generate`.")],
    ids: Annotated[list[str], typer.Option("--ids", help="Reject ids, comma-separated; may be repeated.")],
    by: Annotated[
        str | None, typer.Option(help="Who overrules the filter (default: $USER, or 'unknown').")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Move the chosen rejects into the accepted set, recorded in the manifest. A run being written takes them in
    at its next round; a stopped run at once."""
    from selfinstruct.readmit import readmit as do_readmit

    for value in ids:  # no id we write holds one; such an id could only come from a crafted file
        if has_control(value):
            fail(f"--ids: {value!r} holds a control character; no reject id does")
    if by is not None and has_control(by):  # recorded in the manifest, shown by audit
        fail(f"--by: {by!r} holds a control character")
    entries, live = do_readmit(run, ids, by=by)
    if as_json:
        print_json({"run": str(run), "readmitted": [e.model_dump() for e in entries], "live_writer": live})
        return
    table = Table(title=plain(f"readmitted into {run}", None), title_justify="left")
    for col in ("reject", "task", "stage / reason", "by", "time"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            plain(e.reject_id), plain(e.task_id), plain(f"{e.stage} / {e.reason}"), plain(e.by), plain(e.time)
        )
    console.print(table)
    if live:
        console.print(f"the run is being written (pid {live}): it takes them in at its next round")
    else:
        console.print(
            "taken in: tasks with instances are accepted; instructions without are queued for the next `generate`"
        )
