"""`selfinstruct export`: a run's accepted tasks in a training format."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from selfinstruct.cli.app import app, console, fail, plain, print_json
from selfinstruct.export import FORMATS


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run directory (or a tasks.jsonl)."),
    fmt: str = typer.Option("alpaca", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.json or .jsonl)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists (never the run's own files)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Export accepted tasks as alpaca, messages (chat) or self-instruct records."""
    from selfinstruct.export import export as do_export

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    n = do_export(run, fmt, out, replace=force)
    if as_json:
        print_json({"rows": n, "format": fmt, "out": str(out)})
    else:
        console.print(Text(f"wrote {n} {fmt} rows to ").append(plain(out, None, "bold")))
